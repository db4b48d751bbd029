//! The activity record against a scripted API server: the aggregator's writes, an idle grant's
//! end, and the final flush in a grant's last status write.
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::api::conditions::USED;
use crate::api::{ActivationRequest, Phase};
use crate::controller::fixtures::*;
use crate::controller::request::reconcile;
use crate::ingest::Aggregator;
use crate::policy::activity::{AuditEvent, parse_batch};
use crate::policy::reasons;
use crate::time::{Clock, truncate_to_second};

fn batch(events: &[(&str, &str, &str, chrono::DateTime<chrono::Utc>)]) -> Vec<AuditEvent> {
    let items: Vec<_> = events
        .iter()
        .map(|(user, verb, resource, at)| {
            json!({
                "auditID": "0b2c", "stage": "ResponseComplete", "verb": verb,
                "user": {"username": user},
                "objectRef": {"resource": resource, "namespace": NAMESPACE, "name": "web"},
                "responseStatus": {"code": 200},
                "requestReceivedTimestamp": at.to_rfc3339(),
            })
        })
        .collect();
    let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items});
    parse_batch(&serde_json::to_vec(&body).unwrap()).unwrap()
}

fn aggregator(caches: &Caches) -> Arc<Aggregator> {
    Aggregator::new(
        caches.requests_store(),
        Arc::default(),
        Duration::from_secs(2),
        16,
        Clock::fixed(now()),
    )
}

/// alice's grant, Active since an hour ago until in an hour.
fn running_grant() -> (ActivationRequest, Caches) {
    let until = truncate_to_second(now()) + secs(1800);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let binding = granted_role_binding(&request, until);
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE))
        .request(request.clone())
        .role_binding(binding);
    (request, caches)
}

#[tokio::test(start_paused = true)]
async fn events_of_the_requester_in_the_window_are_counted_and_written_once() {
    let (request, caches) = running_grant();
    let agg = aggregator(&caches);
    let counts = agg.ingest(&batch(&[
        ("alice", "list", "pods", now() - secs(5)),
        ("alice", "create", "secrets", now() - secs(4)),
        // Before the grant: not its use.
        ("alice", "list", "pods", now() - secs(7200)),
        // Someone else.
        ("bob", "list", "pods", now() - secs(5)),
    ]));
    assert_eq!((counts.attributed, counts.unattributed), (2, 2));
    assert_eq!(agg.drain(), 2);
    assert_eq!(agg.pending_requests("r1"), 2);

    let outcome = Scenario::new()
        .holding(&request)
        .then(
            expect::status_patched("r1")
                .on_resource_version("100")
                .with_status(|s, body| {
                    let a = s.activity.expect("status.activity");
                    assert_eq!(a.requests, 2);
                    assert_eq!(a.counts["list pods"], 1);
                    assert_eq!(a.namespaces, [NAMESPACE]);
                    assert_eq!(a.notable_writes.len(), 1);
                    assert_eq!(a.notable_writes[0].resource, "secrets");
                    // Only the activity: nothing else of the status is touched.
                    assert_eq!(body["status"].as_object().unwrap().len(), 1, "{body:#}");
                }),
        )
        .run(|client| {
            let agg = agg.clone();
            async move { agg.flush(&client).await }
        })
        .await;
    assert_eq!(outcome.server.writes(), 1);
    assert_eq!(agg.pending_requests("r1"), 0);

    // Nothing new: not a single call.
    Scenario::silent()
        .run(|client| {
            let agg = agg.clone();
            async move { agg.flush(&client).await }
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_keeps_the_counts_for_the_next_flush() {
    let (request, caches) = running_grant();
    let agg = aggregator(&caches);
    agg.ingest(&batch(&[("alice", "get", "pods", now() - secs(1))]));
    agg.drain();
    // The server no longer holds the request at this version: 409 (or 404), nothing written.
    let mut newer = request.clone();
    newer.metadata.resource_version = Some("101".into());
    let outcome = Scenario::new()
        .holding(&newer)
        .then(expect::status_patched("r1").on_resource_version("100"))
        .run(|client| {
            let agg = agg.clone();
            async move { agg.flush(&client).await }
        })
        .await;
    assert_eq!(outcome.server.writes(), 1);
    assert_eq!(agg.pending_requests("r1"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_grant_unused_for_the_idle_timeout_ends_idle_and_never_used() {
    let until = truncate_to_second(now()) + secs(1800);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let binding = granted_role_binding(&request, until);
    let role = privileged_role(ROLE).idle_timeout("30m");
    let caches = Caches::with_alice_eligible_for(role)
        .request(request.clone())
        .role_binding(binding.clone());
    let agg = aggregator(&caches);
    let outcome = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(
            expect::status_patched("r1")
                .on_resource_version("100")
                .with_status(|s, _| {
                    assert_eq!(s.phase, Some(Phase::Expired));
                    assert_eq!(s.reason.as_deref(), Some(reasons::IDLE));
                    let used = s.conditions.iter().find(|c| c.type_ == USED).unwrap();
                    assert_eq!(
                        (used.status.as_str(), used.reason.as_str()),
                        ("False", reasons::NEVER_USED)
                    );
                }),
        )
        .run(|client| {
            reconcile(
                Arc::new(request.clone()),
                caches.context_with_activity(client, now(), agg.clone()),
            )
        })
        .await;
    outcome.result.expect("the idle grant ends");
    assert_eq!(outcome.server.writes(), 2);
    assert!(
        outcome.server.published(reasons::NEVER_USED),
        "{:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_record_an_unused_grant_is_kept() {
    let until = truncate_to_second(now()) + secs(1800);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let binding = granted_role_binding(&request, until);
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).idle_timeout("30m"))
        .request(request.clone())
        .role_binding(binding.clone());
    // (The fixture's status lacks the conditions the controller writes: it adds them, and
    // nothing else happens: no binding deleted, still Active.)
    let outcome = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Active));
            assert_ne!(s.reason.as_deref(), Some(reasons::IDLE));
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("kept");
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_write_of_a_grant_carries_what_was_not_yet_written() {
    let until = truncate_to_second(now()) - secs(1);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let binding = granted_role_binding(&request, until);
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE))
        .request(request.clone())
        .role_binding(binding.clone());
    let agg = aggregator(&caches);
    agg.ingest(&batch(&[("alice", "list", "pods", until - secs(60))]));
    agg.drain();
    let outcome = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(
            expect::status_patched("r1")
                .on_resource_version("100")
                .with_status(|s, _| {
                    assert_eq!(s.phase, Some(Phase::Expired));
                    assert_eq!(s.activity.map(|a| a.requests), Some(1));
                    let used = s.conditions.iter().find(|c| c.type_ == USED).unwrap();
                    assert_eq!(
                        (used.status.as_str(), used.reason.as_str()),
                        ("True", reasons::USED)
                    );
                }),
        )
        .run(|client| {
            reconcile(
                Arc::new(request.clone()),
                caches.context_with_activity(client, now(), agg.clone()),
            )
        })
        .await;
    outcome.result.expect("the grant ends");
    assert_eq!(
        outcome.server.writes(),
        2,
        "the activity rides on the revocation's status write"
    );
    assert_eq!(agg.pending_requests("r1"), 0);
}
