//! The AccessReview reconciler (open, progress, close, schedule) and how a closed review's
//! removal reaches the Eligibility reconciler and the request decisions.
use std::sync::Arc;

use kube::runtime::controller::Action;
use serde_json::json;

use crate::api::{
    AccessReview, AccessReviewSpec, AccessReviewStatus, ItemDecision, Phase, ReviewDecision,
    ReviewPhase, ReviewSchedule, ReviewSelector, Reviewers,
};
use crate::controller::fixtures::*;
use crate::controller::review::{RECHECK, reconcile};
use crate::policy::review_decisions::close;
use crate::time::to_k8s;

const REVIEW: &str = "q1";
const ELIG: &str = "db-people";

fn review(status: Option<AccessReviewStatus>, schedule: bool) -> AccessReview {
    let mut r = AccessReview::new(
        REVIEW,
        AccessReviewSpec {
            selector: ReviewSelector {
                roles: vec![ROLE.into()],
                ..Default::default()
            },
            reviewers: Reviewers {
                users: vec![BOB.into()],
                groups: vec![],
                subjects_approvers: false,
            },
            due_at: Some(to_k8s(now() + secs(3600))),
            duration: None,
            default_decision: ReviewDecision::Keep,
            lookback: "2160h".parse().expect("duration"),
            schedule: schedule.then(|| ReviewSchedule {
                every: "2160h".parse().expect("duration"),
            }),
        },
    );
    r.metadata.resource_version = Some("300".into());
    r.metadata.uid = Some("uid-q1".into());
    r.metadata.generation = Some(1);
    r.metadata.creation_timestamp = Some(to_k8s(now() - secs(60)));
    r.status = status;
    r
}

fn elig() -> crate::api::Eligibility {
    let mut e = eligibility(ELIG, ROLE).users(&[ALICE, "mallory"]);
    e.metadata.generation = Some(1);
    e.metadata.creation_timestamp = Some(to_k8s(now() - secs(200 * 86_400)));
    e
}

/// alice's grant ten minutes ago, for evidence.
fn caches() -> Caches {
    let active = activation_request("now").status_with(|s| {
        s.phase = Some(Phase::Active);
        s.activated_at = Some(to_k8s(now() - secs(600)));
        s.expires_at = Some(to_k8s(now() + secs(3000)));
    });
    Caches::new()
        .role(privileged_role(ROLE))
        .eligibility(elig())
        .request(active)
}

/// The review as filled by the reconciler (at `now`), with bob's decision to remove alice.
fn open_with_removal() -> AccessReview {
    let elig = elig();
    let fill = crate::policy::review::fill(&review(None, false).spec, &[&elig], &[], now());
    let status = AccessReviewStatus {
        phase: Some(ReviewPhase::Open),
        due_at: Some(to_k8s(now() + secs(3600))),
        items: fill.items,
        decisions: vec![ItemDecision {
            item: format!("{ELIG}/User/{ALICE}"),
            decision: ReviewDecision::Remove,
            reviewer: BOB.into(),
            groups: vec![],
            at: None,
            comment: None,
        }],
        ..Default::default()
    };
    review(Some(status), true)
}

#[tokio::test(start_paused = true)]
async fn opening_fills_the_items_in_one_conditional_write() {
    let r = review(None, false);
    let outcome = Scenario::new()
        .holding(&r)
        .then(
            expect::review_status_patched(REVIEW)
                .on_resource_version("300")
                .checking(|c| {
                    let status: AccessReviewStatus =
                        serde_json::from_value(c.body["status"].clone()).expect("a review status");
                    assert_eq!(status.phase, Some(ReviewPhase::Open));
                    let ids: Vec<&str> = status.items.iter().map(|i| i.id.as_str()).collect();
                    assert_eq!(
                        ids,
                        [format!("{ELIG}/User/alice"), format!("{ELIG}/User/mallory")]
                    );
                    assert_eq!(status.items[0].evidence.activations, 1);
                    assert_eq!(status.items[1].recommendation, ReviewDecision::Remove);
                    assert_eq!(status.item_count, Some(2));
                    assert_eq!(status.due_at, Some(to_k8s(now() + secs(3600))));
                    assert!(status.decisions.is_empty(), "the controller never decides");
                }),
        )
        .run(|client| reconcile(Arc::new(r.clone()), caches().context(client)))
        .await;
    let action = outcome.result.expect("the open succeeds");
    assert_eq!(
        action,
        Action::requeue(RECHECK + std::time::Duration::from_millis(200))
    );
    assert_eq!(outcome.server.writes(), 1);
    assert!(outcome.server.published("ReviewOpened"));
}

