//! The request lifecycle as one pure function: observed state in, next step out.
use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::Subject;

use crate::api::{
    ActivationRequestSpec, ActivationRequestStatus, Eligibility, Phase, PrivilegedRole,
};
use crate::time::{duration_from_k8s, from_k8s, truncate_to_second};

use super::approvals::{ApprovalTally, Ignored, Purpose, tally_for};
use super::extension::{self, Related};
use super::identity::requester_subject;
use super::reasons;
use super::validation::{Grant, Refusal, validate};

use super::binding::role_kind_str;
pub use super::binding::{BindingKind, DesiredBinding, ObservedBinding, binding_name};

/// When a grant started and when it ends; fixed once, never extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    pub activated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Everything the decision needs, as observed.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub request_name: &'a str,
    pub spec: &'a ActivationRequestSpec,
    pub status: &'a ActivationRequestStatus,
    pub created_at: DateTime<Utc>,
    pub role: Option<&'a PrivilegedRole>,
    /// Eligibilities (any role; filtered by the policy).
    pub eligibilities: &'a [&'a Eligibility],
    /// Managed bindings that carry this request's label and UID.
    pub observed: &'a [ObservedBinding],
    /// For an extension (`spec.extends`): the request it names, if it exists.
    pub original: Option<Related<'a>>,
    /// An Active extension of this request, if there is one: the grant has been handed over.
    pub successor: Option<Related<'a>>,
    /// The requester's other requests (any role; filtered by the policy): what privilege budgets
    /// count. Only read for a request not yet active.
    pub history: &'a [Related<'a>],
    pub now: DateTime<Utc>,
}

/// What the controller should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to grant yet: stay in `phase` (Pending or Scheduled); look again at `wake`. Nothing
    /// is granted in these phases: any binding observed for the request must go.
    Wait {
        phase: Phase,
        reason: &'static str,
        message: String,
        wake: Option<DateTime<Utc>>,
        tally: ApprovalTally,
    },
    /// Create `bindings`, then record the activation. Also returned after a crash between the two,
    /// with the expiry the bindings already carry (or an earlier one).
    Activate {
        activation: Activation,
        bindings: Vec<DesiredBinding>,
        tally: ApprovalTally,
        grant: Grant,
        reason: &'static str,
        /// For an extension: since when the requester has held the role without a gap.
        continuous_since: Option<DateTime<Utc>>,
    },
    /// Keep exactly `bindings` in place until `wake` (the expiry or an eligibility change).
    KeepActive {
        activation: Activation,
        bindings: Vec<DesiredBinding>,
        wake: DateTime<Utc>,
        tally: ApprovalTally,
    },
    /// Delete all bindings and end in a terminal phase.
    End {
        phase: Phase,
        reason: &'static str,
        message: String,
    },
    /// Already terminal: only make sure no binding is left.
    Settled,
}

impl Step {
    /// When the controller must reconcile again, from persisted timestamps only.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Step::Wait { wake, .. } => *wake,
            Step::Activate {
                activation, grant, ..
            } => Some(
                grant
                    .recheck_at
                    .map_or(activation.expires_at, |r| r.min(activation.expires_at)),
            ),
            Step::KeepActive { wake, .. } => Some(*wake),
            Step::End { .. } | Step::Settled => None,
        }
    }
}

/// The step once the API server said that `namespace`, where the step would bind, does not exist.
/// Nothing can be granted there, and a grant is never made in part: an activation is denied, a
/// running grant (its namespace deleted under it) ends. Other steps are unchanged.
pub fn namespace_missing(step: &Step, namespace: &str) -> Step {
    match step {
        Step::Activate { .. } => {
            let refusal = super::validation::namespace_not_found(namespace);
            Step::End {
                phase: Phase::Denied,
                reason: refusal.reason,
                message: refusal.message,
            }
        }
        Step::KeepActive { .. } => Step::End {
            phase: Phase::Revoked,
            reason: reasons::NAMESPACE_NOT_FOUND,
            message: format!(
                "namespace {namespace} was deleted during the grant: the grant ends everywhere"
            ),
        },
        other => other.clone(),
    }
}

/// The bindings a step creates or keeps (none for the others).
pub fn step_bindings(step: &Step) -> &[DesiredBinding] {
    match step {
        Step::Activate { bindings, .. } | Step::KeepActive { bindings, .. } => bindings,
        _ => &[],
    }
}

