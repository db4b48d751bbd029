//! Access reviews on the fixed clock `t0`: coverage, evidence, the recommendation rule, due time
//! and steps, the next review of a schedule, who may decide, what a `/status` write may change,
//! outcomes at close, and which subjects an Eligibility stops honouring.
use chrono::{DateTime, TimeDelta, Utc};

use super::builders::*;
use crate::api::{
    AccessReview, AccessReviewSpec, AccessReviewStatus, ActivationRequestSpec,
    ActivationRequestStatus, Eligibility, ItemDecision, Phase, ReviewDecision, ReviewPhase,
    ReviewSchedule, ReviewSelector, Reviewers,
};
use crate::policy::extension::Related;
use crate::policy::review::{self, ReviewStep, SERIES_LABEL};
use crate::policy::review_decisions as decisions;
use crate::time::to_k8s;

pub(super) const ROLE: &str = "payments-admin";
pub(super) type Kept = (String, ActivationRequestSpec, ActivationRequestStatus);

pub(super) fn days(d: i64) -> TimeDelta {
    TimeDelta::days(d)
}

pub(super) fn spec() -> AccessReviewSpec {
    AccessReviewSpec {
        selector: ReviewSelector {
            roles: vec![ROLE.into()],
            ..Default::default()
        },
        reviewers: Reviewers {
            users: vec!["bob".into()],
            groups: vec!["sre-leads".into()],
            subjects_approvers: false,
        },
        due_at: Some(to_k8s(t0() + days(14))),
        duration: None,
        default_decision: ReviewDecision::Keep,
        lookback: k8s_duration("2160h"),
        schedule: None,
    }
}

/// An eligibility created 200 days before `t0`, with uid and generation 1.
pub(super) fn elig(name: &str, role: &str) -> Eligibility {
    let mut e = eligibility(name, role);
    e.metadata.uid = Some(format!("uid-{name}"));
    e.metadata.generation = Some(1);
    e.metadata.creation_timestamp = Some(to_k8s(t0() - days(200)));
    e
}

pub(super) fn grant(
    who: &str,
    role: &str,
    from: DateTime<Utc>,
    hours: i64,
    approvers: &[&str],
) -> Kept {
    let approvals: Vec<_> = approvers.iter().map(|a| approved_by(a)).collect();
    let to = from + TimeDelta::hours(hours);
    (
        format!("{who}-{}", from.timestamp()),
        request(role).by(&user(who).in_groups(&["payments-oncall"])),
        fresh()
            .approvals(&approvals)
            .ended(Phase::Expired, from, to, to),
    )
}

pub(super) fn related(history: &[Kept]) -> Vec<Related<'_>> {
    history
        .iter()
        .map(|(name, spec, status)| Related { name, spec, status })
        .collect()
}

pub(super) fn filled(eligibilities: &[Eligibility], history: &[Kept]) -> AccessReviewStatus {
    let refs: Vec<&Eligibility> = eligibilities.iter().collect();
    let fill = review::fill(&spec(), &refs, &related(history), t0());
    AccessReviewStatus {
        phase: Some(ReviewPhase::Open),
        items: fill.items,
        ..Default::default()
    }
}

pub(super) fn decision(
    item: &str,
    d: ReviewDecision,
    reviewer: &str,
    groups: &[&str],
) -> ItemDecision {
    ItemDecision {
        item: item.into(),
        decision: d,
        reviewer: reviewer.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        at: None,
        comment: None,
    }
}

#[test]
fn selector_covers_by_role_label_or_all() {
    let mut labelled = elig("b", "other");
    labelled.metadata.labels = Some([("team".to_string(), "payments".to_string())].into());
    let plain = elig("a", ROLE);
    let by_role = ReviewSelector {
        roles: vec![ROLE.into()],
        ..Default::default()
    };
    let by_label = ReviewSelector {
        match_labels: [("team".to_string(), "payments".to_string())].into(),
        ..Default::default()
    };
    let all = ReviewSelector {
        all: true,
        ..Default::default()
    };
    let cases = [
        (&by_role, &plain, true),
        (&by_role, &labelled, false),
        (&by_label, &plain, false),
        (&by_label, &labelled, true),
        (&all, &plain, true),
        (&all, &labelled, true),
        (&ReviewSelector::default(), &plain, false),
    ];
    for (i, (selector, e, want)) in cases.into_iter().enumerate() {
        assert_eq!(review::covers(selector, e), want, "case {i}");
    }
}

#[test]
fn one_item_per_eligibility_subject_with_stable_ids() {
    let e1 = elig("pay-1", ROLE)
        .users(&["alice"])
        .groups(&["payments-oncall"])
        .service_account("ci", "deployer");
    let e2 = elig("other", "other-role").users(&["mallory"]);
    let status = filled(&[e1, e2], &[]);
    let ids: Vec<&str> = status.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "pay-1/User/alice",
            "pay-1/Group/payments-oncall",
            "pay-1/ServiceAccount/ci:deployer"
        ]
    );
    assert_eq!(status.items[0].eligibility_uid, "uid-pay-1");
    assert_eq!(status.items[0].eligibility_generation, 1);
}

