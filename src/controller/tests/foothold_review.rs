//! The foothold review of an ended grant, off the revocation path: one scan, one conditional
//! status write with the verdict, nothing for a request that is not pending.
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;

use crate::api::conditions::FOOTHOLDS_FOUND;
use crate::api::{ActivationRequest, ActivationRequestStatus, Phase};
use crate::controller::fixtures::*;
use crate::controller::foothold_review::{Attempt, review_one, review_one_sharing};
use crate::controller::footholds::RecentScans;
use crate::policy::footholds::mark_pending;
use crate::policy::reasons;
use crate::time::{to_k8s, truncate_to_second};

fn footholds_condition(status: &ActivationRequestStatus) -> (String, String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == FOOTHOLDS_FOUND)
        .unwrap_or_else(|| panic!("no {FOOTHOLDS_FOUND} condition in {status:#?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// Alice's grant, which expired a second ago and was revoked: its review is pending.
fn ended_grant() -> ActivationRequest {
    let until = truncate_to_second(now()) - secs(1);
    activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until)
        .status_with(|s| {
            s.phase = Some(Phase::Expired);
            s.ended_at = Some(to_k8s(until));
            mark_pending(s, Some(1), until);
        })
}

/// A RoleBinding to `edit` for alice, made `minutes_ago`.
fn binding_for_alice(name: &str, minutes_ago: i64) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(to_k8s(now() - secs(60 * minutes_ago))),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "edit".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: ALICE.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }]),
    }
}

#[tokio::test(start_paused = true)]
async fn a_clean_grant_is_reviewed_in_one_write() {
    let request = ended_grant();
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).request(request.clone());
    let outcome = Scenario::new()
        .holding(&request)
        .then_all(expect::foothold_scan(NAMESPACE))
        .then(
            expect::status_patched("r1")
                .on_resource_version("100")
                .with_status(|s, _| {
                    assert_eq!(s.phase, Some(Phase::Expired), "the phase stays");
                    let (status, reason, _) = footholds_condition(&s);
                    assert_eq!(
                        (status.as_str(), reason.as_str()),
                        ("False", reasons::NO_FOOTHOLDS_FOUND)
                    );
                }),
        )
        .run(|client| async move { review_one(&caches.context(client), "r1").await })
        .await;
    assert_eq!(outcome.result, Attempt::Done);
    assert_eq!(outcome.server.writes(), 1);
    assert!(!outcome.server.published(reasons::FOOTHOLDS_FOUND));
}

#[tokio::test(start_paused = true)]
async fn a_binding_made_during_the_grant_is_reported_and_one_made_before_is_not() {
    let request = ended_grant();
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).request(request.clone());
    // The grant ran for the hour before its expiry a second ago.
    let during = binding_for_alice("edit-for-alice", 10);
    let before = binding_for_alice("older", 120);
    let outcome = Scenario::new()
        .holding(&request)
        .then_all(expect::foothold_scan_finding(NAMESPACE, &[during, before]))
        .then(expect::status_patched("r1").with_status(|s, _| {
            let (status, reason, message) = footholds_condition(&s);
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("True", reasons::FOOTHOLDS_FOUND)
            );
            assert!(
                message.contains("RoleBinding payments/edit-for-alice (binds the requester)"),
                "{message}"
            );
            assert!(!message.contains("older"), "{message}");
        }))
        .run(|client| async move { review_one(&caches.context(client), "r1").await })
        .await;
    assert_eq!(outcome.result, Attempt::Done);
    assert_eq!(outcome.server.writes(), 1);
    assert!(outcome.server.published(reasons::FOOTHOLDS_FOUND));
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_write_is_looked_at_again_and_nothing_is_recorded() {
    let request = ended_grant();
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).request(request.clone());
    let outcome = Scenario::new()
        .holding(&request)
        .then_all(expect::foothold_scan_finding(
            NAMESPACE,
            &[binding_for_alice("edit-for-alice", 10)],
        ))
        .then(expect::status_patched("r1").replies_conflict())
        .run(|client| async move { review_one(&caches.context(client), "r1").await })
        .await;
    assert_eq!(outcome.result, Attempt::Again);
    assert!(!outcome.server.published(reasons::FOOTHOLDS_FOUND));
}

