//! Is a binding that carries kubepim's managed label one kubepim made, and may it stay?
//!
//! Anyone who can create a binding can copy kubepim's label and annotations, so nothing a binding
//! says about itself is trusted: its annotations only *point* at the request to compare with. A
//! managed-labelled binding is legitimate only while it is exactly one of the bindings recorded
//! for an Active request (name, kind, namespace, the single subject that request's requester, the
//! PrivilegedRole's roleRef) and that request's recorded `status.expiresAt` is in the future.
//!
//! One other binding is left alone: exactly the binding a non-terminal request's own reconciler
//! would create (its deterministic name, a namespace the request and the role both allow, the
//! requester, the role). The controller creates an activation's bindings just before it records
//! the activation, and after a crash between the two the binding's expiry is the one already
//! fixed, so that binding is for the request's reconciler to judge: it sees exactly that name in
//! exactly those namespaces, records the activation if the request is approved and eligible, and
//! deletes the binding at once otherwise. Everything else is removed here.
use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::Subject;

use crate::api::{ActivationRequest, Phase, PrivilegedRole, RoleKind};
use crate::time::from_k8s;

use super::identity::{requester_subject, same_subject};
use super::lifecycle::{BindingKind, binding_name};

/// What the judge reads of a managed-labelled binding.
#[derive(Debug, Clone, Copy)]
pub struct ManagedBinding<'a> {
    pub kind: BindingKind,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub role_ref_kind: &'a str,
    pub role_ref_name: &'a str,
    pub subjects: &'a [Subject],
    /// The `kubepim.io/request-uid` annotation: a pointer, not a proof.
    pub claimed_request_uid: Option<&'a str>,
}

/// The verdict on one managed-labelled binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Recorded for an Active request; stays until `until` (the recorded expiry).
    Legitimate { until: DateTime<Utc> },
    /// Exactly the binding the (not yet Active) request's own reconciler would create: it keeps
    /// it by recording the activation, or deletes it.
    LeftToRequest,
    /// Must be deleted now.
    Illegitimate(Illegitimate),
}

impl Judgement {
    pub fn must_go(&self) -> Option<&Illegitimate> {
        match self {
            Judgement::Illegitimate(why) => Some(why),
            _ => None,
        }
    }
}

/// Why a managed-labelled binding must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Illegitimate {
    /// It names no request (annotation `kubepim.io/request` and label both missing or empty).
    NoRequest,
    /// The request it names does not exist.
    RequestMissing,
    /// The request it names exists under another uid (deleted and re-created).
    RequestReplaced,
    /// The request it names has ended.
    RequestEnded(Phase),
    /// The request's recorded expiry has passed (or none is recorded).
    Expired,
    /// The request's PrivilegedRole does not exist.
    RoleMissing,
    /// Not one of the bindings recorded (or, while activating, desired) for the request.
    NotRecorded,
    /// The roleRef is not the PrivilegedRole's.
    WrongRole,
    /// Not exactly one subject, the requester.
    WrongSubjects,
}

impl Illegitimate {
    /// The reason word for Events, audit lines and the metric label (a bounded set).
    pub fn reason(&self) -> &'static str {
        match self {
            Illegitimate::NoRequest => "NoRequest",
            Illegitimate::RequestMissing => "RequestMissing",
            Illegitimate::RequestReplaced => "RequestReplaced",
            Illegitimate::RequestEnded(_) => "RequestEnded",
            Illegitimate::Expired => "Expired",
            Illegitimate::RoleMissing => "RoleMissing",
            Illegitimate::NotRecorded => "NotRecorded",
            Illegitimate::WrongRole => "WrongRole",
            Illegitimate::WrongSubjects => "WrongSubjects",
        }
    }

    /// The one ordinary leftover: a grant past its expiry whose binding is still there (the
    /// operator was down at the time). Everything else cannot come from kubepim's own writes,
    /// which delete a grant's bindings before they record its end, so it is reported as a
    /// binding kubepim never granted.
    pub fn is_leftover(&self) -> bool {
        matches!(self, Illegitimate::Expired)
    }

    /// One sentence naming what is wrong, for the Event and the audit line.
    pub fn message(&self, request: &str) -> String {
        match self {
            Illegitimate::NoRequest => "it names no ActivationRequest".into(),
            Illegitimate::RequestMissing => format!("ActivationRequest {request} does not exist"),
            Illegitimate::RequestReplaced => {
                format!("it was made for an earlier ActivationRequest named {request}")
            }
            Illegitimate::RequestEnded(phase) => {
                format!("ActivationRequest {request} has ended ({})", phase.as_str())
            }
            Illegitimate::Expired => format!("ActivationRequest {request} is past its expiry"),
            Illegitimate::RoleMissing => {
                format!("the PrivilegedRole of ActivationRequest {request} does not exist")
            }
            Illegitimate::NotRecorded => format!(
                "it is not one of the bindings kubepim recorded for ActivationRequest {request}"
            ),
            Illegitimate::WrongRole => format!(
                "its roleRef is not the role the PrivilegedRole of ActivationRequest {request} grants"
            ),
            Illegitimate::WrongSubjects => {
                format!("its subjects are not exactly the requester of ActivationRequest {request}")
            }
        }
    }
}

