//! History retention: which ended requests have been kept long enough, and the record that is
//! exported before one is deleted.
//!
//! An ended request is the only record of a grant (who asked, who approved, when it ran, what it
//! left behind). It is kept for the retention period and then deleted, but never before its
//! record has gone to the audit stream: the export is the copy a compliance archive keeps.
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::api::{ActivationRequest, Eligibility, PrivilegedRole};
use crate::time::{duration_from_k8s, from_k8s};

/// When the request's history ended: `status.endedAt` (a grant's end), else the latest
/// condition transition (written by the step that made it terminal), else `expiresAt`, else its
/// creation. `None` while it is not terminal.
pub fn ended_at(request: &ActivationRequest) -> Option<DateTime<Utc>> {
    let status = request.status.as_ref()?;
    if !status.phase.is_some_and(|p| p.is_terminal()) {
        return None;
    }
    let transitions = status
        .conditions
        .iter()
        .map(|c| from_k8s(&c.last_transition_time));
    let last_transition = transitions.max();
    [status.ended_at.as_ref().map(from_k8s), last_transition]
        .into_iter()
        .flatten()
        .max()
        .or_else(|| status.expires_at.as_ref().map(from_k8s))
        .or_else(|| request.metadata.creation_timestamp.as_ref().map(from_k8s))
}

/// How long a request of `role` must be kept at least: a privilege budget counts the grants in
/// its window, so history inside the longest window of the role's or its eligibilities' budgets
/// is never deleted, whatever the retention says.
pub fn kept_for_budgets(role: Option<&PrivilegedRole>, eligibilities: &[&Eligibility]) -> Duration {
    let role_budget = role.and_then(|r| r.spec.budget.as_ref());
    let eligibility_budgets = eligibilities.iter().filter_map(|e| e.spec.budget.as_ref());
    role_budget
        .into_iter()
        .chain(eligibility_budgets)
        .map(|b| duration_from_k8s(&b.per))
        .max()
        .unwrap_or_else(Duration::zero)
}

/// Has this request been kept for `retention` since it ended? Requests being deleted already are
/// not due (someone else is deleting them).
pub fn is_due(request: &ActivationRequest, retention: Duration, now: DateTime<Utc>) -> bool {
    request.metadata.deletion_timestamp.is_none()
        && ended_at(request).is_some_and(|ended| ended + retention <= now)
}

/// The ended requests due for deletion, oldest first, at most `limit` (one pass deletes a
/// bounded number, so a first run over years of history does not flood the API server).
/// `retention_of` says how long each must be kept (the retention, or longer for budgets).
pub fn due<'a>(
    requests: impl IntoIterator<Item = &'a ActivationRequest>,
    retention_of: impl Fn(&ActivationRequest) -> Duration,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<&'a ActivationRequest> {
    let mut due: Vec<(DateTime<Utc>, &ActivationRequest)> = requests
        .into_iter()
        .filter(|r| is_due(r, retention_of(r), now))
        .filter_map(|r| ended_at(r).map(|at| (at, r)))
        .collect();
    due.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.metadata.name.cmp(&b.1.metadata.name))
    });
    due.into_iter().take(limit).map(|(_, r)| r).collect()
}

/// The whole record of a request as exported before deletion: identity (name, uid, creation),
/// the spec (requester as admission stamped it, role, namespaces, justification, ticket) and the
/// status (approvals, activation, bindings, every condition, footholds included). Labels and
/// annotations are left out: nothing an object says about itself is part of the record.
pub fn export_record(request: &ActivationRequest, ended: DateTime<Utc>) -> Value {
    json!({
        "name": request.metadata.name,
        "uid": request.metadata.uid,
        "createdAt": request.metadata.creation_timestamp,
        "endedAt": ended.to_rfc3339(),
        "spec": request.spec,
        "status": request.status,
    })
}
