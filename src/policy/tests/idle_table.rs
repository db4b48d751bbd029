//! Idle timeouts and the usage recorded at a grant's end.
use super::builders::*;
use crate::api::conditions::USED;
use crate::api::{ActivitySource, Phase};
use crate::policy::ApprovalTally;
use crate::policy::activity::{self, Limits, Use};
use crate::policy::idle::{record_in_status, usage, with_idle};
use crate::policy::lifecycle::{Activation, Step};
use crate::policy::reasons;

fn keep_active() -> Step {
    Step::KeepActive {
        activation: Activation {
            activated_at: at(0),
            expires_at: at(120),
        },
        bindings: vec![],
        wake: at(120),
        tally: ApprovalTally::default(),
    }
}

fn used_at(minute: i64) -> crate::api::Activity {
    let mut a = activity::empty();
    activity::record(
        &mut a,
        &Use {
            at: at(minute),
            verb: "get".into(),
            resource: "pods".into(),
            namespace: Some("payments".into()),
            name: None,
            code: Some(200),
            audit_id: String::new(),
        },
        Limits::default(),
    );
    a
}

fn wake_of(step: &Step) -> Option<chrono::DateTime<chrono::Utc>> {
    match step {
        Step::KeepActive { wake, .. } => Some(*wake),
        _ => None,
    }
}

#[test]
fn an_idle_grant_ends_only_with_the_record_and_a_timeout() {
    let idle_role = role("r").idle_timeout("30m");
    let plain_role = role("r");
    let last_use = used_at(20);
    // (role, activity, ingest, now) -> ended?, wake if kept
    let cases = [
        // No idle timeout: unchanged.
        (&plain_role, None, true, at(100), None),
        // No audit record: never ends for idleness, and no earlier wake.
        (&idle_role, None, false, at(100), None),
        // Never used: idle 30m after activation.
        (&idle_role, None, true, at(29), Some(at(30))),
        (&idle_role, None, true, at(30), None),
        // Used at minute 20: idle at 50.
        (&idle_role, Some(&last_use), true, at(49), Some(at(50))),
        (&idle_role, Some(&last_use), true, at(50), None),
    ];
    for (i, (r, a, ingest, now, kept_until)) in cases.into_iter().enumerate() {
        let step = with_idle(keep_active(), Some(r), a, ingest, now);
        let ends_idle = matches!(&step, Step::End { reason, phase: Phase::Expired, .. } if *reason == reasons::IDLE);
        let unchanged = r.spec.idle_timeout.is_none() || !ingest;
        match (unchanged, kept_until) {
            (true, _) => assert_eq!(step, keep_active(), "case {i}"),
            (false, Some(wake)) => assert_eq!(wake_of(&step), Some(wake), "case {i}: {step:?}"),
            (false, None) => assert!(ends_idle, "case {i}: {step:?}"),
        }
    }
}

#[test]
fn the_idle_message_says_whether_the_grant_was_ever_used() {
    let r = role("r").idle_timeout("30m");
    let Step::End { message, .. } = with_idle(keep_active(), Some(&r), None, true, at(31)) else {
        panic!("want End");
    };
    assert!(message.contains("never used"), "{message}");
    let a = used_at(1);
    let Step::End { message, .. } = with_idle(keep_active(), Some(&r), Some(&a), true, at(40))
    else {
        panic!("want End");
    };
    assert!(message.contains("not used for"), "{message}");
    assert!(message.contains("30m"), "{message}");
}

#[test]
fn other_steps_are_left_alone() {
    let r = role("r").idle_timeout("1s");
    let end = Step::End {
        phase: Phase::Cancelled,
        reason: reasons::CANCELLED_BY_REQUESTER,
        message: "x".into(),
    };
    assert_eq!(with_idle(end.clone(), Some(&r), None, true, at(500)), end);
    assert_eq!(
        with_idle(Step::Settled, Some(&r), None, true, at(500)),
        Step::Settled
    );
}

#[test]
fn activation_starts_a_record_that_says_where_it_comes_from() {
    let old = fresh().phase(Phase::Pending);
    for (ingest, source) in [
        (true, ActivitySource::AuditWebhook),
        (false, ActivitySource::Unavailable),
    ] {
        let mut new = fresh().active(at(0), at(60));
        assert_eq!(
            record_in_status(&old, &mut new, None, ingest, Some(1), at(0)),
            None
        );
        assert_eq!(new.activity.as_ref().map(|a| a.source), Some(source));
        assert_eq!(new.activity.as_ref().map(|a| a.requests), Some(0));
    }
}

#[test]
fn a_grant_end_merges_what_is_pending_and_says_whether_it_was_used() {
    let old = fresh().active(at(0), at(60));
    let cases = [
        (None, true, reasons::NEVER_USED, "False"),
        (Some(used_at(5)), true, reasons::USED, "True"),
        (None, false, reasons::ACTIVITY_UNAVAILABLE, "False"),
    ];
    for (pending, ingest, reason, status) in cases {
        let mut new = fresh().ended(Phase::Expired, at(0), at(60), at(60));
        new.activity = Some(activity::empty());
        let usage = record_in_status(&old, &mut new, pending.as_ref(), ingest, Some(1), at(60))
            .expect("a grant that ends reports its usage");
        assert_eq!(usage.reason, reason);
        let cond = new.conditions.iter().find(|c| c.type_ == USED).unwrap();
        assert_eq!(
            (cond.reason.as_str(), cond.status.as_str()),
            (reason, status)
        );
        let requests = new.activity.as_ref().map_or(0, |a| a.requests);
        assert_eq!(requests, i64::from(pending.is_some()));
    }
}

#[test]
fn a_write_that_neither_activates_nor_ends_leaves_the_record_alone() {
    let old = fresh().active(at(0), at(60));
    let mut new = old.clone();
    assert_eq!(
        record_in_status(&old, &mut new, None, true, Some(1), at(10)),
        None
    );
    assert_eq!(new, old);
}

#[test]
fn usage_message_counts_what_was_done() {
    let u = usage(Some(&used_at(3)), true);
    assert!(u.used);
    assert!(
        u.message
            .starts_with("1 API requests (0 denied) in 1 namespaces"),
        "{}",
        u.message
    );
}