/// Judges one managed-labelled binding against the request it points at (`None`: no such
/// request) and that request's PrivilegedRole. Pure.
pub fn judge(
    binding: &ManagedBinding<'_>,
    request: Option<&ActivationRequest>,
    role: Option<&PrivilegedRole>,
    now: DateTime<Utc>,
) -> Judgement {
    match judge_inner(binding, request, role, now) {
        Ok(judgement) => judgement,
        Err(why) => Judgement::Illegitimate(why),
    }
}

fn judge_inner(
    binding: &ManagedBinding<'_>,
    request: Option<&ActivationRequest>,
    role: Option<&PrivilegedRole>,
    now: DateTime<Utc>,
) -> Result<Judgement, Illegitimate> {
    let request = request.ok_or(Illegitimate::RequestMissing)?;
    if request.metadata.uid.as_deref() != binding.claimed_request_uid {
        return Err(Illegitimate::RequestReplaced);
    }
    let status = request.status.clone().unwrap_or_default();
    if let Some(phase) = status.phase.filter(|p| p.is_terminal()) {
        return Err(Illegitimate::RequestEnded(phase));
    }
    let role = role.ok_or(Illegitimate::RoleMissing)?;
    let request_name = request.metadata.name.as_deref().unwrap_or_default();
    if binding.name != binding_name(request_name) {
        return Err(Illegitimate::NotRecorded);
    }
    let role_ref = &role.spec.role_ref;
    let wanted_kind = match role_ref.kind {
        RoleKind::Role => "Role",
        RoleKind::ClusterRole => "ClusterRole",
    };
    let role_matches = binding.role_ref_kind == wanted_kind
        && binding.role_ref_name == role_ref.name
        && (role_ref.kind == RoleKind::ClusterRole
            || binding.namespace == role_ref.namespace.as_deref());
    if !role_matches {
        return Err(Illegitimate::WrongRole);
    }
    let requester = request
        .spec
        .requester
        .as_ref()
        .ok_or(Illegitimate::WrongSubjects)?;
    let wanted = requester_subject(requester);
    if !matches!(binding.subjects, [only] if same_subject(only, &wanted)) {
        return Err(Illegitimate::WrongSubjects);
    }

    if status.phase == Some(Phase::Active) {
        let recorded = status.bindings.iter().any(|r| {
            r.kind == binding.kind.as_str()
                && r.namespace.as_deref() == binding.namespace
                && r.name == binding.name
        });
        if !recorded {
            return Err(Illegitimate::NotRecorded);
        }
        return match status.expires_at.as_ref().map(from_k8s) {
            Some(until) if now < until => Ok(Judgement::Legitimate { until }),
            _ => Err(Illegitimate::Expired),
        };
    }

    // Not Active yet: only the exact binding the request's reconciler would make is its to judge.
    let desired_place = match (binding.kind, binding.namespace) {
        (BindingKind::ClusterRoleBinding, None) => {
            role.spec.scope.cluster_wide && request.spec.namespaces.is_empty()
        }
        // An empty spec.namespaces means the role's only namespace.
        (BindingKind::RoleBinding, Some(ns)) => {
            (request.spec.namespaces.is_empty() || request.spec.namespaces.iter().any(|n| n == ns))
                && role.spec.scope.namespaces.iter().any(|n| n == ns)
        }
        _ => false,
    };
    if desired_place {
        Ok(Judgement::LeftToRequest)
    } else {
        Err(Illegitimate::NotRecorded)
    }
}
