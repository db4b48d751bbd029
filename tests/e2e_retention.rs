//! End-to-end: history retention on a real API server. Ended requests are deleted once kept for
//! the retention (after their export line); active and pending ones stay, however old.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_retention`
mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kubepim::api::{ActivationRequest, Phase, SubjectRef};
use kubepim::controller::retention::RetentionSettings;
use kubepim::runtime::OperatorSettings;
use support::Env;
use support::fixtures::{self, submit};
use support::wait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_requests_go_after_the_retention_and_running_ones_stay() {
    let Some(env) = Env::isolated("retention").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(OperatorSettings {
        concurrency: 4,
        retention: RetentionSettings {
            keep_for: Some(Duration::from_secs(3)),
            interval: Duration::from_secs(1),
        },
        ..OperatorSettings::default()
    });
    let open = fixtures::pod_reader(&env, "open", &[&ns]);
    let open = fixtures::create_role(&env, &open).await.name_any();
    let gated = fixtures::with_approvers(
        fixtures::pod_reader(&env, "gated", &[&ns]),
        1,
        &["bob"],
        &[],
    );
    let gated = fixtures::create_role(&env, &gated).await.name_any();
    for (base, role) in [("alice-open", &open), ("alice-gated", &gated)] {
        let el = fixtures::eligibility(&env, base, role, vec![SubjectRef::user("alice")]);
        fixtures::create_eligibility(&env, &el).await;
    }

    let short = fixtures::request(&env, "short", "alice", &open, &[&ns], "2s");
    let short = submit(&env, "alice", &short).await.name_any();
    let long = fixtures::request(&env, "long", "alice", &open, &[&ns], "10m");
    let long = submit(&env, "alice", &long).await.name_any();
    let pending = fixtures::request(&env, "pending", "alice", &gated, &[&ns], "10m");
    let pending = submit(&env, "alice", &pending).await.name_any();
    wait::phase(&env, &long, Phase::Active).await;
    wait::phase(&env, &pending, Phase::Pending).await;
    let expired = wait::phase(&env, &short, Phase::Expired).await;
    let ended_at = std::time::Instant::now();

    let api: Api<ActivationRequest> = Api::all(env.admin());
    // Kept for the retention first: not gone a second after it ended.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        api.get_opt(&short).await.expect("get").is_some(),
        "deleted before its retention: {}",
        wait::describe(&expired)
    );
    wait::until(
        &env,
        "the expired request deleted",
        wait::TIMEOUT,
        || async {
            match api.get_opt(&short).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        },
    )
    .await;
    let after = ended_at.elapsed();
    // Conditions carry whole seconds: due between 2 and 3 s after the end this test observed.
    assert!(
        after >= Duration::from_millis(1500),
        "deleted {after:?} after it ended (retention 3 s)"
    );

    // Running and waiting requests are never history: a few more passes leave them alone.
    wait::stays(&env, &long, Some(Phase::Active), Duration::from_secs(4)).await;
    wait::stays(&env, &pending, Some(Phase::Pending), Duration::from_secs(1)).await;
}
