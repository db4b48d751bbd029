//! End-to-end: separation of duties read from the history on a real API server. Alice and bob,
//! both eligible for a role and both its approvers, approve each other's requests; the analysis
//! reports the pair on the PrivilegedRole's status and with one Warning Event. A role whose
//! requests were approved by a third person shows nothing (the positive control).
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_separation`
mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kubepim::api::{Phase, PrivilegedRole, SubjectRef};
use kubepim::controller::separation::{EVENT_REASON, SeparationSettings};
use kubepim::runtime::OperatorSettings;
use support::Env;
use support::fixtures::{self, approve, submit, with_approvers};
use support::wait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_each_other_is_reported_once_on_the_role() {
    let Some(env) = Env::isolated("separation").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(OperatorSettings {
        concurrency: 4,
        separation: SeparationSettings {
            interval: Some(Duration::from_secs(2)),
            ..SeparationSettings::default()
        },
        ..OperatorSettings::default()
    });
    let people = vec![SubjectRef::user("alice"), SubjectRef::user("bob")];
    let pair = fixtures::create_role(
        &env,
        &with_approvers(
            fixtures::pod_reader(&env, "pair", &[&ns]),
            1,
            &["alice", "bob", "carol"],
            &[],
        ),
    )
    .await
    .name_any();
    let control = fixtures::create_role(
        &env,
        &with_approvers(
            fixtures::pod_reader(&env, "control", &[&ns]),
            1,
            &["carol"],
            &[],
        ),
    )
    .await
    .name_any();
    for role in [&pair, &control] {
        fixtures::create_eligibility(
            &env,
            &fixtures::eligibility(&env, role, role, people.clone()),
        )
        .await;
    }

    // alice ↔ bob on `pair`; carol approves both on `control`.
    for (requester, approver, role, base) in [
        ("alice", "bob", &pair, "a-pair"),
        ("bob", "alice", &pair, "b-pair"),
        ("alice", "carol", &control, "a-control"),
        ("bob", "carol", &control, "b-control"),
    ] {
        let name = submit(
            &env,
            requester,
            &fixtures::request(&env, base, requester, role, &[&ns], "1m"),
        )
        .await
        .name_any();
        wait::phase(&env, &name, Phase::Pending).await;
        approve(&env, approver, &name).await;
        wait::phase(&env, &name, Phase::Active).await;
    }

    let roles: Api<PrivilegedRole> = Api::all(env.admin());
    let findings = wait::until(
        &env,
        "a separation finding on the role",
        wait::TIMEOUT,
        || async {
            let role = roles.get(&pair).await.map_err(|e| e.to_string())?;
            role.status
                .and_then(|s| s.separation_findings)
                .filter(|f| !f.is_empty())
                .ok_or_else(|| "none yet".to_string())
        },
    )
    .await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].kind, "ReciprocalApproval");
    assert_eq!(findings[0].people, ["alice", "bob"]);
    assert!(
        findings[0]
            .message
            .contains("alice and bob approve each other's requests"),
        "{}",
        findings[0].message
    );

    // The control role: carol approved both, nobody approved carol; no finding.
    let clean = roles.get(&control).await.expect("the control role");
    assert!(
        clean
            .status
            .and_then(|s| s.separation_findings)
            .unwrap_or_default()
            .is_empty()
    );

    // Announced once: a few more passes publish no second Event.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let events: Api<Event> = Api::all(env.admin());
    let announced: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(EVENT_REASON)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pair.as_str())
        })
        .collect();
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert_eq!(announced[0].type_.as_deref(), Some("Warning"));
    assert!(
        announced[0].deprecated_count.unwrap_or(1) <= 1,
        "{announced:#?}"
    );
    env.stop_operator().await;
}
