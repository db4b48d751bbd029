//! What the caller may activate, and on which requests their decision would count, computed with
//! the controller's own rules (`crate::policy`) so that the plugin never promises what the
//! controller would refuse.
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::api::{ActivationRequest, Approval, Decision, Eligibility, PrivilegedRole, Requester};
use crate::policy::approvals::{Ignored, tally};
use crate::policy::identity::subject_matches;
use crate::policy::{EligibilityWindow, window_state};
use crate::time::duration_from_k8s;

use super::refusal::{Refusal, RefusalKind};

/// One role the caller may activate, through one eligibility.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activatable {
    pub role: String,
    pub eligibility: String,
    /// Namespaces a request may name (the eligibility's if it narrows them); empty when
    /// `cluster_wide`.
    pub namespaces: Vec<String>,
    pub cluster_wide: bool,
    /// min(role's maxDuration, eligibility's maxDuration).
    #[serde(with = "seconds")]
    pub max_duration: Duration,
    #[serde(with = "seconds")]
    pub default_duration: Duration,
    pub required_approvals: u32,
    pub break_glass: bool,
    /// From when (absent: already) and until when (absent: open-ended) the eligibility holds.
    pub eligible_from: Option<DateTime<Utc>>,
    pub eligible_until: Option<DateTime<Utc>>,
    /// False while the window has not opened yet.
    pub eligible_now: bool,
    pub ticket_pattern: Option<String>,
}

/// Durations as whole seconds in JSON/YAML: unambiguous for programs.
mod seconds {
    pub fn serialize<S: serde::Serializer>(d: &chrono::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }
}

/// Roles `me` may activate at `now` or later: one entry per (role, eligibility) naming `me`
/// whose window has not ended and whose PrivilegedRole exists. Sorted by role.
pub fn activatable(
    me: &Requester,
    roles: &[PrivilegedRole],
    eligibilities: &[Eligibility],
    now: DateTime<Utc>,
) -> Vec<Activatable> {
    let mut out: Vec<Activatable> = eligibilities
        .iter()
        .filter(|e| e.spec.subjects.iter().any(|s| subject_matches(s, me)))
        .filter_map(|e| {
            let role = roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(e.spec.role.as_str()))?;
            let (eligible_now, eligible_from) = match window_state(&e.spec, now) {
                EligibilityWindow::Expired(_) => return None,
                EligibilityWindow::NotYetValid(at) => (false, Some(at)),
                EligibilityWindow::Within(_) => (true, None),
            };
            let role_max = duration_from_k8s(&role.spec.max_duration);
            let max_duration = e
                .spec
                .max_duration
                .as_ref()
                .map(duration_from_k8s)
                .map_or(role_max, |m| m.min(role_max));
            let scope = &role.spec.scope;
            let namespaces = if scope.cluster_wide {
                vec![]
            } else if e.spec.namespaces.is_empty() {
                scope.namespaces.clone()
            } else {
                // Only what both allow: the controller checks the request against both.
                e.spec
                    .namespaces
                    .iter()
                    .filter(|n| scope.namespaces.contains(n))
                    .cloned()
                    .collect()
            };
            Some(Activatable {
                role: e.spec.role.clone(),
                eligibility: e.metadata.name.clone().unwrap_or_default(),
                namespaces,
                cluster_wide: scope.cluster_wide,
                max_duration,
                default_duration: duration_from_k8s(&role.spec.default_duration).min(max_duration),
                required_approvals: if role.spec.break_glass {
                    0
                } else {
                    role.spec.approval.required_approvals
                },
                break_glass: role.spec.break_glass,
                eligible_from,
                eligible_until: e.spec.not_after.as_ref().map(crate::time::from_k8s),
                eligible_now,
                ticket_pattern: role.spec.ticket_pattern.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.role, &a.eligibility).cmp(&(&b.role, &b.eligibility)));
    out
}

/// Would a decision by `me` on `request` count? Checked before writing, with the controller's
/// counting rules, because the admission layer lets some of these through (without
/// `admission.rbacApproval` anyone may append; the webhook, not the policies, stops a second
/// decision) and the controller would then silently ignore the entry. `role`: `None` when it
/// cannot be read, and then only what the request itself shows is checked.
pub fn can_decide(
    me: &Requester,
    request: &ActivationRequest,
    role: Option<&PrivilegedRole>,
) -> Result<(), Refusal> {
    let name = request.metadata.name.as_deref().unwrap_or_default();
    let approvals = request.status.as_ref().map(|s| s.approvals.as_slice());
    if let Some(earlier) = approvals
        .unwrap_or_default()
        .iter()
        .find(|a| a.approver == me.username)
    {
        return Err(Refusal::local(
            RefusalKind::AlreadyDecided,
            format!(
                "You have already decided on {name} ({:?}); a decision cannot be changed or repeated.",
                earlier.decision
            ),
        ));
    }
    let mine = Approval {
        approver: me.username.clone(),
        groups: me.groups.clone(),
        decision: Decision::Approved,
        reason: None,
        time: None,
    };
    let requester = request.requester_name();
    let ignored = match role {
        Some(role) => tally(&[mine], &role.spec, requester)
            .ignored
            .into_iter()
            .next()
            .map(|(_, why)| why),
        None if me.username == requester => Some(Ignored::SelfApproval),
        None => None,
    };
    let role_name = &request.spec.role;
    let (kind, sentence) = match ignored {
        None | Some(Ignored::Duplicate) => return Ok(()),
        Some(Ignored::SelfApproval) => (
            RefusalKind::SelfApproval,
            format!(
                "You cannot decide on {name}: it is your own request. Another approver of {role_name} has to decide."
            ),
        ),
        Some(Ignored::ServiceAccount) => (
            RefusalKind::ServiceAccount,
            "A ServiceAccount cannot approve or deny requests: approvals are decisions of people."
                .to_string(),
        ),
        Some(Ignored::NotAnApprover) => (
            RefusalKind::NotAnApprover,
            format!(
                "You cannot decide on {name}: you are not an approver of PrivilegedRole {role_name} \
                 (neither you nor one of your groups is in its approval.approvers)."
            ),
        ),
    };
    Err(Refusal::local(kind, sentence))
}

#[cfg(test)]
#[path = "roles_tests.rs"]
mod tests;