#[tokio::test(start_paused = true)]
async fn a_failed_scan_is_retried_not_written() {
    let request = ended_grant();
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).request(request.clone());
    let mut scan = expect::foothold_scan(NAMESPACE);
    let failing = scan.remove(0).replies_unavailable();
    scan.insert(0, failing);
    let outcome = Scenario::new()
        .holding(&request)
        .then_all(scan)
        .run(|client| async move { review_one(&caches.context(client), "r1").await })
        .await;
    assert!(
        matches!(outcome.result, Attempt::Failed(_)),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.server.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_read_or_written_for_a_request_already_reviewed() {
    let request = ended_grant().status_with(|s| {
        s.conditions.retain(|c| c.type_ != FOOTHOLDS_FOUND);
    });
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).request(request.clone());
    let outcome = Scenario::new()
        .holding(&request)
        .run(|client| async move { review_one(&caches.context(client), "r1").await })
        .await;
    assert_eq!(outcome.result, Attempt::Done);
    assert!(outcome.server.calls.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_worker_picks_up_a_review_pending_in_the_cache_at_start() {
    // A leader that took over after the revocation (or after a restart) finds the review pending
    // in the request itself.
    let request = ended_grant();
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).request(request.clone());
    let outcome = Scenario::new()
        .holding(&request)
        .then_all(expect::foothold_scan(NAMESPACE))
        .then(expect::status_patched("r1"))
        .run(|client| async move {
            let worker = crate::controller::foothold_review::run(
                caches.context(client),
                futures::stream::pending(),
            );
            tokio::time::timeout(std::time::Duration::from_secs(30), worker).await
        })
        .await;
    assert!(
        outcome.result.is_err(),
        "the worker runs until its stream ends"
    );
    assert_eq!(outcome.server.writes(), 1);
}

#[tokio::test(start_paused = true)]
async fn kinds_the_operator_may_not_list_are_named_in_the_verdict() {
    // The chart grants Secrets and Pods only with footholds.scanSecretsAndPods.
    let request = ended_grant();
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).request(request.clone());
    let outcome = Scenario::new()
        .holding(&request)
        .then_all(expect::foothold_scan_of(
            NAMESPACE,
            &[],
            &["secrets", "pods"],
        ))
        .then(expect::status_patched("r1").with_status(|s, _| {
            let (status, reason, message) = footholds_condition(&s);
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", reasons::NO_FOOTHOLDS_FOUND)
            );
            assert!(
                message.ends_with("not scanned (the operator may not list them): secrets, pods"),
                "{message}"
            );
        }))
        .run(|client| async move { review_one(&caches.context(client), "r1").await })
        .await;
    assert_eq!(outcome.result, Attempt::Done);
}

/// Grants of one scope that ended before a scan began share it: an expiry herd lists each kind
/// once, not once per grant, while its revocations still run.
#[tokio::test(start_paused = true)]
async fn grants_of_one_scope_ended_before_a_scan_share_it() {
    let first = ended_grant();
    let mut second = ended_grant();
    second.metadata.name = Some("r2".into());
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE))
        .request(first.clone())
        .request(second.clone());
    let outcome = Scenario::new()
        .holding(&first)
        .holding(&second)
        .then_all(expect::foothold_scan_finding(
            NAMESPACE,
            &[binding_for_alice("edit-for-alice", 10)],
        ))
        .then(expect::status_patched("r1"))
        // No list calls for the second: only its verdict, which names the same binding.
        .then(expect::status_patched("r2").with_status(|s, _| {
            let (status, _, message) = footholds_condition(&s);
            assert_eq!(status, "True");
            assert!(message.contains("edit-for-alice"), "{message}");
        }))
        .run(|client| async move {
            let ctx = caches.context(client);
            let recent = RecentScans::default();
            (
                review_one_sharing(&ctx, "r1", &recent).await,
                review_one_sharing(&ctx, "r2", &recent).await,
            )
        })
        .await;
    assert_eq!(outcome.result, (Attempt::Done, Attempt::Done));
    assert_eq!(outcome.server.writes(), 2);
}

/// A grant that began before the scan's horizon, or ended after the scan began, gets a scan of
/// its own.
#[tokio::test(start_paused = true)]
async fn a_scan_that_cannot_have_seen_a_grant_s_whole_window_is_not_shared() {
    let first = ended_grant();
    // Began two hours before the first (the first scan kept only what was made since its start).
    let mut longer = ended_grant().status_with(|s| {
        let began = s
            .activated_at
            .as_ref()
            .map(crate::time::from_k8s)
            .expect("activatedAt");
        s.activated_at = Some(to_k8s(began - secs(7200)));
    });
    longer.metadata.name = Some("r2".into());
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE))
        .request(first.clone())
        .request(longer.clone());
    let outcome = Scenario::new()
        .holding(&first)
        .holding(&longer)
        .then_all(expect::foothold_scan(NAMESPACE))
        .then(expect::status_patched("r1"))
        .then_all(expect::foothold_scan(NAMESPACE))
        .then(expect::status_patched("r2"))
        .run(|client| async move {
            let ctx = caches.context(client);
            let recent = RecentScans::default();
            (
                review_one_sharing(&ctx, "r1", &recent).await,
                review_one_sharing(&ctx, "r2", &recent).await,
            )
        })
        .await;
    assert_eq!(outcome.result, (Attempt::Done, Attempt::Done));
}
