//! End-to-end: extending an active grant (`spec.extends`) against a real API server, as alice
//! (requester) and bob (approver), with the operator in-process.
//!
//! The hand-over is watched the way the API server decides: a SubjectAccessReview for alice is
//! polled every ~20 ms from before the extension is approved until after the original ended; it
//! must never say no in between, and must say no once the extended expiry has passed.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_extend`
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kube::ResourceExt;
use kubepim::api::{Phase, SubjectRef};
use kubepim::policy::reasons;
use kubepim::runtime::OperatorSettings;
use kubepim::time::from_k8s;
use support::Env;
use support::fixtures::{self, approve, can, submit};
use support::invariants::assert_i1;
use support::wait::{self, describe};

fn settings() -> OperatorSettings {
    OperatorSettings {
        concurrency: 4,
        ..OperatorSettings::default()
    }
}

fn reason_of(ar: &kubepim::api::ActivationRequest) -> Option<String> {
    ar.status.as_ref().and_then(|s| s.reason.clone())
}

/// Alice may activate a pod-reader role in `ns`, approved by bob.
async fn role_for_alice(env: &Env, ns: &str) -> String {
    let pr = fixtures::with_approvers(fixtures::pod_reader(env, "pods", &[ns]), 1, &["bob"], &[]);
    let name = pr.name_any();
    fixtures::create_role(env, &pr).await;
    let el = fixtures::eligibility(env, "alice", &name, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(env, &el).await;
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_hands_over_without_a_gap_and_ends_on_time() {
    let Some(env) = Env::isolated("extend").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, &ns).await;

    let first = fixtures::request(&env, "first", "alice", &role, &[&ns], "8s");
    let first = submit(&env, "alice", &first).await.name_any();
    approve(&env, "bob", &first).await;
    let active = wait::phase(&env, &first, Phase::Active).await;
    let first_expires = from_k8s(
        active
            .status
            .as_ref()
            .and_then(|s| s.expires_at.as_ref())
            .expect("expiresAt"),
    );
    assert!(can(&env, "alice", "list", "pods", Some(&ns)).await);

    // The watcher: a SubjectAccessReview as alice every ~20 ms.
    let denied_while_watching = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (env_denied, env_polls, env_watching) = (
            denied_while_watching.clone(),
            polls.clone(),
            watching.clone(),
        );
        let admin = env.admin();
        let ns = ns.clone();
        tokio::spawn(async move {
            while env_watching.load(Ordering::SeqCst) {
                if !support::fixtures::can_with(&admin, "alice", "list", "pods", Some(&ns)).await {
                    env_denied.fetch_add(1, Ordering::SeqCst);
                }
                env_polls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut second = fixtures::request(&env, "second", "alice", &role, &[&ns], "6s");
    second.spec.extends = Some(first.clone());
    let second = submit(&env, "alice", &second).await.name_any();
    let pending = wait::phase(&env, &second, Phase::Pending).await;
    assert_eq!(
        reason_of(&pending).as_deref(),
        Some(reasons::AWAITING_APPROVAL),
        "{}",
        describe(&pending)
    );
    approve(&env, "bob", &second).await;
    let extended = wait::phase(&env, &second, Phase::Active).await;
    let status = extended.status.clone().expect("status");
    let expires = from_k8s(status.expires_at.as_ref().expect("expiresAt"));
    assert_eq!(
        expires,
        first_expires + chrono::Duration::seconds(6),
        "the extension runs on from the original's expiry"
    );
    assert_eq!(
        status.continuous_since,
        active.status.as_ref().and_then(|s| s.activated_at.clone()),
        "continuousSince is the first grant's start"
    );

    let ended = wait::phase(&env, &first, Phase::Expired).await;
    assert_eq!(
        reason_of(&ended).as_deref(),
        Some(reasons::EXTENDED),
        "{}",
        describe(&ended)
    );
    assert!(
        fixtures::role_bindings_of(&env, &first).await.is_empty(),
        "the original's bindings go once it has handed over"
    );
    assert_i1(&env).await;
    // Past the original's own expiry, still authorised through the extension.
    let until = first_expires + chrono::Duration::milliseconds(1500);
    while chrono::Utc::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watching.store(false, Ordering::SeqCst);
    watcher.await.expect("the watcher");
    let (denied, polled) = (
        denied_while_watching.load(Ordering::SeqCst),
        polls.load(Ordering::SeqCst),
    );
    eprintln!("hand-over watched by {polled} SubjectAccessReviews, {denied} said no");
    assert!(polled > 20, "the watcher ran ({polled} polls)");
    assert_eq!(
        denied, 0,
        "alice was without access {denied} times during the hand-over"
    );

    // And never beyond the extended expiry.
    wait::phase(&env, &second, Phase::Expired).await;
    assert!(!can(&env, "alice", "list", "pods", Some(&ns)).await);
    assert!(
        chrono::Utc::now() >= expires,
        "revoked before the extended expiry"
    );
    assert_i1(&env).await;
    env.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_of_an_ended_grant_or_of_someone_else_is_refused() {
    let Some(env) = Env::isolated("extend-refused").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, &ns).await;
    let el = fixtures::eligibility(&env, "mallory", &role, vec![SubjectRef::user("mallory")]);
    fixtures::create_eligibility(&env, &el).await;

    let first = fixtures::request(&env, "first", "alice", &role, &[&ns], "3s");
    let first = submit(&env, "alice", &first).await.name_any();
    approve(&env, "bob", &first).await;
    wait::phase(&env, &first, Phase::Active).await;

    // Mallory names alice's grant: refused at once, whoever approves.
    let mut theirs = fixtures::request(&env, "theirs", "mallory", &role, &[&ns], "1h");
    theirs.spec.extends = Some(first.clone());
    let theirs = submit(&env, "mallory", &theirs).await.name_any();
    let refused = wait::phase(&env, &theirs, Phase::Denied).await;
    assert_eq!(
        reason_of(&refused).as_deref(),
        Some(reasons::EXTENSION_NOT_ALLOWED),
        "{}",
        describe(&refused)
    );

    // Alice's extension waits for bob; the original runs out first: nothing left to extend.
    let mut late = fixtures::request(&env, "late", "alice", &role, &[&ns], "1h");
    late.spec.extends = Some(first.clone());
    let late = submit(&env, "alice", &late).await.name_any();
    wait::phase(&env, &late, Phase::Pending).await;
    wait::phase(&env, &first, Phase::Expired).await;
    let refused = wait::phase(&env, &late, Phase::Denied).await;
    assert_eq!(
        reason_of(&refused).as_deref(),
        Some(reasons::NOTHING_TO_EXTEND),
        "{}",
        describe(&refused)
    );
    assert!(!can(&env, "alice", "list", "pods", Some(&ns)).await);
    assert_i1(&env).await;
    env.stop_operator().await;
}