fn desired_bindings(
    input: &Input<'_>,
    role: &PrivilegedRole,
    grant: &Grant,
    subject: &Subject,
) -> Vec<DesiredBinding> {
    let name = binding_name(input.request_name);
    let role_kind = role.spec.role_ref.kind;
    let role_name = role.spec.role_ref.name.clone();
    if grant.namespaces.is_empty() {
        return vec![DesiredBinding {
            kind: BindingKind::ClusterRoleBinding,
            namespace: None,
            name,
            role_kind,
            role_name,
            subject: subject.clone(),
        }];
    }
    grant
        .namespaces
        .iter()
        .map(|ns| DesiredBinding {
            kind: BindingKind::RoleBinding,
            namespace: Some(ns.clone()),
            name: name.clone(),
            role_kind,
            role_name: role_name.clone(),
            subject: subject.clone(),
        })
        .collect()
}

/// The activation the controller recorded when it made the request Active. Only the controller
/// writes status, so this is the one trusted record of a grant. A binding annotated with an
/// earlier expiry shortens it; nothing lengthens it.
fn recorded_activation(input: &Input<'_>) -> Option<Activation> {
    if input.status.phase != Some(Phase::Active) {
        return None;
    }
    let activated_at = from_k8s(input.status.activated_at.as_ref()?);
    let expires_at = from_k8s(input.status.expires_at.as_ref()?);
    let expires_at = bound_expiry(input).map_or(expires_at, |b| b.min(expires_at));
    Some(Activation {
        activated_at,
        expires_at,
    })
}

/// The earliest `expires-at` annotation on the observed bindings. After a crash between creating
/// the bindings and recording the activation it is the expiry already fixed. Anyone who can create
/// a binding can write it, so it may only *shorten* an activation, never stand in for approval.
fn bound_expiry(input: &Input<'_>) -> Option<DateTime<Utc>> {
    input.observed.iter().filter_map(|b| b.expires_at).min()
}

/// An expiry already fixed for this request, in status or on its bindings: a new activation ends
/// no later than this.
fn fixed_expiry(input: &Input<'_>) -> Option<DateTime<Utc>> {
    let from_status = input.status.expires_at.as_ref().map(from_k8s);
    [from_status, bound_expiry(input)]
        .into_iter()
        .flatten()
        .min()
}