#[test]
fn evidence_counts_grants_in_the_lookback_window() {
    let history = vec![
        // Inside the window: 2h and 3h, approved by bob and carol.
        grant("alice", ROLE, t0() - days(10), 2, &["bob"]),
        grant("alice", ROLE, t0() - days(3), 3, &["carol", "bob"]),
        // Before the window (91 days ago): not counted.
        grant("alice", ROLE, t0() - days(91), 5, &["dave"]),
        // Another role, another user: not alice's evidence on this role.
        grant("alice", "other-role", t0() - days(1), 1, &["erin"]),
        grant("mallory", ROLE, t0() - days(1), 1, &["frank"]),
    ];
    let e = elig("pay", ROLE)
        .users(&["alice", "carol"])
        .groups(&["payments-oncall"]);
    let status = filled(&[e], &history);
    let alice = &status.items[0].evidence;
    assert_eq!(alice.activations, 2);
    assert_eq!(alice.last_used, Some(to_k8s(t0() - days(3))));
    assert_eq!(alice.elevated_hours, 5.0);
    assert_eq!(alice.approvers, ["bob", "carol"]);
    let carol = &status.items[1].evidence;
    assert_eq!((carol.activations, carol.last_used.clone()), (0, None));
    // The group sees its members' grants (alice's two and mallory's one).
    let group = &status.items[2].evidence;
    assert_eq!(group.activations, 3);
    assert_eq!(group.elevated_hours, 6.0);
    assert_eq!(group.approvers, ["bob", "carol", "frank"]);
}

#[test]
fn evidence_counts_a_running_grant_up_to_now_and_the_part_inside_the_window() {
    let running = (
        "run".to_string(),
        request(ROLE).by(&user("alice")),
        fresh().active(t0() - TimeDelta::minutes(90), t0() + TimeDelta::hours(2)),
    );
    // Started 90 days + 1h ago, 3h long: 2h of it inside the window.
    let straddling = grant("alice", ROLE, t0() - days(90) - TimeDelta::hours(1), 3, &[]);
    let status = filled(
        &[elig("pay", ROLE).users(&["alice"])],
        &[running, straddling],
    );
    let ev = &status.items[0].evidence;
    assert_eq!(ev.activations, 2);
    assert_eq!(ev.elevated_hours, 3.5);
}

#[test]
fn a_user_named_like_a_service_account_is_not_that_service_account() {
    let sa_grant = (
        "sa".to_string(),
        request(ROLE).by(&sa("ci", "deployer")),
        fresh().ended(
            Phase::Expired,
            t0() - days(1),
            t0() - days(1) + TimeDelta::hours(1),
            t0(),
        ),
    );
    let e = elig("pay", ROLE)
        .users(&["system:serviceaccount:ci:deployer"])
        .service_account("ci", "deployer");
    let status = filled(&[e], &[sa_grant]);
    assert_eq!(status.items[0].evidence.activations, 0);
    assert_eq!(status.items[1].evidence.activations, 1);
}

#[test]
fn recommendation_rule() {
    let lookback = days(90);
    let used = |last: i64| crate::api::Evidence {
        activations: 1,
        last_used: Some(to_k8s(t0() - days(last))),
        ..Default::default()
    };
    let unused = crate::api::Evidence::default();
    // Activated twice, and the audit record covered both: never used, or used once.
    let audited = |grants: u32, unused_grants: u32| crate::api::Evidence {
        activations: 2,
        activity: Some(crate::api::ReviewedActivity {
            grants,
            requests: i64::from(grants - unused_grants) * 7,
            unused_grants,
        }),
        ..used(3)
    };
    let (never_used, once_used, half_recorded) = (audited(2, 2), audited(2, 1), audited(1, 1));
    let mut young = elig("young", ROLE);
    young.metadata.creation_timestamp = Some(to_k8s(t0() - days(30)));
    let ended = elig("ended", ROLE).not_after(t0() - days(5));
    let old = elig("old", ROLE);
    let cases = [
        (&old, &unused, ReviewDecision::Remove, "unused for 90 days"),
        (
            &old,
            &used(12),
            ReviewDecision::Keep,
            "used 1 times in 90 days, last 12 days ago",
        ),
        (
            &young,
            &unused,
            ReviewDecision::Keep,
            "not used yet; created 30 days ago, less than the 90-day lookback",
        ),
        (
            &ended,
            &used(1),
            ReviewDecision::Remove,
            "eligibility window ended 5 days ago",
        ),
        (
            &old,
            &never_used,
            ReviewDecision::Remove,
            "activated 2 times in 90 days but never used (audit record)",
        ),
        (
            &old,
            &once_used,
            ReviewDecision::Keep,
            "used 2 times in 90 days, last 3 days ago",
        ),
        // One grant without the audit record: it may have been used; not judged unused.
        (
            &old,
            &half_recorded,
            ReviewDecision::Keep,
            "used 2 times in 90 days, last 3 days ago",
        ),
    ];
    for (e, ev, decision, reason) in cases {
        let r = review::recommend(e, ev, lookback, t0());
        assert_eq!((r.decision, r.reason.as_str()), (decision, reason));
    }
}

