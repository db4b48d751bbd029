//! The caches of different kinds are filled by different watches, delivered in no fixed order:
//! a GitOps pipeline that applies a PrivilegedRole, an Eligibility and a request together can
//! have the request seen first. Refusing it then would be wrong and final, so a refusal that only
//! says "no such role" or "not eligible" waits a few seconds for the caches before it is written.
//! Waiting never grants anything; a request refused for any other reason is refused at once.
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::Phase;

use super::lifecycle::Step;
use super::reasons;

/// How long after its creation a request's refusal for a missing role or eligibility waits.
pub const GRACE: Duration = Duration::from_secs(5);
/// How soon it looks again meanwhile.
pub const RETRY: Duration = Duration::from_millis(500);

/// `Some(delay)` when `step` refuses a request created at `created_at` for what a lagging cache
/// may not have yet, and the grace has not run out.
pub fn wait_for_caches(
    step: &Step,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let Step::End {
        phase: Phase::Denied,
        reason,
        ..
    } = step
    else {
        return None;
    };
    if *reason != reasons::ROLE_NOT_FOUND && *reason != reasons::NOT_ELIGIBLE {
        return None;
    }
    // Creation timestamps have one-second resolution: count from the end of that second.
    let age = (now - created_at).to_std().unwrap_or(Duration::ZERO);
    (age < GRACE + Duration::from_secs(1)).then_some(RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::builders::at;

    fn denied(reason: &'static str) -> Step {
        Step::End {
            phase: Phase::Denied,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn only_a_young_refusal_for_a_missing_role_or_eligibility_waits() {
        let created = at(0);
        let soon = created + chrono::Duration::seconds(2);
        let late = created + chrono::Duration::seconds(7);
        for (step, now, want) in [
            (denied(reasons::ROLE_NOT_FOUND), soon, Some(RETRY)),
            (denied(reasons::NOT_ELIGIBLE), soon, Some(RETRY)),
            (denied(reasons::ROLE_NOT_FOUND), late, None),
            (denied(reasons::NOT_ELIGIBLE), late, None),
            // Other refusals are final at once.
            (denied(reasons::DENIED_BY_APPROVER), soon, None),
            (denied(reasons::MISSING_REQUESTER), soon, None),
            // A revocation (the request held bindings) never waits.
            (
                Step::End {
                    phase: Phase::Revoked,
                    reason: reasons::NOT_ELIGIBLE,
                    message: String::new(),
                },
                soon,
                None,
            ),
            (Step::Settled, soon, None),
        ] {
            assert_eq!(
                wait_for_caches(&step, created, now),
                want,
                "{step:?} at {now}"
            );
        }
    }
}
