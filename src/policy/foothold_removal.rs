//! Which of a grant's footholds the foothold remover deletes, and the check it makes again on the
//! live object before it does. The remover acts on the operator's verdict (`status.footholds`),
//! but a verdict is a status field: the binding is judged again as it is now, by the same rule
//! the review used, so a verdict that names something else (a stale uid, a binding made before
//! the grant, one that binds nobody the grant made) deletes nothing.
use chrono::{DateTime, Duration, Utc};

use crate::api::{ActivationRequest, FootholdAction, FootholdRef};

use super::footholds::{Found, FoundKind, GrantWindow, is_pending, judge, review_window};

/// Kinds the remover deletes: access that keeps working after the grant and that deleting
/// takes away. Roles, ServiceAccounts, certificates, webhooks, pods and minted tokens are
/// reported only (deleting them can break workloads, or takes no access away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemovableKind {
    RoleBinding,
    ClusterRoleBinding,
    /// A Secret of type `kubernetes.io/service-account-token`.
    TokenSecret,
}

impl RemovableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovableKind::RoleBinding => "RoleBinding",
            RemovableKind::ClusterRoleBinding => "ClusterRoleBinding",
            RemovableKind::TokenSecret => "Secret",
        }
    }
}

/// One deletion the remover makes, conditional on `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub kind: RemovableKind,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    /// The review's reason (for the Event and the audit line).
    pub why: String,
}

impl Removal {
    /// The object, as an Event's `related` names it.
    pub fn object_reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        let (api_version, kind) = match self.kind {
            RemovableKind::RoleBinding => ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            RemovableKind::ClusterRoleBinding => {
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
            }
            RemovableKind::TokenSecret => ("v1", "Secret"),
        };
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            namespace: self.namespace.clone(),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }

    /// `RoleBinding payments/edit-me`.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind.as_str(), self.name),
            None => format!("{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// Why a request's footholds are not removed (for the log; nothing is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The role reports only (or is gone: without it nobody chose removal).
    RoleReports,
    /// The grant is running, or its review has not finished.
    NotReviewed,
    /// It ended longer ago than the horizon: turning `Remove` on does not reach back into the
    /// kept history.
    EndedLongAgo,
    Nothing,
}

/// The deletions `request`'s verdict calls for under `action`, at `now`.
///
/// Only an ended grant whose review has finished, ended within `horizon`; only bindings and
/// token Secrets; only entries with the uid the review saw (a deletion is made conditional on it,
/// so a namesake made later is never touched). A namespaced kind must say its namespace.
pub fn plan(
    request: &ActivationRequest,
    action: FootholdAction,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Result<Vec<Removal>, Skip> {
    if action != FootholdAction::Remove {
        return Err(Skip::RoleReports);
    }
    let Some(status) = request.status.as_ref() else {
        return Err(Skip::NotReviewed);
    };
    if !status.phase.is_some_and(|p| p.is_terminal()) || is_pending(status) {
        return Err(Skip::NotReviewed);
    }
    let Some(ended) = status.ended_at.as_ref().map(crate::time::from_k8s) else {
        return Err(Skip::NotReviewed);
    };
    if now - ended > horizon {
        return Err(Skip::EndedLongAgo);
    }
    let removals: Vec<Removal> = status.footholds.iter().filter_map(removal_of).collect();
    if removals.is_empty() {
        return Err(Skip::Nothing);
    }
    Ok(removals)
}

fn removal_of(f: &FootholdRef) -> Option<Removal> {
    let (kind, namespaced) = match f.kind.as_str() {
        "RoleBinding" => (RemovableKind::RoleBinding, true),
        "ClusterRoleBinding" => (RemovableKind::ClusterRoleBinding, false),
        "Secret" => (RemovableKind::TokenSecret, true),
        _ => return None,
    };
    let uid = f.uid.clone().filter(|u| !u.is_empty())?;
    if namespaced != f.namespace.is_some() || f.name.is_empty() {
        return None;
    }
    Some(Removal {
        kind,
        namespace: f.namespace.clone(),
        name: f.name.clone(),
        uid,
        why: f.why.clone(),
    })
}

/// Is the live `binding` still a foothold of the grant in `request`? `service_accounts` are the
/// live ServiceAccounts its subjects name (those that exist). `Ok(why)` by the review's own rule
/// ([`judge`]), over the grant's window; `Err` says why not.
pub fn binding_still_a_foothold(
    request: &ActivationRequest,
    binding: &Found,
    service_accounts: &[Found],
    now: DateTime<Utc>,
) -> Result<&'static str, &'static str> {
    if !matches!(
        binding.kind,
        FoundKind::RoleBinding | FoundKind::ClusterRoleBinding
    ) {
        return Err("not a binding");
    }
    let status = request.status.as_ref().ok_or("the request has no status")?;
    let (from, until) = review_window(status, now).ok_or("the request never held the role")?;
    let requester = request
        .spec
        .requester
        .as_ref()
        .ok_or("the request has no authenticated requester")?;
    let window = GrantWindow {
        requester: &requester.username,
        groups: &requester.groups,
        from,
        until,
    };
    let mut seen = vec![binding.clone()];
    seen.extend(
        service_accounts
            .iter()
            .filter(|s| s.kind == FoundKind::ServiceAccount)
            .cloned(),
    );
    judge(&seen, &window)
        .into_iter()
        .find(|f| f.found.kind == binding.kind && f.found.name == binding.name)
        .map(|f| f.why)
        .ok_or("it is not a foothold of this grant as it is now (made outside the grant, or binds nobody the grant made)")
}

#[cfg(test)]
#[path = "tests/foothold_removal.rs"]
mod tests;
