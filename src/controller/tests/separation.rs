//! The separation-of-duties pass: findings written to the roles they concern, announced once,
//! and a second pass over the same history writes nothing.
use crate::api::{Decision, PrivilegedRole};
use crate::controller::fixtures::*;
use crate::controller::separation::{EVENT_REASON, PassOutcome, pass};
use crate::policy::separation::Thresholds;
use crate::policy::tests::builders::{self, RequestExt};

/// alice's request approved by bob, and bob's approved by alice.
fn reciprocal() -> Caches {
    let by_alice = activation_request("a1").approved_by(BOB);
    let by_bob = activation_request("b1")
        .with(|r| {
            r.spec = builders::request(ROLE)
                .namespaces(&[NAMESPACE])
                .by(&builders::user(BOB));
        })
        .decided(ALICE, &[], Decision::Approved, None);
    Caches::with_alice_eligible_for(privileged_role(ROLE))
        .role(privileged_role("unrelated"))
        .request(by_alice)
        .request(by_bob)
}

#[tokio::test(start_paused = true)]
async fn a_reciprocal_approval_is_written_to_its_role_and_announced_once() {
    let caches = reciprocal();
    let role: PrivilegedRole = privileged_role(ROLE);
    let outcome = Scenario::new()
        .holding(&role)
        .then(expect::privileged_role_status_patched(ROLE).checking(|c| {
            let findings = &c.body["status"]["separationFindings"];
            assert_eq!(findings[0]["kind"], "ReciprocalApproval", "{findings:#}");
            assert_eq!(findings[0]["people"], serde_json::json!(["alice", "bob"]));
            // Only this field: the role reconciler's conditions are left alone.
            assert_eq!(c.body["status"].as_object().map(|o| o.len()), Some(1));
        }))
        .run(|client| async move { pass(&caches.context(client), &Thresholds::default()).await })
        .await;
    let done = outcome.result.expect("the pass succeeds");
    assert_eq!(
        done,
        PassOutcome {
            findings: 1,
            statuses_written: 1,
            events: 1
        }
    );
    assert!(outcome.server.published(EVENT_REASON));
}

#[tokio::test(start_paused = true)]
async fn a_finding_the_role_already_shows_is_neither_written_nor_announced_again() {
    // As after a restart: the role's status holds the finding from the last pass.
    let shown = crate::api::SeparationFinding {
        kind: "ReciprocalApproval".into(),
        people: vec![ALICE.into(), BOB.into()],
        message: "alice and bob approve each other's requests: alice approved 1 of bob's, bob 1 of alice's".into(),
    };
    let mut role = privileged_role(ROLE);
    role.status = Some(crate::api::PrivilegedRoleStatus {
        separation_findings: Some(vec![shown]),
        ..Default::default()
    });
    let caches = reciprocal().role(role.clone());
    let outcome = Scenario::new()
        .holding(&role)
        .run(|client| async move { pass(&caches.context(client), &Thresholds::default()).await })
        .await;
    let done = outcome.result.expect("the pass succeeds");
    assert_eq!((done.statuses_written, done.events), (0, 0));
    assert_eq!(outcome.server.writes(), 0);
}
