//! History retention against the scripted API server: export, then a delete conditional on the
//! exported version; nothing else is written, and only what is due goes.
use std::time::Duration;

use chrono::DateTime;
use chrono::Utc;

use crate::api::{ActivationRequest, Phase};
use crate::controller::fixtures::*;
use crate::controller::retention::prune;
use crate::policy::status::set_condition;

const NINETY_DAYS: Duration = Duration::from_secs(90 * 24 * 3600);

/// A request that reached `phase` at `ended` (its last condition transition).
fn ended(name: &str, phase: Phase, ended: DateTime<Utc>) -> ActivationRequest {
    activation_request(name)
        .approved_by(BOB)
        .status_with(|s| {
            s.phase = Some(phase);
            set_condition(
                &mut s.conditions,
                "Active",
                false,
                "Ended",
                "",
                Some(1),
                ended,
            );
        })
        .created_at(ended - secs(3600))
}

#[tokio::test(start_paused = true)]
async fn only_ended_requests_past_the_retention_are_exported_and_deleted() {
    let old = ended("r-old", Phase::Expired, now() - secs(91 * 86400));
    let recent = ended("r-recent", Phase::Denied, now() - secs(86400));
    let active = ended("r-active", Phase::Active, now() - secs(200 * 86400));
    let caches = Caches::new()
        .request(old.clone())
        .request(recent.clone())
        .request(active.clone());
    let outcome = Scenario::new()
        .holding(&old)
        .holding(&recent)
        .holding(&active)
        .then(expect::request_deleted("r-old", "uid-r-old", "100"))
        .run(|client| async move { prune(&caches.context(client), NINETY_DAYS).await })
        .await;
    assert_eq!(outcome.result.expect("the pass succeeds"), 1);
    assert_eq!(outcome.server.writes(), 1);
    let objects = &outcome.server.objects;
    assert!(!objects.has_request("r-old"));
    assert!(objects.has_request("r-recent") && objects.has_request("r-active"));
}

/// The cached version is what was exported: a request changed since (the server holds a newer
/// version) is not deleted on the strength of the older export; the next pass exports it again.
#[tokio::test(start_paused = true)]
async fn a_request_changed_since_its_export_is_kept() {
    let cached = ended("r-old", Phase::Expired, now() - secs(91 * 86400));
    let mut newer = cached.clone();
    newer.metadata.resource_version = Some("101".into());
    let caches = Caches::new().request(cached);
    let outcome = Scenario::new()
        .holding(&newer)
        .then(expect::request_deleted("r-old", "uid-r-old", "100"))
        .run(|client| async move { prune(&caches.context(client), NINETY_DAYS).await })
        .await;
    assert_eq!(outcome.result.expect("a conflict is not an error"), 0);
    assert!(outcome.server.objects.has_request("r-old"));
}

/// One failing delete does not stop the pass; the error is returned after it.
#[tokio::test(start_paused = true)]
async fn a_failed_deletion_keeps_the_request_and_the_pass_goes_on() {
    let first = ended("r-1", Phase::Expired, now() - secs(92 * 86400));
    let second = ended("r-2", Phase::Cancelled, now() - secs(91 * 86400));
    let caches = Caches::new().request(first.clone()).request(second.clone());
    let outcome = Scenario::new()
        .holding(&first)
        .holding(&second)
        .then(expect::request_deleted("r-1", "uid-r-1", "100").replies_unavailable())
        .then(expect::request_deleted("r-2", "uid-r-2", "100"))
        .run(|client| async move { prune(&caches.context(client), NINETY_DAYS).await })
        .await;
    assert!(outcome.result.is_err(), "the pass reports the failure");
    let objects = &outcome.server.objects;
    assert!(objects.has_request("r-1") && !objects.has_request("r-2"));
}

/// A privilege budget counts the grants in its window: history inside it stays, whatever the
/// retention says (here a 200-day window on the role, a 90-day retention).
#[tokio::test(start_paused = true)]
async fn history_a_budget_still_counts_is_not_deleted() {
    let old = ended("r-old", Phase::Expired, now() - secs(91 * 86400));
    let caches = Caches::new()
        .role(privileged_role(ROLE).budget("8h", "4800h"))
        .request(old.clone());
    let outcome = Scenario::new()
        .holding(&old)
        .run(|client| async move { prune(&caches.context(client), NINETY_DAYS).await })
        .await;
    assert_eq!(outcome.result.expect("the pass succeeds"), 0);
    assert_eq!(outcome.server.writes(), 0);
    assert!(outcome.server.objects.has_request("r-old"));
}