#[test]
fn items_are_bounded_and_the_rest_counted() {
    let many: Vec<Eligibility> = (0..31)
        .map(|i| {
            let names: Vec<String> = (0..100).map(|u| format!("u{u}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            elig(&format!("e{i:02}"), ROLE).users(&names)
        })
        .collect();
    let refs: Vec<&Eligibility> = many.iter().collect();
    let fill = review::fill(&spec(), &refs, &[], t0());
    assert_eq!(fill.items.len(), crate::api::access_review::MAX_ITEMS);
    assert_eq!(fill.left_out, 3100 - crate::api::access_review::MAX_ITEMS);
}

fn at_review(spec: AccessReviewSpec, status: Option<AccessReviewStatus>) -> AccessReview {
    let mut r = AccessReview::new("q1", spec);
    r.metadata.creation_timestamp = Some(to_k8s(t0()));
    r.status = status;
    r
}

#[test]
fn due_time_and_steps() {
    let mut by_duration = spec();
    by_duration.due_at = None;
    by_duration.duration = Some(k8s_duration("48h"));
    assert_eq!(
        review::due_at(&at_review(by_duration, None)),
        Some(t0() + days(2))
    );
    let due = t0() + days(14);
    let open = AccessReviewStatus {
        phase: Some(ReviewPhase::Open),
        ..Default::default()
    };
    let cases: [(Option<AccessReviewStatus>, DateTime<Utc>, &str); 4] = [
        (None, t0(), "open"),
        (Some(open.clone()), due - TimeDelta::seconds(1), "wait"),
        (Some(open.clone()), due, "close"),
        (
            Some(decisions::close(&spec(), &open, due)),
            due + days(1),
            "closed",
        ),
    ];
    for (status, now, want) in cases {
        let got = match review::step(&at_review(spec(), status), now) {
            ReviewStep::Open { due: d } if d == due => "open",
            ReviewStep::WaitUntil(d) if d == due => "wait",
            ReviewStep::Close { due: d } if d == due => "close",
            ReviewStep::Closed { next: None } => "closed",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(got, want, "at {now}");
    }
}

#[test]
fn a_schedule_makes_the_next_review_one_period_after_the_due_time() {
    let mut quarterly = spec();
    quarterly.schedule = Some(ReviewSchedule {
        every: k8s_duration("2160h"),
    });
    let due = t0() + days(14);
    let first = at_review(quarterly.clone(), None);
    let next = review::next_review(&first, due).expect("scheduled");
    assert_eq!(next.metadata.name.as_deref(), Some("q1-202606141000"));
    assert_eq!(next.spec.due_at, Some(to_k8s(due + days(90))));
    assert_eq!(next.spec.selector, quarterly.selector);
    let series = next
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERIES_LABEL));
    assert_eq!(series.map(String::as_str), Some("q1"));
    // The one after keeps the series name, not a growing suffix.
    let third = review::next_review(&next, due + days(90)).expect("scheduled");
    assert_eq!(third.metadata.name.as_deref(), Some("q1-202609121000"));
    // Closed with a schedule: the step names the next review.
    let closed = decisions::close(&quarterly, &AccessReviewStatus::default(), due);
    match review::step(&at_review(quarterly, Some(closed)), due) {
        ReviewStep::Closed { next: Some(n) } => {
            assert_eq!(n.metadata.name.as_deref(), Some("q1-202606141000"))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(review::next_review(&first_without_schedule(), due).is_none());
}

fn first_without_schedule() -> AccessReview {
    at_review(spec(), None)
}

#[test]
fn evidence_carries_what_the_audit_record_says_of_the_grants() {
    let with_activity = |mut kept: Kept, requests: Option<i64>| {
        kept.2.activity = requests.map(|n| crate::api::Activity {
            source: crate::api::ActivitySource::AuditWebhook,
            requests: n,
            ..Default::default()
        });
        kept
    };
    let history = [
        with_activity(grant("alice", ROLE, t0() - days(10), 1, &["bob"]), Some(0)),
        with_activity(grant("alice", ROLE, t0() - days(5), 1, &["bob"]), Some(12)),
        // Before the audit record was configured: not counted either way.
        with_activity(grant("alice", ROLE, t0() - days(3), 1, &["bob"]), None),
    ];
    let status = filled(&[elig("pay", ROLE).users(&["alice"])], &history);
    let ev = &status.items[0].evidence;
    assert_eq!(ev.activations, 3);
    assert_eq!(
        ev.activity,
        Some(crate::api::ReviewedActivity {
            grants: 2,
            requests: 12,
            unused_grants: 1,
        })
    );
    // Without any audit record there is no activity evidence at all.
    let bare = filled(
        &[elig("pay", ROLE).users(&["alice"])],
        &[grant("alice", ROLE, t0() - days(3), 1, &[])],
    );
    assert_eq!(bare.items[0].evidence.activity, None);
}
