//! The Eligibility reconciler, and which Eligibilities a request change refreshes.
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::api::conditions::ACTIVE;
use crate::api::{Eligibility, Phase};
use crate::controller::eligibility::{affected_by, of_role, reconcile};
use crate::controller::fixtures::*;
use crate::policy::reasons;
use crate::time::to_k8s;

const ELIG: &str = "alice-db";

/// alice's eligibility for `db-admin`; her requests: one expired two hours ago, one active since
/// ten minutes, one still pending; bob's activation of the same role (not hers, not counted).
fn cluster() -> (Eligibility, Caches) {
    let elig = eligibility(ELIG, ROLE).users(&[ALICE]);
    let expired = activation_request("earlier")
        .active_until(now() - secs(2 * 3600))
        .in_phase(Phase::Expired);
    let active = activation_request("now").status_with(|s| {
        s.phase = Some(Phase::Active);
        s.activated_at = Some(to_k8s(now() - secs(600)));
        s.expires_at = Some(to_k8s(now() + secs(3000)));
    });
    let pending = activation_request("waiting").in_phase(Phase::Pending);
    let bobs = activation_request("bobs")
        .with(|r| {
            if let Some(requester) = r.spec.requester.as_mut() {
                requester.username = BOB.into();
            }
        })
        .active_until(now() + secs(600));
    let caches = Caches::new()
        .role(privileged_role(ROLE))
        .eligibility(elig.clone())
        .request(expired)
        .request(active)
        .request(pending)
        .request(bobs);
    (elig, caches)
}

#[tokio::test(start_paused = true)]
async fn activations_are_counted_once_and_a_settled_pass_writes_nothing() {
    let (elig, caches) = cluster();
    let outcome = Scenario::new()
        .holding(&elig)
        .then(expect::eligibility_status_patched(ELIG).checking(|c| {
            let status = &c.body["status"];
            assert_eq!(status["activations"], 2, "{status:#}");
            assert_eq!(
                status["lastActivatedAt"],
                serde_json::json!(to_k8s(now() - secs(600)))
            );
            let active = status["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|x| x["type"] == ACTIVE))
                .cloned()
                .unwrap_or_else(|| panic!("no Active condition: {status:#}"));
            assert_eq!(active["status"], "True");
            assert_eq!(active["reason"], reasons::WITHIN_WINDOW);
        }))
        .run(|client| reconcile(Arc::new(elig.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("the eligibility reconcile succeeds");
    assert_eq!(
        action,
        Action::requeue(crate::controller::eligibility::RECHECK)
    );
    assert_eq!(outcome.server.writes(), 1);

    // The next pass (a re-check, or a request event) on what the server now holds, a minute
    // later: nothing changed, nothing is written.
    let observed: Eligibility = outcome
        .server
        .objects
        .get(&format!("/apis/kubepim.io/v1alpha1/eligibilities/{ELIG}"))
        .expect("the server holds the eligibility");
    let again = Scenario::silent()
        .run(|client| {
            reconcile(
                Arc::new(observed),
                caches.context_at(client, now() + secs(60)),
            )
        })
        .await;
    again.result.expect("the eligibility reconcile succeeds");
    assert_eq!(
        again.server.writes(),
        0,
        "a settled eligibility is not written again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_activation_is_written_on_the_pass_it_triggers() {
    let (elig, caches) = cluster();
    // As the previous pass left it: one activation, the expired one.
    let mut written = elig.clone();
    written.status = Some(crate::api::EligibilityStatus {
        activations: 1,
        last_activated_at: Some(to_k8s(now() - secs(3 * 3600))),
        ..Default::default()
    });
    let outcome = Scenario::new()
        .holding(&written)
        .then(
            expect::eligibility_status_patched(ELIG)
                .checking(|c| assert_eq!(c.body["status"]["activations"], 2)),
        )
        .run(|client| reconcile(Arc::new(written.clone()), caches.context(client)))
        .await;
    outcome.result.expect("the eligibility reconcile succeeds");
    assert_eq!(outcome.server.writes(), 1);
}

#[test]
fn a_request_refreshes_the_eligibilities_it_counts_for_once_activated() {
    let alices = Arc::new(eligibility(ELIG, ROLE).users(&[ALICE]));
    let bobs = Arc::new(eligibility("bob-db", ROLE).users(&[BOB]));
    let other_role = Arc::new(eligibility("alice-other", "other").users(&[ALICE]));
    let all = [alices, bobs, other_role];

    let pending = activation_request("r").in_phase(Phase::Pending);
    assert_eq!(affected_by(&all, &pending), vec![], "nothing counts it yet");

    let active = activation_request("r").active_until(now() + secs(600));
    assert_eq!(
        affected_by(&all, &active),
        vec![ObjectRef::<Eligibility>::new(ELIG)]
    );
    // Ended, it is still counted: its events still refresh (and a refresh that changes nothing
    // writes nothing).
    let expired = active.in_phase(Phase::Expired);
    assert_eq!(
        affected_by(&all, &expired),
        vec![ObjectRef::<Eligibility>::new(ELIG)]
    );
}

#[test]
fn a_privileged_role_change_refreshes_every_eligibility_that_names_it() {
    let alices = Arc::new(eligibility(ELIG, ROLE).users(&[ALICE]));
    let bobs = Arc::new(eligibility("bob-db", ROLE).users(&[BOB]));
    let other_role = Arc::new(eligibility("alice-other", "other").users(&[ALICE]));
    let all = [alices, bobs, other_role];
    assert_eq!(
        of_role(&all, ROLE),
        vec![
            ObjectRef::<Eligibility>::new(ELIG),
            ObjectRef::<Eligibility>::new("bob-db")
        ]
    );
    assert_eq!(of_role(&all, "unnamed"), vec![]);
}
