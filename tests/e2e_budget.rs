//! End-to-end: a privilege budget on a real API server. Alice's first grant uses most of the
//! role's budget; her next request, which would take her past it, is Denied with the usage in the
//! message; a request that still fits is granted.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_budget`
mod support;

use kube::ResourceExt;
use kubepim::api::{Budget, Phase, SubjectRef};
use kubepim::policy::reasons;
use kubepim::runtime::OperatorSettings;
use support::Env;
use support::fixtures::{self, dur, submit};
use support::wait::{self, describe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_budget_is_denied_with_the_usage() {
    let Some(env) = Env::isolated("budget").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(OperatorSettings {
        concurrency: 4,
        ..OperatorSettings::default()
    });
    let mut pr = fixtures::pod_reader(&env, "pods", &[&ns]);
    pr.spec.budget = Some(Budget {
        max_elevated: dur("10s"),
        per: dur("1h"),
    });
    let role = fixtures::create_role(&env, &pr).await.name_any();
    let el = fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;

    // 6 s of the 10 s budget, used in full.
    let first = fixtures::request(&env, "first", "alice", &role, &[&ns], "6s");
    let first = submit(&env, "alice", &first).await.name_any();
    wait::phase(&env, &first, Phase::Active).await;
    wait::phase(&env, &first, Phase::Expired).await;

    // 6 s more would be 12 s: refused, saying how much was used.
    let over = fixtures::request(&env, "over", "alice", &role, &[&ns], "6s");
    let over = submit(&env, "alice", &over).await.name_any();
    let denied = wait::phase(&env, &over, Phase::Denied).await;
    let status = denied.status.clone().expect("status");
    assert_eq!(
        status.reason.as_deref(),
        Some(reasons::BUDGET_EXCEEDED),
        "{}",
        describe(&denied)
    );
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("alice used")
            && message.contains("of 10s")
            && message.contains("asks for 6s"),
        "{message}"
    );
    assert!(fixtures::role_bindings_of(&env, &over).await.is_empty());

    // What still fits is granted.
    let fits = fixtures::request(&env, "fits", "alice", &role, &[&ns], "3s");
    let fits = submit(&env, "alice", &fits).await.name_any();
    wait::phase(&env, &fits, Phase::Active).await;
}