fn binding_label(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Does the grant the role allows now differ from the one made? A grant is fixed when it is made:
/// the role it binds, and where. If the PrivilegedRole now references another role, or grants it
/// elsewhere (e.g. made cluster-wide), the grant is revoked rather than silently moved or widened.
///
/// Where it was granted is taken from the bindings recorded in status (only the controller writes
/// status). An observed binding elsewhere proves nothing, since anyone able to create a binding can
/// label one for the request: it is not ours to keep, and the controller deletes it. What an
/// existing binding of ours grants is read from the binding itself (roleRef is immutable).
fn grant_changed(
    input: &Input<'_>,
    role: &PrivilegedRole,
    desired: &[DesiredBinding],
) -> Option<String> {
    let role_name = &input.spec.role;
    let role_ref = &role.spec.role_ref;
    let kind = role_kind_str(role_ref.kind);
    for o in input
        .observed
        .iter()
        .filter(|o| desired.iter().any(|d| d.same_object(o)))
    {
        if o.role_kind != kind || o.role_name != role_ref.name {
            let label = binding_label(o.kind.as_str(), o.namespace.as_deref(), &o.name);
            return Some(format!(
                "PrivilegedRole {role_name} now references {kind} {}; {label} granted {} {}",
                role_ref.name, o.role_kind, o.role_name
            ));
        }
    }
    let recorded = &input.status.bindings;
    if !recorded.is_empty() {
        let mut now: Vec<(&str, Option<&str>, &str)> = desired
            .iter()
            .map(|d| (d.kind.as_str(), d.namespace.as_deref(), d.name.as_str()))
            .collect();
        let mut then: Vec<(&str, Option<&str>, &str)> = recorded
            .iter()
            .map(|b| (b.kind.as_str(), b.namespace.as_deref(), b.name.as_str()))
            .collect();
        now.sort();
        now.dedup();
        then.sort();
        then.dedup();
        if now != then {
            let describe = |v: &[(&str, Option<&str>, &str)]| {
                v.iter()
                    .map(|(k, ns, n)| binding_label(k, *ns, n))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Some(format!(
                "PrivilegedRole {role_name} now grants [{}] instead of [{}]",
                describe(&now),
                describe(&then)
            ));
        }
    }
    None
}

fn ignored_note(t: &ApprovalTally) -> String {
    if t.ignored.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = t
        .ignored
        .iter()
        .map(|(who, why)| {
            let why = match why {
                Ignored::SelfApproval => "own request",
                Ignored::ServiceAccount => "ServiceAccount",
                Ignored::NotAnApprover => "not an approver of this role",
                Ignored::Duplicate => "duplicate",
            };
            format!("{who} ({why})")
        })
        .collect();
    format!("; not counted: {}", parts.join(", "))
}

fn end(phase: Phase, refusal: Refusal) -> Step {
    Step::End {
        phase,
        reason: refusal.reason,
        message: refusal.message,
    }
}

/// Is the grant recorded in `status` past its expiry? Revoking it needs no fresher view of the
/// request than this one: deleting a binding never grants anything, so a cache that lags (a watch
/// backing off after an API-server restart) must not hold a revocation back.
pub fn is_overdue(status: &ActivationRequestStatus, now: DateTime<Utc>) -> bool {
    status.phase == Some(Phase::Active)
        && status
            .expires_at
            .as_ref()
            .is_some_and(|at| from_k8s(at) <= now)
}

/// Decides the next step for a request. Pure: the same input always yields the same step.
pub fn decide(input: &Input<'_>) -> Step {
    let status_phase = input.status.phase;
    if status_phase.is_some_and(Phase::is_terminal) {
        return Step::Settled;
    }
    let Some(requester) = input
        .spec
        .requester
        .as_ref()
        .filter(|r| !r.username.is_empty())
    else {
        return Step::End {
            phase: Phase::Failed,
            reason: reasons::MISSING_REQUESTER,
            message: "spec.requester is missing: the request was not stamped by kubepim's admission webhook".into(),
        };
    };
    if input.spec.cancel {
        return Step::End {
            phase: Phase::Cancelled,
            reason: reasons::CANCELLED_BY_REQUESTER,
            message: format!("cancelled by {}", requester.username),
        };
    }
    let recorded = recorded_activation(input);
    // Bindings may exist (the request is Active, or an activation's status write was lost): a
    // refusal then revokes them.
    let refused_phase = if recorded.is_some() || !input.observed.is_empty() {
        Phase::Revoked
    } else {
        Phase::Denied
    };
    let Some(role) = input.role else {
        return end(
            refused_phase,
            Refusal {
                reason: reasons::ROLE_NOT_FOUND,
                message: format!("PrivilegedRole {} does not exist", input.spec.role),
            },
        );
    };
    let tally = tally_for(
        &input.status.approvals,
        &role.spec,
        Purpose::of(input.spec),
        &requester.username,
    );
    if let Some((approver, why)) = &tally.denied_by {
        let why = why.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        return Step::End {
            phase: Phase::Denied,
            reason: reasons::DENIED_BY_APPROVER,
            message: format!("denied by {approver}{why}"),
        };
    }

    if let Some(activation) = recorded {
        if input.now >= activation.expires_at {
            return elapsed(activation.expires_at);
        }
        // An extension is Active, so its bindings exist: this grant hands over and ends.
        if let Some((successor, until)) =
            extension::handed_over(input.request_name, input.spec, input.successor)
        {
            let until = until.map(|t| format!(" until {}", t.to_rfc3339()));
            return Step::End {
                phase: Phase::Expired,
                reason: reasons::EXTENDED,
                message: format!("extended by {successor}{}", until.unwrap_or_default()),
            };
        }
        // Everything a grant rests on must still hold, every time: eligibility, role, approvals.
        let grant = match validate(input.spec, requester, role, input.eligibilities, input.now) {
            Ok(grant) => grant,
            Err(refusal) => return end(Phase::Revoked, refusal),
        };
        let bindings = desired_bindings(input, role, &grant, &requester_subject(requester));
        if let Some(message) = grant_changed(input, role, &bindings) {
            return Step::End {
                phase: Phase::Revoked,
                reason: reasons::ROLE_CHANGED,
                message,
            };
        }
        if !tally.quorum_met() {
            return Step::End {
                phase: Phase::Revoked,
                reason: reasons::NOT_APPROVED,
                message: format!(
                    "approvals no longer satisfy PrivilegedRole {}: {} of {} approvals{}",
                    input.spec.role,
                    tally.approved_by.len(),
                    tally.required,
                    ignored_note(&tally)
                ),
            };
        }
        let wake = grant
            .recheck_at
            .map_or(activation.expires_at, |r| r.min(activation.expires_at));
        return Step::KeepActive {
            activation,
            bindings,
            wake,
            tally,
        };
    }

    let judged_at = super::validation::judged_at(input.spec, input.now);
    let grant = match validate(input.spec, requester, role, input.eligibilities, judged_at) {
        Ok(grant) => grant,
        Err(refusal) => return end(refused_phase, refusal),
    };
    if let Err(refusal) = super::budget::check_pending(input, &requester.username, role, &grant) {
        return end(refused_phase, refusal);
    }
    let subject = requester_subject(requester);
    let bindings = desired_bindings(input, role, &grant, &subject);
    // An extension is judged against its original on every pass until it activates: an
    // original that ends first leaves nothing to extend.
    let handover = match input.spec.extends {
        Some(_) => {
            match extension::judge(input.spec, &requester.username, input.original, input.now) {
                Ok(handover) => Some(handover),
                Err(refusal) => return end(refused_phase, refusal),
            }
        }
        None => None,
    };
    if let Some(handover) = &handover {
        let projected = handover.runs_from + grant.duration;
        if let Err(refusal) =
            extension::check_continuous(&input.spec.role, &role.spec, handover, projected)
        {
            return end(refused_phase, refusal);
        }
    }

    if !tally.quorum_met() {
        let deadline = truncate_to_second(
            input.created_at + duration_from_k8s(&role.spec.approval.pending_timeout),
        );
        if input.now >= deadline {
            return Step::End {
                phase: Phase::Expired,
                reason: reasons::NOT_APPROVED,
                message: format!(
                    "not approved within {}: {} of {} approvals{}",
                    crate::time::format_duration(duration_from_k8s(
                        &role.spec.approval.pending_timeout
                    )),
                    tally.approved_by.len(),
                    tally.required,
                    ignored_note(&tally)
                ),
            };
        }
        let approvers = &role.spec.approval.approvers;
        let message = format!(
            "waiting for {} more approval(s) from users [{}] or groups [{}] until {}{}",
            tally.required as usize - tally.approved_by.len().min(tally.required as usize),
            approvers.users.join(", "),
            approvers.groups.join(", "),
            deadline.to_rfc3339(),
            ignored_note(&tally)
        );
        let wake = grant.recheck_at.map_or(deadline, |r| r.min(deadline));
        return Step::Wait {
            phase: Phase::Pending,
            reason: reasons::AWAITING_APPROVAL,
            message,
            wake: Some(wake),
            tally,
        };
    }

    let approved_reason = if role.spec.break_glass {
        reasons::BREAK_GLASS
    } else if tally.required == 0 {
        reasons::APPROVAL_NOT_REQUIRED
    } else {
        reasons::APPROVED
    };
    if let Some(start) = input.spec.start_at.as_ref().map(from_k8s)
        && start > input.now
    {
        let wake = grant.recheck_at.map_or(start, |r| r.min(start));
        return Step::Wait {
            phase: Phase::Scheduled,
            reason: reasons::SCHEDULED,
            message: format!("approved; activates at {}", start.to_rfc3339()),
            wake: Some(wake),
            tally,
        };
    }
    let activated_at = truncate_to_second(input.now);
    let until = handover.map_or(activated_at, |h| h.runs_from) + grant.duration;
    let expires_at = [Some(until), grant.eligible_until, fixed_expiry(input)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(until);
    let expires_at = truncate_to_second(expires_at);
    if expires_at <= input.now {
        // The bindings of an activation whose status write was lost have run their time.
        return elapsed(expires_at);
    }
    if let Some(message) = grant_changed(input, role, &bindings) {
        return Step::End {
            phase: Phase::Revoked,
            reason: reasons::ROLE_CHANGED,
            message,
        };
    }
    Step::Activate {
        activation: Activation {
            activated_at,
            expires_at,
        },
        bindings,
        tally,
        grant,
        reason: approved_reason,
        continuous_since: handover.map(|h| h.continuous_since),
    }
}

fn elapsed(expires_at: DateTime<Utc>) -> Step {
    Step::End {
        phase: Phase::Expired,
        reason: reasons::DURATION_ELAPSED,
        message: format!("grant ended at {}", expires_at.to_rfc3339()),
    }
}
