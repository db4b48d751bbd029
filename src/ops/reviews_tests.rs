use super::*;
use crate::api::{
    AccessReviewSpec, AccessReviewStatus, Evidence, ReviewSelector, Reviewers, SubjectRef,
};
use crate::time::to_k8s;
use chrono::{TimeZone, Utc};

fn item(subject: SubjectRef, recommendation: ReviewDecision) -> ReviewItem {
    ReviewItem {
        id: crate::policy::review::item_id("pay", &subject),
        eligibility: "pay".into(),
        eligibility_uid: "u".into(),
        eligibility_generation: 1,
        eligibility_subjects: None,
        role: "payments-admin".into(),
        subject,
        evidence: Evidence {
            activations: 2,
            last_used: Some(to_k8s(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap())),
            elevated_hours: 3.5,
            approvers: vec!["carol".into()],
            activity: None,
        },
        recommendation,
        recommendation_reason: "used 2 times in 90 days, last 1 days ago".into(),
        outcome: None,
    }
}

fn decision(item: &str, d: ReviewDecision, reviewer: &str) -> ItemDecision {
    ItemDecision {
        item: item.into(),
        decision: d,
        reviewer: reviewer.into(),
        groups: vec![],
        at: None,
        comment: Some("quarterly, ok".into()),
    }
}

fn review() -> AccessReview {
    let mut r = AccessReview::new(
        "q1",
        AccessReviewSpec {
            selector: ReviewSelector {
                all: true,
                ..Default::default()
            },
            reviewers: Reviewers {
                users: vec!["bob".into(), "alice".into()],
                groups: vec![],
                subjects_approvers: false,
            },
            due_at: Some(to_k8s(Utc.with_ymd_and_hms(2026, 3, 16, 10, 0, 0).unwrap())),
            duration: None,
            default_decision: ReviewDecision::Remove,
            lookback: "2160h".parse().unwrap(),
            schedule: None,
        },
    );
    r.status = Some(AccessReviewStatus {
        phase: Some(ReviewPhase::Open),
        items: vec![
            item(SubjectRef::user("alice"), ReviewDecision::Keep),
            item(SubjectRef::user("mallory"), ReviewDecision::Remove),
        ],
        decisions: vec![
            decision("pay/User/alice", ReviewDecision::Remove, "bob"),
            decision("pay/User/alice", ReviewDecision::Keep, "bob"),
        ],
        ..Default::default()
    });
    r
}

fn me(name: &str) -> Requester {
    Requester {
        username: name.into(),
        ..Default::default()
    }
}

#[test]
fn my_items_leave_out_my_own_access() {
    let r = review();
    let alice: Vec<&str> = my_items(&r, &me("alice"))
        .iter()
        .map(|i| i.item.id.as_str())
        .collect();
    assert_eq!(alice, ["pay/User/mallory"]);
    let bob = my_items(&r, &me("bob"));
    assert_eq!(bob.len(), 2);
    assert_eq!(
        bob[0].mine,
        Some(ReviewDecision::Keep),
        "the latest of bob's two"
    );
    assert_eq!(bob[0].latest, Some((ReviewDecision::Keep, "bob")));
    assert_eq!(bob[1].mine, None);
    assert!(my_items(&r, &me("mallory")).is_empty(), "not a reviewer");
}

#[test]
fn the_decision_entry_is_my_own_identity() {
    let mut alice = me("alice");
    alice.groups = vec!["payments-oncall".into(), "system:authenticated".into()];
    let entry = decision_entry(&alice, "pay/User/mallory", ReviewDecision::Remove, None);
    assert_eq!(entry.reviewer, "alice");
    assert_eq!(entry.groups, alice.groups);
}

#[test]
fn report_as_markdown() {
    let md = report(&review(), ReportFormat::Md);
    assert!(
        md.starts_with("# Access review q1\n\n- Phase: Open\n"),
        "{md}"
    );
    assert!(md.contains("- Undecided items: Remove\n"), "{md}");
    assert!(
        md.contains(
            "| pay | payments-admin | User alice | 2 | 2026-03-01T09:00:00Z | 3.5 | carol | no audit \
             record | Keep (used 2 times in 90 days, last 1 days ago) | bob Remove; bob Keep | Keep \
             (if closed now) |"
        ),
        "{md}"
    );
    assert!(md.contains("| User mallory |"), "{md}");
    assert!(
        md.contains("|  | Remove (if closed now) |"),
        "undecided takes the default: {md}"
    );
}

#[test]
fn report_as_csv_and_json() {
    let csv = report(&review(), ReportFormat::Csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "item,eligibility,role,subjectKind,subject,activations,lastUsed,elevatedHours,approvers,auditedRequests,unusedGrants,recommendation,outcome,decisions"
    );
    assert_eq!(
        lines[1],
        "pay/User/alice,pay,payments-admin,User,alice,2,2026-03-01T09:00:00Z,3.5,carol,,,Keep,Keep,bob Remove; bob Keep"
    );
    assert_eq!(lines.len(), 3);
    let json: Value = serde_json::from_str(&report(&review(), ReportFormat::Json)).unwrap();
    assert_eq!(json["review"], "q1");
    assert_eq!(json["items"][1]["outcome"], "Remove");
    assert_eq!(json["items"][0]["decisions"][1]["comment"], "quarterly, ok");
}

#[test]
fn csv_fields_are_quoted_when_needed() {
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("plain"), "plain");
}
