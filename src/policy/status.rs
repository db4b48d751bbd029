//! The status a request should have after a step: controller-owned fields only.
//!
//! Pure, so that "nothing changed" is a plain equality and a no-op reconcile writes nothing.
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::conditions::{ACTIVE, APPROVED, DENIED, READY};
use crate::api::{ActivationRequestStatus, BindingRef, Phase};
use crate::time::to_k8s;

use super::approvals::ApprovalTally;
use super::lifecycle::{Activation, DesiredBinding, Step};
use super::reasons;

/// Sets a condition with cert-manager semantics: `lastTransitionTime` only moves when the status
/// flips; reason, message and observedGeneration are refreshed in place.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" };
    set_condition_to(conditions, type_, status, reason, message, generation, now);
}

/// [`set_condition`] for any of the three statuses (`Unknown` included).
pub fn set_condition_to(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = status.to_string();
    let message = message.chars().take(1024).collect::<String>();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = to_k8s(now);
            }
            existing.status = status;
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: to_k8s(now),
        }),
    }
}

/// The status of a request the controller cannot move on: everything as it was, and `Ready`
/// False with why (`reason` a bounded word, `message` the error), so that the request shows why it
/// is where it is while the controller retries. Equal to `old` when it says so already.
pub fn stuck_status(
    old: &ActivationRequestStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> ActivationRequestStatus {
    let mut status = old.clone();
    let unchanged = status.conditions.iter().any(|c| {
        c.type_ == READY && c.status == "False" && c.reason == reason && c.message == message
    });
    if !unchanged {
        set_condition(
            &mut status.conditions,
            READY,
            false,
            reason,
            message,
            generation,
            now,
        );
    }
    status
}

fn binding_refs(bindings: &[DesiredBinding]) -> Vec<BindingRef> {
    let mut refs: Vec<BindingRef> = bindings
        .iter()
        .map(|b| BindingRef {
            kind: b.kind.as_str().to_string(),
            namespace: b.namespace.clone(),
            name: b.name.clone(),
        })
        .collect();
    refs.sort();
    refs
}

fn approved_message(tally: &ApprovalTally, reason: &str) -> String {
    match reason {
        reasons::BREAK_GLASS => "break-glass role: no approval required".into(),
        reasons::APPROVAL_NOT_REQUIRED => "role requires no approval".into(),
        _ => format!("approved by {}", tally.approved_by.join(", ")),
    }
}

fn approval_reason(tally: &ApprovalTally, fallback: &'static str) -> &'static str {
    if tally.required == 0 {
        fallback
    } else {
        reasons::APPROVED
    }
}

fn active(
    status: &mut ActivationRequestStatus,
    activation: &Activation,
    bindings: &[DesiredBinding],
    tally: &ApprovalTally,
    approved_reason: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let until = activation.expires_at.to_rfc3339();
    status.phase = Some(Phase::Active);
    status.activated_at = Some(to_k8s(activation.activated_at));
    status.expires_at = Some(to_k8s(activation.expires_at));
    status.bindings = binding_refs(bindings);
    status.reason = Some(reasons::ACTIVATED.into());
    status.message = Some(format!("active until {until}"));
    let conds = &mut status.conditions;
    set_condition(
        conds,
        APPROVED,
        true,
        approved_reason,
        &approved_message(tally, approved_reason),
        generation,
        now,
    );
    set_condition(
        conds,
        ACTIVE,
        true,
        reasons::ACTIVATED,
        &format!("bindings exist until {until}"),
        generation,
        now,
    );
    set_condition(
        conds,
        READY,
        true,
        reasons::ACTIVATED,
        &format!("active until {until}"),
        generation,
        now,
    );
}

/// Derives the new status from the old one and the step taken. Approvals are copied unchanged:
/// they are the approvers' to append, never the controller's to write.
pub fn request_status(
    old: &ActivationRequestStatus,
    step: &Step,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> ActivationRequestStatus {
    let mut status = old.clone();
    status.observed_generation = generation;

    match step {
        Step::Settled => return old.clone(),
        Step::Wait {
            phase,
            reason,
            message,
            tally,
            ..
        } => {
            status.phase = Some(*phase);
            status.reason = Some((*reason).into());
            status.message = Some(message.clone());
            let conds = &mut status.conditions;
            if *phase == Phase::Scheduled {
                let approved_reason = approval_reason(tally, reasons::APPROVAL_NOT_REQUIRED);
                set_condition(
                    conds,
                    APPROVED,
                    true,
                    approved_reason,
                    &approved_message(tally, approved_reason),
                    generation,
                    now,
                );
            } else {
                set_condition(conds, APPROVED, false, reason, message, generation, now);
            }
            set_condition(conds, ACTIVE, false, reason, message, generation, now);
            set_condition(conds, READY, false, reason, message, generation, now);
        }
        Step::Activate {
            activation,
            bindings,
            tally,
            reason,
            continuous_since,
            ..
        } => {
            status.continuous_since = continuous_since.map(crate::time::to_k8s);
            active(
                &mut status,
                activation,
                bindings,
                tally,
                reason,
                generation,
                now,
            );
        }
        Step::KeepActive {
            activation,
            bindings,
            tally,
            ..
        } => {
            let approved_reason = old
                .conditions
                .iter()
                .find(|c| c.type_ == APPROVED && c.status == "True")
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| {
                    approval_reason(tally, reasons::APPROVAL_NOT_REQUIRED).to_string()
                });
            active(
                &mut status,
                activation,
                bindings,
                tally,
                &approved_reason,
                generation,
                now,
            );
        }
        Step::End {
            phase,
            reason,
            message,
        } => {
            status.phase = Some(*phase);
            status.reason = Some((*reason).into());
            status.message = Some(message.clone());
            // The one reliable record of when a grant ended early, which budgets count up to.
            if old.phase == Some(Phase::Active) && status.ended_at.is_none() {
                status.ended_at = Some(to_k8s(now));
            }
            let conds = &mut status.conditions;
            match phase {
                Phase::Denied => {
                    set_condition(conds, DENIED, true, reason, message, generation, now);
                    set_condition(conds, APPROVED, false, reason, message, generation, now);
                }
                Phase::Expired if *reason == reasons::NOT_APPROVED => {
                    set_condition(conds, APPROVED, false, reason, message, generation, now);
                }
                _ => {}
            }
            set_condition(conds, ACTIVE, false, reason, message, generation, now);
            set_condition(conds, READY, false, reason, message, generation, now);
        }
    }
    status
}