#[tokio::test(start_paused = true)]
async fn a_decision_arriving_meanwhile_makes_the_write_a_conflict() {
    let r = review(None, false);
    let outcome = Scenario::new()
        .holding(&r)
        .then(expect::review_status_patched(REVIEW).replies_conflict())
        .run(|client| reconcile(Arc::new(r.clone()), caches().context(client)))
        .await;
    let error = outcome.result.expect_err("a 409 is an error to retry");
    assert_eq!(error.api_code(), Some(409));
    assert!(
        !outcome.server.published("ReviewOpened"),
        "nothing recorded"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_review_before_its_due_time_only_counts_decisions() {
    let r = open_with_removal();
    let outcome = Scenario::new()
        .holding(&r)
        .then(
            expect::review_status_patched(REVIEW)
                .on_resource_version("300")
                .checking(|c| {
                    assert_eq!(c.body["status"]["decidedCount"], 1);
                    assert_eq!(c.body["status"]["phase"], "Open");
                }),
        )
        .run(|client| reconcile(Arc::new(r.clone()), caches().context(client)))
        .await;
    assert_eq!(
        outcome.result.expect("ok"),
        // An hour to go: looked at again within the backstop period.
        Action::requeue(RECHECK + std::time::Duration::from_millis(200))
    );
    // Counted already: nothing to write.
    let mut counted = r.clone();
    if let Some(s) = counted.status.as_mut() {
        s.item_count = Some(2);
        s.decided_count = Some(1);
    }
    let outcome = Scenario::silent()
        .run(|client| reconcile(Arc::new(counted.clone()), caches().context(client)))
        .await;
    outcome.result.expect("ok");
    assert_eq!(outcome.server.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn at_the_due_time_the_outcomes_are_recorded_and_the_review_closed() {
    let r = open_with_removal();
    let later = now() + secs(3600);
    let outcome = Scenario::new()
        .holding(&r)
        .then(
            expect::review_status_patched(REVIEW)
                .on_resource_version("300")
                .checking(move |c| {
                    let status: AccessReviewStatus =
                        serde_json::from_value(c.body["status"].clone()).expect("a review status");
                    assert_eq!(status.phase, Some(ReviewPhase::Closed));
                    assert_eq!(status.closed_at, Some(to_k8s(later)));
                    let outcomes: Vec<_> = status.items.iter().map(|i| i.outcome).collect();
                    assert_eq!(outcomes, [Some(ReviewDecision::Remove), Some(ReviewDecision::Keep)]);
                    assert!(
                        c.body["status"].get("decisions").is_none()
                            || c.body["status"]["decisions"] == json!([ {"item": format!("{ELIG}/User/alice"), "decision": "Remove", "reviewer": "bob"} ]),
                        "decisions unchanged: {:#}",
                        c.body["status"]["decisions"]
                    );
                }),
        )
        .run(|client| reconcile(Arc::new(r.clone()), caches().context_at(client, later)))
        .await;
    outcome.result.expect("the close succeeds");
    assert!(outcome.server.published("ReviewClosed"));
}

#[tokio::test(start_paused = true)]
async fn a_closed_scheduled_review_creates_the_next_once() {
    let open = open_with_removal();
    let due = now() + secs(3600);
    let mut closed = open.clone();
    closed.status = Some(close(
        &open.spec,
        open.status.as_ref().expect("status"),
        due,
    ));
    let outcome = Scenario::new()
        .holding(&closed)
        .then(expect::review_created().checking(move |c| {
            assert_eq!(
                c.body["metadata"]["name"],
                format!(
                    "{REVIEW}-{}",
                    (due + chrono::Duration::hours(2160)).format("%Y%m%d%H%M")
                )
            );
            assert_eq!(
                c.body["spec"]["dueAt"],
                json!(to_k8s(due + chrono::Duration::hours(2160)))
            );
            assert!(
                c.body.get("status").is_none_or(|s| s.is_null()),
                "created without a status"
            );
        }))
        .then(expect::review_status_patched(REVIEW).on_resource_version("300"))
        .run(|client| reconcile(Arc::new(closed.clone()), caches().context_at(client, due)))
        .await;
    assert_eq!(outcome.result.expect("ok"), Action::await_change());
    assert!(outcome.server.published("ReviewScheduled"));

    // Recorded: later passes write nothing.
    let recorded: AccessReview = outcome
        .server
        .objects
        .get(&format!("/apis/kubepim.io/v1alpha1/accessreviews/{REVIEW}"))
        .expect("the review");
    assert!(
        recorded
            .status
            .as_ref()
            .and_then(|s| s.next_review.as_ref())
            .is_some()
    );
    let outcome = Scenario::silent()
        .run(|client| reconcile(Arc::new(recorded.clone()), caches().context_at(client, due)))
        .await;
    assert_eq!(outcome.result.expect("ok"), Action::await_change());
}

#[tokio::test(start_paused = true)]
async fn a_removal_shows_on_the_eligibility_and_its_subject_is_no_longer_honoured() {
    let open = open_with_removal();
    let due = now() + secs(3600);
    let mut closed = open.clone();
    closed.status = Some(close(
        &open.spec,
        open.status.as_ref().expect("status"),
        due,
    ));
    let caches = caches().review(closed);
    let e = elig();
    let outcome = Scenario::new()
        .holding(&e)
        .then(expect::eligibility_status_patched(ELIG).checking(move |c| {
            let status = &c.body["status"];
            assert_eq!(
                status["removedByReview"],
                json!([{"subject": {"kind": "User", "name": "alice"}, "review": REVIEW, "at": to_k8s(due)}])
            );
            let condition = status["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "ReviewRemoved"))
                .cloned()
                .expect("a ReviewRemoved condition");
            assert_eq!((condition["status"].as_str(), condition["reason"].as_str()), (Some("True"), Some("SubjectsRemoved")));
        }))
        .run(|client| crate::controller::eligibility::reconcile(Arc::new(e.clone()), caches.context_at(client, due)))
        .await;
    outcome.result.expect("ok");

    // What every request decision reads: the Eligibility without alice.
    let ctx = caches.context_at(
        kube::Client::new(
            tower_test::mock::pair::<
                http::Request<kube::client::Body>,
                http::Response<kube::client::Body>,
            >()
            .0,
            "default",
        ),
        due,
    );
    let seen = ctx.eligibilities_for(ROLE);
    let names: Vec<&str> = seen[0]
        .spec
        .subjects
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["mallory"]);
    // Git edits something else: the removal holds. Git changes who is named: honoured again.
    let mut edited = elig();
    edited.metadata.generation = Some(2);
    assert_eq!(ctx.removals_for(&edited).len(), 1);
    let mut renamed = eligibility(ELIG, ROLE).users(&[ALICE, "mallory", "carol"]);
    renamed.metadata.generation = Some(2);
    assert!(ctx.removals_for(&renamed).is_empty());
}
