//! History retention: when an ended request is due for deletion, and what is exported first.
use chrono::{DateTime, Duration, Utc};

use super::builders::*;
use crate::api::{ActivationRequest, Phase};
use crate::policy::retention::{due, ended_at, export_record, is_due, kept_for_budgets};
use crate::policy::status::set_condition;
use crate::time::to_k8s;

const DAY: i64 = 24 * 60;

/// A request created at t0 that ended (its last condition transition) at `ended`, in `phase`.
fn ended(name: &str, phase: Phase, ended: DateTime<Utc>) -> ActivationRequest {
    let mut status = fresh().phase(phase);
    set_condition(
        &mut status.conditions,
        "Ready",
        false,
        "Ended",
        "",
        Some(1),
        at(1),
    );
    set_condition(
        &mut status.conditions,
        "Active",
        false,
        "Ended",
        "",
        Some(1),
        ended,
    );
    let mut request = ActivationRequest::new(name, request("payments-admin").by(&user("alice")));
    request.metadata.uid = Some(format!("uid-{name}"));
    request.metadata.creation_timestamp = Some(to_k8s(t0()));
    request.status = Some(status);
    request
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

#[test]
fn the_end_is_the_latest_condition_transition_of_a_terminal_request() {
    for phase in [
        Phase::Expired,
        Phase::Denied,
        Phase::Cancelled,
        Phase::Revoked,
        Phase::Failed,
    ] {
        assert_eq!(
            ended_at(&ended("r", phase, at(90))),
            Some(at(90)),
            "{phase:?}"
        );
    }
    for phase in [Phase::Pending, Phase::Scheduled, Phase::Active] {
        assert_eq!(ended_at(&ended("r", phase, at(90))), None, "{phase:?}");
    }
    // No conditions (written before they existed): expiresAt, else the creation.
    let mut bare = ended("r", Phase::Expired, at(90));
    bare.status.as_mut().unwrap().conditions.clear();
    assert_eq!(ended_at(&bare), Some(t0()));
    bare.status.as_mut().unwrap().expires_at = Some(to_k8s(at(65)));
    assert_eq!(ended_at(&bare), Some(at(65)));
    // No status at all: never ended.
    let mut unjudged = bare.clone();
    unjudged.status = None;
    assert_eq!(ended_at(&unjudged), None);
}

#[test]
fn due_exactly_when_the_retention_has_passed_since_the_end() {
    let r = ended("r", Phase::Expired, at(90));
    let retention = days(90);
    assert!(!is_due(
        &r,
        retention,
        at(90) + retention - Duration::seconds(1)
    ));
    assert!(is_due(&r, retention, at(90) + retention));
    assert!(is_due(&r, retention, at(90) + days(365)));
    // Active or pending requests are never due, however old.
    let active = ended("a", Phase::Active, at(90));
    assert!(!is_due(&active, retention, at(90) + days(365)));
    // Already being deleted: someone else's deletion.
    let mut deleting = r.clone();
    deleting.metadata.deletion_timestamp = Some(to_k8s(at(100)));
    assert!(!is_due(&deleting, retention, at(90) + days(365)));
}

#[test]
fn due_lists_the_oldest_first_and_at_most_the_limit() {
    let requests = [
        ended("newest", Phase::Denied, at(3 * DAY)),
        ended("kept", Phase::Expired, at(80 * DAY)),
        ended("oldest", Phase::Cancelled, at(DAY)),
        ended("middle", Phase::Expired, at(2 * DAY)),
        ended("active", Phase::Active, at(0)),
    ];
    let now = at(95 * DAY);
    let names = |limit| -> Vec<String> {
        due(&requests, |_| days(90), now, limit)
            .into_iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(names(10), ["oldest", "middle", "newest"]);
    assert_eq!(names(2), ["oldest", "middle"]);
    assert!(names(0).is_empty());
}

#[test]
fn the_export_is_the_whole_record_without_what_the_object_says_about_itself() {
    let mut r = ended("r1", Phase::Expired, at(90));
    r.metadata.labels = Some([("team".to_string(), "forged".to_string())].into());
    r.status.as_mut().unwrap().approvals = vec![approved_by("bob")];
    let record = export_record(&r, at(90));
    assert_eq!(record["name"], "r1");
    assert_eq!(record["uid"], "uid-r1");
    assert_eq!(record["endedAt"], at(90).to_rfc3339());
    assert_eq!(record["spec"]["role"], "payments-admin");
    assert_eq!(record["spec"]["requester"]["username"], "alice");
    assert_eq!(record["status"]["phase"], "Expired");
    assert_eq!(record["status"]["approvals"][0]["approver"], "bob");
    assert_eq!(
        record["status"]["conditions"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(record.get("labels").is_none() && record.get("metadata").is_none());
}

#[test]
fn the_grant_end_recorded_in_status_wins_over_later_bookkeeping() {
    let mut r = ended("r", Phase::Cancelled, at(90));
    r.status.as_mut().unwrap().ended_at = Some(to_k8s(at(95)));
    assert_eq!(ended_at(&r), Some(at(95)));
    // A later condition transition (a foothold report after the end) is later still: kept too.
    r.status.as_mut().unwrap().ended_at = Some(to_k8s(at(80)));
    assert_eq!(ended_at(&r), Some(at(90)));
}

#[test]
fn history_a_budget_window_still_counts_is_kept_beyond_the_retention() {
    let open = role("payments-admin");
    let budgeted = role("payments-admin").budget("8h", "4800h"); // 200 days
    let plain = eligibility("alice", "payments-admin");
    let tighter = eligibility("alice", "payments-admin").budget("2h", "6000h"); // 250 days
    assert_eq!(kept_for_budgets(Some(&open), &[&plain]), Duration::zero());
    assert_eq!(kept_for_budgets(None, &[]), Duration::zero());
    assert_eq!(kept_for_budgets(Some(&budgeted), &[&plain]), days(200));
    assert_eq!(
        kept_for_budgets(Some(&budgeted), &[&plain, &tighter]),
        days(250)
    );

    // 91 days after its end: due under a 90-day retention, kept while a 200-day budget needs it.
    let requests = [ended("r", Phase::Expired, at(0))];
    let now = at(91 * DAY);
    assert_eq!(due(&requests, |_| days(90), now, 10).len(), 1);
    let with_budget = |_: &ActivationRequest| days(90).max(days(200));
    assert!(due(&requests, with_budget, now, 10).is_empty());
    assert_eq!(due(&requests, with_budget, at(201 * DAY), 10).len(), 1);
}
