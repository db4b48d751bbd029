//! What the activity record changes in a request's life: a grant unused for its role's
//! `idleTimeout` ends (reason `Idle`), and a grant's end says whether it was used at all.
//!
//! Both need the audit record: without it (`ingest == false`) no grant ever ends for idleness,
//! and the end says the use is unknown. Idleness is judged from the persisted
//! `status.activity.lastUse`, which the aggregator writes at most every flush interval: a grant
//! can end up to that interval after a late use (idle timeouts are minutes, flushes seconds).
use chrono::{DateTime, Duration, Utc};

use crate::api::conditions::USED;
use crate::api::{ActivationRequestStatus, Activity, Phase, PrivilegedRole};
use crate::time::from_k8s;

use super::activity::{self, idle_at};
use super::lifecycle::Step;
use super::reasons;
use super::status::set_condition;

/// The role's idle timeout, when it sets one (and it is positive).
pub fn idle_timeout(role: Option<&PrivilegedRole>) -> Option<Duration> {
    let d: std::time::Duration = role?.spec.idle_timeout?.into();
    Duration::from_std(d).ok().filter(|d| *d > Duration::zero())
}

/// The step once idleness is considered: a running grant past its idle time ends (`Expired`,
/// reason `Idle`); one before it is looked at again at the idle time. Other steps, and every
/// step without the audit record or an idle timeout, are unchanged.
pub fn with_idle(
    step: Step,
    role: Option<&PrivilegedRole>,
    activity: Option<&Activity>,
    ingest: bool,
    now: DateTime<Utc>,
) -> Step {
    let Some(timeout) = idle_timeout(role).filter(|_| ingest) else {
        return step;
    };
    match step {
        Step::KeepActive {
            activation,
            bindings,
            wake,
            tally,
        } => {
            let at = idle_at(activity, activation.activated_at, timeout);
            if now < at {
                return Step::KeepActive {
                    activation,
                    bindings,
                    wake: wake.min(at),
                    tally,
                };
            }
            let used = activity.is_some_and(|a| a.requests > 0);
            let message = if used {
                format!(
                    "the grant was not used for its role's idle timeout of {} and ended at {}",
                    human(timeout),
                    at.to_rfc3339()
                )
            } else {
                format!(
                    "the grant was never used in its role's idle timeout of {} and ended at {}",
                    human(timeout),
                    at.to_rfc3339()
                )
            };
            Step::End {
                phase: Phase::Expired,
                reason: reasons::IDLE,
                message,
            }
        }
        other => other,
    }
}

fn human(d: Duration) -> String {
    let secs = d.num_seconds();
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// What the end of a grant says about its use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub reason: &'static str,
    /// `Used` condition status: true when requests were made.
    pub used: bool,
    pub message: String,
}

/// The usage of a grant that ends with `activity` recorded.
pub fn usage(activity: Option<&Activity>, ingest: bool) -> Usage {
    match activity::never_used(activity, ingest) {
        None => Usage {
            reason: reasons::ACTIVITY_UNAVAILABLE,
            used: false,
            message: "no audit record is configured: whether the grant was used is not known"
                .into(),
        },
        Some(true) => Usage {
            reason: reasons::NEVER_USED,
            used: false,
            message: "the grant was never used: no API request was made under it".into(),
        },
        Some(false) => {
            let a = activity.cloned().unwrap_or_default();
            let last = a
                .last_use
                .as_ref()
                .map(|t| from_k8s(t).to_rfc3339())
                .unwrap_or_default();
            Usage {
                reason: reasons::USED,
                used: true,
                message: format!(
                    "{} API requests ({} denied) in {} namespaces, last at {last}; {} notable writes",
                    a.requests,
                    a.denied,
                    a.namespaces.len(),
                    a.notable_writes.len() as i64 + a.notable_writes_dropped
                ),
            }
        }
    }
}

/// Adds what the activity record says to a status the reconciler is about to write: at
/// activation, an empty record (or `Unavailable` without ingest); at a grant's end, `pending`
/// (what was counted and not yet written) merged in and the `Used` condition. Returns the usage
/// when the grant ends.
pub fn record_in_status(
    old: &ActivationRequestStatus,
    new: &mut ActivationRequestStatus,
    pending: Option<&Activity>,
    ingest: bool,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<Usage> {
    let was_active = old.phase == Some(Phase::Active);
    let is_active = new.phase == Some(Phase::Active);
    if is_active && !was_active && new.activity.is_none() {
        new.activity = Some(if ingest {
            activity::empty()
        } else {
            activity::unavailable()
        });
    }
    if let Some(delta) = pending {
        let mut merged = new.activity.clone().unwrap_or_else(activity::empty);
        activity::merge(&mut merged, delta, activity::Limits::default());
        new.activity = Some(merged);
    }
    let ends = was_active && new.phase.is_some_and(Phase::is_terminal);
    if !ends {
        return None;
    }
    let usage = usage(new.activity.as_ref(), ingest);
    set_condition(
        &mut new.conditions,
        USED,
        usage.used,
        usage.reason,
        &usage.message,
        generation,
        now,
    );
    Some(usage)
}
