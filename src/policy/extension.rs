//! Extending an active grant without a gap (`spec.extends`).
//!
//! An extension is a request of its own, judged by the same rules (eligibility, step-up,
//! approvals: [`super::approvals::Purpose::Extension`] may need a different count). What it adds:
//! it names the requester's own Active request for the same role, asks for a subset of its
//! namespaces, and once approved runs on from that grant's expiry. Its bindings exist before the
//! original's go: the original only ends ([`handed_over`]) once the extension is Active. An
//! extension whose original has ended by the time it is decided is refused, never turned into a
//! fresh activation: the approvers approved continuing a grant, not starting one.
use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{ActivationRequestSpec, ActivationRequestStatus, Phase, PrivilegedRoleSpec};
use crate::time::{duration_from_k8s, format_duration, from_k8s};

use super::reasons;
use super::validation::Refusal;

/// A request as another request's decision sees it: the original an extension names, or an
/// extension of the request being decided.
#[derive(Debug, Clone, Copy)]
pub struct Related<'a> {
    pub name: &'a str,
    pub spec: &'a ActivationRequestSpec,
    pub status: &'a ActivationRequestStatus,
}

/// Where an approved extension's grant starts counting from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// The original's expiry, or now if that is later: the extension's duration runs from here.
    pub runs_from: DateTime<Utc>,
    /// Since when the requester has held the role without a gap.
    pub continuous_since: DateTime<Utc>,
}

/// How long a requester may hold the role without a gap: the role's `maxContinuousDuration`,
/// else three times its `maxDuration`, at most 24h (a break-glass role's own value may exceed
/// that; the CRD refuses it otherwise).
pub fn max_continuous(role: &PrivilegedRoleSpec) -> TimeDelta {
    match &role.max_continuous_duration {
        Some(d) => duration_from_k8s(d),
        None => (duration_from_k8s(&role.max_duration) * 3).min(TimeDelta::hours(24)),
    }
}

fn not_allowed(message: String) -> Refusal {
    Refusal {
        reason: reasons::EXTENSION_NOT_ALLOWED,
        message,
    }
}

/// Judges an extension against its original at `now`: the same requester's, for the same role,
/// a subset of its namespaces, and Active with time left. `original` is `None` when no request
/// of that name exists.
pub fn judge(
    spec: &ActivationRequestSpec,
    requester: &str,
    original: Option<Related<'_>>,
    now: DateTime<Utc>,
) -> Result<Handover, Refusal> {
    let Some(name) = spec.extends.as_deref() else {
        return Err(not_allowed("not an extension".into()));
    };
    let Some(original) = original else {
        return Err(Refusal {
            reason: reasons::NOTHING_TO_EXTEND,
            message: format!("ActivationRequest {name} does not exist: nothing to extend"),
        });
    };
    let theirs = original
        .spec
        .requester
        .as_ref()
        .map_or("", |r| r.username.as_str());
    if theirs != requester {
        return Err(not_allowed(format!(
            "{name} was requested by {}: only its requester may extend it",
            if theirs.is_empty() { "nobody" } else { theirs }
        )));
    }
    if original.spec.role != spec.role {
        return Err(not_allowed(format!(
            "{name} is for PrivilegedRole {}, not {}: an extension keeps the role",
            original.spec.role, spec.role
        )));
    }
    if let Some(extra) = spec
        .namespaces
        .iter()
        .find(|ns| !original.spec.namespaces.contains(ns))
    {
        return Err(not_allowed(format!(
            "namespace {extra} is not granted by {name}: an extension covers a subset of its namespaces"
        )));
    }
    if original.spec.namespaces.is_empty() != spec.namespaces.is_empty() {
        return Err(not_allowed(format!(
            "{name} is {}: the extension must be too",
            if original.spec.namespaces.is_empty() {
                "cluster-wide"
            } else {
                "namespaced"
            }
        )));
    }
    let status = original.status;
    let active_until = status
        .expires_at
        .as_ref()
        .map(from_k8s)
        .filter(|_| status.phase == Some(Phase::Active));
    let (Some(expires_at), Some(activated_at)) =
        (active_until, status.activated_at.as_ref().map(from_k8s))
    else {
        let phase = status
            .phase
            .map_or("not active yet".to_string(), |p| format!("{p:?}"));
        return Err(Refusal {
            reason: reasons::NOTHING_TO_EXTEND,
            message: format!(
                "{name} is {phase}: only an active grant can be extended; request a fresh activation"
            ),
        });
    };
    if expires_at <= now {
        return Err(Refusal {
            reason: reasons::NOTHING_TO_EXTEND,
            message: format!(
                "{name} ended at {}: only an active grant can be extended; request a fresh activation",
                expires_at.to_rfc3339()
            ),
        });
    }
    Ok(Handover {
        runs_from: expires_at.max(now),
        continuous_since: status
            .continuous_since
            .as_ref()
            .map_or(activated_at, from_k8s),
    })
}

/// Refuses an extension that would keep the requester elevated longer than the role allows.
pub fn check_continuous(
    role_name: &str,
    role: &PrivilegedRoleSpec,
    handover: &Handover,
    expires_at: DateTime<Utc>,
) -> Result<(), Refusal> {
    let cap = max_continuous(role);
    let total = expires_at - handover.continuous_since;
    if total <= cap {
        return Ok(());
    }
    Err(Refusal {
        reason: reasons::CONTINUOUS_DURATION_TOO_LONG,
        message: format!(
            "this extension would hold PrivilegedRole {role_name} for {} without a gap (since {}); \
             the role allows {}: ask for at most {} more",
            format_duration(total),
            handover.continuous_since.to_rfc3339(),
            format_duration(cap),
            format_duration(
                (cap - (handover.runs_from - handover.continuous_since)).max(TimeDelta::zero())
            ),
        ),
    })
}

/// Whether `request_name`'s grant has been handed over: `successor` extends it, is the same
/// requester's for the same role, and is Active (so its bindings exist). Returns the successor's
/// name and expiry for the original's closing message.
pub fn handed_over<'a>(
    request_name: &str,
    spec: &ActivationRequestSpec,
    successor: Option<Related<'a>>,
) -> Option<(&'a str, Option<DateTime<Utc>>)> {
    let successor = successor?;
    let requester = |s: &ActivationRequestSpec| s.requester.as_ref().map(|r| r.username.clone());
    let extends_this = successor.spec.extends.as_deref() == Some(request_name);
    let same = requester(successor.spec) == requester(spec)
        && requester(spec).is_some()
        && successor.spec.role == spec.role;
    (extends_this && same && successor.status.phase == Some(Phase::Active)).then(|| {
        (
            successor.name,
            successor.status.expires_at.as_ref().map(from_k8s),
        )
    })
}
