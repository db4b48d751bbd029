//! The ActivationRequest reconciler, call by call.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::ResourceExt;

use crate::api::conditions::{APPROVED, DENIED, READY};
use crate::api::{ActivationRequest, ActivationRequestStatus, Decision, FINALIZER, Phase, labels};
use crate::controller::Error;
use crate::controller::fixtures::*;
use crate::controller::request::{STALE_REQUEUE, reconcile};
use crate::policy::reasons;
use crate::time::{from_k8s, truncate_to_second};
use kube::runtime::controller::Action;

const ACTIVATION_BUDGET: usize = 3;
const REVOCATION_BUDGET: usize = 2;

fn condition<'a>(status: &'a ActivationRequestStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#?}"));
    (c.status.as_str(), c.reason.as_str())
}

fn expires_at(status: &ActivationRequestStatus) -> DateTime<Utc> {
    from_k8s(status.expires_at.as_ref().expect("status.expiresAt"))
}

fn annotation(binding: &RoleBinding, key: &str) -> String {
    binding
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_else(|| panic!("binding without annotation {key}"))
}

/// The reconcile asks to run again exactly `after` from now (the context's clock stands still).
fn assert_requeued_after(action: &Action, after: chrono::Duration) {
    let after = after.to_std().expect("a positive delay");
    assert_eq!(*action, Action::requeue(after));
}

/// The RoleBinding a grant for alice must be: kubepim's labels and annotations, exactly one
/// subject (the requester), the role's ClusterRole.
fn assert_grant_for_alice(rb: &RoleBinding, request: &str) {
    let labels_ = rb.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels_.get(labels::MANAGED_BY).map(String::as_str),
        Some("kubepim")
    );
    assert_eq!(
        labels_.get(labels::REQUEST).map(String::as_str),
        Some(request)
    );
    assert_eq!(
        rb.metadata.name.as_deref(),
        Some(format!("kubepim-{request}").as_str())
    );
    assert_eq!(rb.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        annotation(rb, labels::REQUEST_UID),
        format!("uid-{request}")
    );
    let subjects = rb.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "exactly one subject: {subjects:?}");
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("User", ALICE)
    );
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("ClusterRole", ROLE)
    );
    assert_eq!(rb.role_ref.api_group, "rbac.authorization.k8s.io");
    let owners = rb.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners
            .iter()
            .all(|o| o.block_owner_deletion != Some(true) && o.uid == format!("uid-{request}")),
        "owner references are a backstop only: {owners:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn auto_approved_request_is_activated_in_three_writes() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let request = activation_request("r1");
    let before = truncate_to_second(now());

    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::finalizer_added("r1"))
        .then(
            expect::role_binding_created(NAMESPACE)
                .with_body(|rb: RoleBinding| assert_grant_for_alice(&rb, "r1")),
        )
        .then(
            // The version the finalizer patch returned: ours, on top of what was decided on.
            expect::status_patched("r1")
                .on_resource_version("1001")
                .with_status(|s, _| {
                    assert_eq!(s.phase, Some(Phase::Active));
                    assert!(s.activated_at.is_some());
                    assert_eq!(
                        condition(&s, APPROVED),
                        ("True", reasons::APPROVAL_NOT_REQUIRED)
                    );
                    assert_eq!(condition(&s, READY), ("True", reasons::ACTIVATED));
                }),
        )
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;

    let action = outcome.result.expect("activation succeeds");
    assert!(
        outcome.server.writes() <= ACTIVATION_BUDGET,
        "{} writes",
        outcome.server.writes()
    );
    assert_eq!(outcome.server.writes(), 3);

    let stored = outcome.server.objects.request("r1");
    assert_eq!(stored.finalizers(), [FINALIZER]);
    let status = stored.status.expect("a status");
    let until = expires_at(&status);
    assert!(until >= before + secs(3600) && until <= truncate_to_second(now()) + secs(3600));
    let binding = outcome.server.objects.role_binding(NAMESPACE, "kubepim-r1");
    assert_eq!(
        annotation(&binding, labels::EXPIRES_AT),
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "the binding carries the expiry recorded in status"
    );
    assert_requeued_after(&action, until - now());
    assert!(
        outcome.server.published("Activated"),
        "{:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn pending_request_waits_and_a_second_look_writes_nothing() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));
    let request = activation_request("r1");
    let created = from_k8s(request.metadata.creation_timestamp.as_ref().unwrap());

    let outcome = Scenario::new()
        .holding(&request)
        .then(
            expect::status_patched("r1")
                .on_resource_version("100")
                .with_status(|s, _| {
                    assert_eq!(s.phase, Some(Phase::Pending));
                    assert_eq!(s.reason.as_deref(), Some(reasons::AWAITING_APPROVAL));
                    assert_eq!(
                        condition(&s, APPROVED),
                        ("False", reasons::AWAITING_APPROVAL)
                    );
                    assert!(s.expires_at.is_none() && s.bindings.is_empty());
                }),
        )
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("waiting succeeds");
    assert_eq!(outcome.server.writes(), 1);
    let deadline = truncate_to_second(created + secs(24 * 3600));
    assert_requeued_after(&action, deadline - now());

    // The watch delivers what was written; deciding again on it changes nothing.
    let observed = outcome.server.objects.request("r1");
    let again = Scenario::silent()
        .run(|client| reconcile(Arc::new(observed), caches.context(client)))
        .await;
    let action = again.result.expect("a no-op reconcile succeeds");
    assert_eq!(again.server.writes(), 0);
    assert!(again.server.calls.is_empty() && again.server.events.is_empty());
    assert_requeued_after(&action, deadline - now());
}

#[tokio::test(start_paused = true)]
async fn approval_by_an_authorised_approver_activates() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));
    let request = activation_request("r1")
        .in_phase(Phase::Pending)
        .approved_by(BOB);

    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::finalizer_added("r1"))
        .then(
            expect::role_binding_created(NAMESPACE)
                .with_body(|rb: RoleBinding| assert_grant_for_alice(&rb, "r1")),
        )
        .then(expect::status_patched("r1").with_status(|s, raw| {
            assert!(
                raw["status"].get("approvals").is_none(),
                "approvals are the approvers' field: {raw:#}"
            );
            assert_eq!(s.phase, Some(Phase::Active));
            assert_eq!(condition(&s, APPROVED), ("True", reasons::APPROVED));
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("activation succeeds");
    assert_eq!(outcome.server.writes(), 3);
    let stored = outcome.server.objects.request("r1").status.unwrap();
    assert_eq!(stored.approvals.len(), 1, "bob's approval is kept");
    assert_eq!(stored.approvals[0].approver, BOB);
    assert!(
        outcome.server.published("Approved"),
        "{:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn self_approval_and_service_account_approval_do_not_count() {
    let robot = "system:serviceaccount:kube-system:robot";
    let caches =
        Caches::with_alice_eligible_for(privileged_role(ROLE).approvers(&[BOB, ALICE, robot], &[]));
    let request = activation_request("r1")
        .in_phase(Phase::Pending)
        .approved_by(ALICE)
        .approved_by(robot);

    // No finalizer, no binding: only the status says why it still waits.
    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Pending));
            let message = s.message.unwrap_or_default();
            assert!(message.contains("alice (own request)"), "{message}");
            assert!(message.contains("(ServiceAccount)"), "{message}");
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("waiting succeeds");
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
}

/// An active grant past its expiry, with its binding in the cache.
fn expired_grant() -> (ActivationRequest, RoleBinding, Caches) {
    let until = truncate_to_second(now()) - secs(1);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let binding = granted_role_binding(&request, until);
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE))
        .request(request.clone())
        .role_binding(binding.clone());
    (request, binding, caches)
}

#[tokio::test(start_paused = true)]
async fn expired_grant_is_revoked_in_two_writes() {
    let (request, binding, caches) = expired_grant();
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
                    assert_eq!(s.reason.as_deref(), Some(reasons::DURATION_ELAPSED));
                    assert_eq!(condition(&s, READY).0, "False");
                    // The foothold review follows the revocation; it is not part of it.
                    assert_eq!(
                        condition(&s, crate::api::conditions::FOOTHOLDS_FOUND),
                        ("Unknown", reasons::FOOTHOLD_REVIEW_PENDING)
                    );
                }),
        )
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("revocation succeeds");
    assert!(
        outcome.server.writes() <= REVOCATION_BUDGET,
        "{} writes",
        outcome.server.writes()
    );
    assert_eq!(outcome.server.writes(), 2);
    assert_eq!(
        action,
        Action::await_change(),
        "terminal: nothing to wake up for"
    );
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
    assert!(
        outcome.server.published("Expired"),
        "{:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn binding_already_gone_counts_as_revoked() {
    let (request, _, caches) = expired_grant();
    let outcome = Scenario::new()
        .holding(&request)
        .then(
            expect::role_binding_deleted(NAMESPACE, "kubepim-r1", "uid-rb-r1").replies_not_found(),
        )
        .then(
            expect::status_patched("r1")
                .with_status(|s, _| assert_eq!(s.phase, Some(Phase::Expired))),
        )
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("404 on DELETE is success");
    assert_eq!(outcome.server.writes(), 2);
}

#[tokio::test(start_paused = true)]
async fn conflict_on_the_status_patch_requeues_shortly_without_error() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));
    let request = activation_request("r1");
    let outcome = Scenario::new()
        .then(expect::status_patched("r1").replies_conflict())
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("a conflict is not an error");
    assert_eq!(
        action,
        Action::requeue(STALE_REQUEUE),
        "looks again at once"
    );
    assert!(
        outcome.server.events.is_empty(),
        "no transition was recorded: {:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn unavailable_api_during_revocation_fails_the_reconcile_and_the_retry_revokes() {
    let (request, binding, caches) = expired_grant();
    let first = Scenario::new()
        .holding(&binding)
        .then(
            expect::role_binding_deleted(NAMESPACE, "kubepim-r1", "uid-rb-r1")
                .replies_unavailable(),
        )
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    match first.result {
        Err(Error::Kube {
            source: kube::Error::Api(status),
            ..
        }) => assert_eq!(status.code, 503),
        other => {
            panic!("expected the 503 as an error (the error policy retries in 2 s), got {other:?}")
        }
    }
    assert_eq!(
        first.server.writes(),
        1,
        "nothing is recorded before the binding is gone"
    );

    let retry = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(
            expect::status_patched("r1")
                .with_status(|s, _| assert_eq!(s.phase, Some(Phase::Expired))),
        )
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    retry.result.expect("the retry revokes");
    assert!(
        !retry
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
}

#[tokio::test(start_paused = true)]
async fn hanging_delete_times_out_within_five_seconds() {
    let (request, _, caches) = expired_grant();
    let outcome = Scenario::new()
        .then(expect::role_binding_deleted(NAMESPACE, "kubepim-r1", "uid-rb-r1").hangs())
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    assert!(
        matches!(outcome.result, Err(Error::Timeout { .. })),
        "expected a timeout, got {:?}",
        outcome.result
    );
    assert!(
        outcome.server.elapsed >= Duration::from_secs(5)
            && outcome.server.elapsed < Duration::from_secs(6),
        "gave up after {:?}",
        outcome.server.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn crash_between_binding_and_status_only_writes_the_status_with_the_bindings_expiry() {
    // The binding was created with an expiry 30 minutes out; the status write was lost.
    let fixed = truncate_to_second(now()) + secs(1800);
    let request = activation_request("r1")
        .finalized()
        .in_phase(Phase::Pending)
        .approved_by(BOB);
    let binding = granted_role_binding(&request, fixed);
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE)).role_binding(binding);

    let outcome = Scenario::new()
        .holding(&request)
        .then(
            expect::status_patched("r1")
                .on_resource_version("100")
                .with_status(move |s, _| {
                    assert_eq!(s.phase, Some(Phase::Active));
                    assert_eq!(
                        expires_at(&s),
                        fixed,
                        "expiresAt is the one fixed on the binding"
                    );
                }),
        )
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("completing the activation succeeds");
    assert_eq!(
        outcome.server.writes(),
        1,
        "no second binding, no finalizer patch"
    );
    assert_requeued_after(&action, fixed - now());
}

/// A create whose answer was lost (a timeout) while the API server made the binding anyway: the
/// retry, deciding afresh, meets our own binding annotated with the first attempt's earlier
/// expiry. Recording the retry's later expiry would promise access the binding does not give (the
/// grant would end early and expiresAt move back), so nothing is recorded until the cache shows the
/// binding; then the expiry fixed on it is the one recorded.
#[tokio::test(start_paused = true)]
async fn create_meeting_our_unobserved_binding_records_only_the_expiry_fixed_on_it() {
    let first_attempt = truncate_to_second(now()) + secs(1800 - 7);
    let request = activation_request("r1")
        .finalized()
        .in_phase(Phase::Pending)
        .approved_by(BOB);
    let binding = granted_role_binding(&request, first_attempt);

    let retry = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::role_binding_read(NAMESPACE, "kubepim-r1"))
        .run(|client| {
            let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));
            reconcile(Arc::new(request.clone()), caches.context(client))
        })
        .await;
    let action = retry
        .result
        .expect("meeting our own binding is not an error");
    assert_eq!(action, Action::requeue(STALE_REQUEUE));
    assert_eq!(
        retry.server.writes(),
        1,
        "the create only: no status written"
    );
    assert_eq!(
        annotation(
            &retry.server.objects.role_binding(NAMESPACE, "kubepim-r1"),
            labels::EXPIRES_AT
        ),
        annotation(&binding, labels::EXPIRES_AT),
        "the binding keeps the first attempt's expiry"
    );

    // The watch delivers the binding: the activation is recorded with its expiry, nothing else.
    let seen = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::status_patched("r1").with_status(move |s, _| {
            assert_eq!(s.phase, Some(Phase::Active));
            assert_eq!(expires_at(&s), first_attempt);
        }))
        .run(|client| {
            let caches = Caches::with_alice_eligible_for(privileged_role(ROLE))
                .role_binding(binding.clone());
            reconcile(Arc::new(request.clone()), caches.context(client))
        })
        .await;
    let action = seen.result.expect("recording the activation succeeds");
    assert_eq!(seen.server.writes(), 1);
    assert_requeued_after(&action, first_attempt - now());
}

#[tokio::test(start_paused = true)]
async fn restart_with_an_overdue_grant_revokes_at_once_even_before_the_cache_has_the_binding() {
    let until = truncate_to_second(now()) - secs(600);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let binding = granted_role_binding(&request, until);
    // Just restarted: the binding cache is still empty, the status names the binding.
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));

    let outcome = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_read(NAMESPACE, "kubepim-r1"))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Expired));
            assert_eq!(s.reason.as_deref(), Some(reasons::DURATION_ELAPSED));
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("revocation succeeds");
    assert_eq!(outcome.server.writes(), 2);
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
}

#[tokio::test(start_paused = true)]
async fn deleting_an_active_request_revokes_then_releases_the_finalizer() {
    let until = truncate_to_second(now()) + secs(1800);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until)
        .being_deleted();
    let binding = granted_role_binding(&request, until);
    let caches =
        Caches::with_alice_eligible_for(privileged_role(ROLE)).role_binding(binding.clone());

    let outcome = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(expect::finalizer_removed("r1"))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("finalizing succeeds");
    assert_eq!(outcome.server.writes(), 2);
    assert!(outcome.server.objects.request("r1").finalizers().is_empty());
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
    assert!(
        outcome.server.published("Revoked"),
        "{:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn denial_after_activation_revokes_at_once() {
    let until = truncate_to_second(now()) + secs(1800);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until)
        .denied_by(CAROL, "not during the freeze");
    let binding = granted_role_binding(&request, until);
    let caches =
        Caches::with_alice_eligible_for(privileged_role(ROLE).approvers(&[BOB, CAROL], &[]))
            .role_binding(binding.clone());

    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Denied));
            assert_eq!(s.reason.as_deref(), Some(reasons::DENIED_BY_APPROVER));
            assert_eq!(condition(&s, DENIED), ("True", reasons::DENIED_BY_APPROVER));
            assert!(
                s.message
                    .unwrap_or_default()
                    .contains("not during the freeze")
            );
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("revocation succeeds");
    assert_eq!(outcome.server.writes(), 2);
    let stored = outcome.server.objects.request("r1").status.unwrap();
    assert_eq!(stored.approvals.len(), 2, "both decisions are kept");
    assert_eq!(stored.approvals[1].decision, Decision::Denied);
}

#[tokio::test(start_paused = true)]
async fn request_without_requester_fails_without_a_binding() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let request = activation_request("r1").without_requester();
    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Failed));
            assert_eq!(s.reason.as_deref(), Some(reasons::MISSING_REQUESTER));
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("failing the request succeeds");
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        outcome.server.published("Failed"),
        "{:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn steady_active_grant_writes_nothing() {
    // Activate once, then reconcile what the watch would deliver: the request and its binding.
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let request = activation_request("r1");
    let activation = Scenario::new()
        .holding(&request)
        .then(expect::finalizer_added("r1"))
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::status_patched("r1"))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    activation.result.expect("activation succeeds");
    let observed = activation.server.objects.request("r1");
    let until = expires_at(observed.status.as_ref().unwrap());
    let caches = caches.request(observed.clone()).role_binding(
        activation
            .server
            .objects
            .role_binding(NAMESPACE, "kubepim-r1"),
    );

    let again = Scenario::silent()
        .run(|client| reconcile(Arc::new(observed), caches.context(client)))
        .await;
    let action = again.result.expect("a no-op reconcile succeeds");
    assert_eq!(again.server.writes(), 0);
    assert!(again.server.calls.is_empty() && again.server.events.is_empty());
    assert_requeued_after(&action, until - now());
}

#[tokio::test(start_paused = true)]
async fn a_decision_added_while_activating_is_never_overwritten() {
    // The cache still shows the request as created (rv 100); on the server bob has since denied
    // it (rv 101). bob is an authorised approver, so his denial denies even without a quorum.
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let cached = activation_request("r1");
    let on_server = activation_request("r1")
        .resource_version("101")
        .denied_by(BOB, "not now");

    // The first write is conditional on what was decided on, so it fails; nothing is granted.
    let outcome = Scenario::new()
        .holding(&on_server)
        .then(expect::finalizer_added("r1"))
        .run(|client| reconcile(Arc::new(cached.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("a stale observation is not an error");
    assert_eq!(
        action,
        Action::requeue(STALE_REQUEUE),
        "looks again at once"
    );
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
    let approvals = outcome
        .server
        .objects
        .request("r1")
        .status
        .unwrap()
        .approvals;
    assert_eq!(approvals.len(), 1, "bob's denial is still there");
    assert_eq!(approvals[0].decision, Decision::Denied);
}

#[tokio::test(start_paused = true)]
async fn a_binding_for_a_pending_request_is_removed() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));
    let request = activation_request("r1");
    let pending = Scenario::new()
        .holding(&request)
        .then(expect::status_patched("r1"))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    pending.result.expect("waiting succeeds");
    let observed = pending.server.objects.request("r1");

    // A binding labelled and annotated for this request appears (forged, or left from a grant
    // that never was): nothing is granted while a request is Pending.
    let binding = granted_role_binding(&observed, truncate_to_second(now()) + secs(3600));
    let caches = caches.role_binding(binding.clone());
    let outcome = Scenario::new()
        .holding(&binding)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .run(|client| reconcile(Arc::new(observed), caches.context(client)))
        .await;
    outcome.result.expect("the reconcile succeeds");
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1")
    );
}

#[tokio::test(start_paused = true)]
async fn cluster_wide_grant_is_one_cluster_role_binding() {
    let role = privileged_role(ROLE).no_approval_required().cluster_wide();
    let caches = Caches::with_alice_eligible_for(role);
    let request = activation_request("r1").cluster_wide();

    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::finalizer_added("r1"))
        .then(
            expect::cluster_role_binding_created().with_body(|crb: ClusterRoleBinding| {
                assert_eq!(crb.metadata.name.as_deref(), Some("kubepim-r1"));
                assert_eq!(crb.metadata.namespace, None);
                let labels_ = crb.metadata.labels.unwrap_or_default();
                assert_eq!(labels_[labels::MANAGED_BY], "kubepim");
                assert_eq!(labels_[labels::REQUEST], "r1");
                let annotations = crb.metadata.annotations.unwrap_or_default();
                assert!(annotations.contains_key(labels::EXPIRES_AT));
                assert_eq!(annotations[labels::REQUEST_UID], "uid-r1");
                let subjects = crb.subjects.unwrap_or_default();
                assert_eq!(subjects.len(), 1);
                assert_eq!(
                    (subjects[0].kind.as_str(), subjects[0].name.as_str()),
                    ("User", ALICE)
                );
                assert_eq!(
                    (crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()),
                    ("ClusterRole", ROLE)
                );
            }),
        )
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Active));
            assert_eq!(s.bindings.len(), 1);
            assert_eq!(s.bindings[0].kind, "ClusterRoleBinding");
            assert_eq!(s.bindings[0].namespace, None);
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("activation succeeds");
    assert_eq!(outcome.server.writes(), 3);
}

#[tokio::test(start_paused = true)]
async fn cancelling_an_active_grant_revokes_it() {
    let until = truncate_to_second(now()) + secs(1800);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until)
        .cancelled();
    let binding = granted_role_binding(&request, until);
    let caches =
        Caches::with_alice_eligible_for(privileged_role(ROLE)).role_binding(binding.clone());

    let outcome = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Cancelled));
            assert_eq!(s.reason.as_deref(), Some(reasons::CANCELLED_BY_REQUESTER));
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("revocation succeeds");
    assert!(outcome.server.writes() <= REVOCATION_BUDGET);
    assert_eq!(outcome.server.writes(), 2);
}

#[tokio::test(start_paused = true)]
async fn binding_deleted_out_of_band_is_recreated_with_the_recorded_expiry() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let request = activation_request("r1");
    let activation = Scenario::new()
        .holding(&request)
        .then(expect::finalizer_added("r1"))
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::status_patched("r1"))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    activation.result.expect("activation succeeds");
    let observed = activation.server.objects.request("r1");
    let recorded = expires_at(observed.status.as_ref().unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    // Someone deleted the binding; the cache no longer has it. Later, the grant is reconciled.
    let outcome = Scenario::new()
        .then(
            expect::role_binding_created(NAMESPACE).with_body(move |rb: RoleBinding| {
                assert_grant_for_alice(&rb, "r1");
                assert_eq!(
                    annotation(&rb, labels::EXPIRES_AT),
                    recorded,
                    "a recreated binding never extends the grant"
                );
            }),
        )
        .run(|client| reconcile(Arc::new(observed), caches.context(client)))
        .await;
    outcome.result.expect("the grant is restored");
    assert_eq!(outcome.server.writes(), 1, "the status is unchanged");
}

#[tokio::test(start_paused = true)]
async fn request_not_approved_within_the_pending_timeout_expires() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));
    let request = activation_request("r1")
        .created_at(now() - secs(25 * 3600))
        .in_phase(Phase::Pending);
    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Expired));
            assert_eq!(s.reason.as_deref(), Some(reasons::NOT_APPROVED));
            assert_eq!(condition(&s, APPROVED), ("False", reasons::NOT_APPROVED));
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("expiring succeeds");
    assert_eq!(outcome.server.writes(), 1);
    assert_eq!(action, Action::await_change());
}

#[tokio::test(start_paused = true)]
async fn the_version_our_own_writes_superseded_is_not_acted_on() {
    // The watch may still deliver the version from before the activation's writes; acting on it
    // could only repeat work and meet a conflict.
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let request = Arc::new(activation_request("r1"));
    let outcome = Scenario::new()
        .holding(request.as_ref())
        .then(expect::finalizer_added("r1"))
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::status_patched("r1"))
        .run(|client| async move {
            let ctx = caches.context(client);
            let first = reconcile(request.clone(), ctx.clone()).await;
            let stale = reconcile(request, ctx).await;
            (first, stale)
        })
        .await;
    let (first, stale) = outcome.result;
    first.expect("activation succeeds");
    assert_eq!(
        stale.expect("not an error"),
        Action::requeue(STALE_REQUEUE),
        "looks again at once"
    );
    assert_eq!(
        outcome.server.writes(),
        3,
        "the stale version caused no call"
    );
}

/// After an API-server restart the request watch may be backing off while our own last write (a
/// stuck condition) is newer than the cache. An overdue grant is revoked on the cached version all
/// the same; only its status write waits for the newer one.
#[tokio::test(start_paused = true)]
async fn an_overdue_grant_is_revoked_even_on_a_version_our_writes_superseded() {
    let until = truncate_to_second(now()) - secs(3);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let binding = granted_role_binding(&request, until);
    let caches =
        Caches::with_alice_eligible_for(privileged_role(ROLE)).role_binding(binding.clone());
    let outcome = Scenario::new()
        .holding(&request)
        .holding(&binding)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(expect::status_patched("r1").replies_conflict())
        .run(|client| {
            let ctx = caches.context(client);
            ctx.note_written("r1", Some("999"));
            reconcile(Arc::new(request.clone()), ctx)
        })
        .await;
    assert_eq!(
        outcome.result.expect("a conflict is not an error"),
        Action::requeue(STALE_REQUEUE)
    );
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r1"),
        "revoked without waiting for the watch"
    );
    assert_eq!(outcome.server.writes(), 2);
}

/// The same overdue grant, once its binding is gone from the cache: our own revocation was the
/// newer write, so there is nothing to hurry and no call is made (in an expiry herd every
/// revocation would otherwise be done twice).
#[tokio::test(start_paused = true)]
async fn an_overdue_grant_already_unbound_waits_for_the_newer_version() {
    let until = truncate_to_second(now()) - secs(3);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until);
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE));
    let outcome = Scenario::new()
        .holding(&request)
        .run(|client| {
            let ctx = caches.context(client);
            ctx.note_written("r1", Some("999"));
            reconcile(Arc::new(request.clone()), ctx)
        })
        .await;
    assert_eq!(
        outcome.result.expect("not an error"),
        Action::requeue(STALE_REQUEUE)
    );
    assert_eq!(outcome.server.writes(), 0);
}

/// The CI guard of the "idle cluster: 0 writes" budget: a resync (a re-list, a new leader) of many
/// settled requests, active grants and pending requests alike, makes no call at all.
#[tokio::test(start_paused = true)]
async fn a_resync_of_settled_requests_writes_nothing() {
    const N: usize = 40;
    let gated = privileged_role("db-reader");
    let mut caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required())
        .role(gated)
        .eligibility(eligibility("alice-reader", "db-reader").users(&[ALICE]));
    let mut settled = Vec::new();
    for i in 0..N {
        let name = format!("r{i}");
        let request = if i % 2 == 0 {
            activation_request(&name)
        } else {
            activation_request(&name).with(|r| r.spec.role = "db-reader".into())
        };
        let script = if i % 2 == 0 {
            Scenario::new()
                .holding(&request)
                .then(expect::finalizer_added(&name))
                .then(expect::role_binding_created(NAMESPACE))
                .then(expect::status_patched(&name))
        } else {
            Scenario::new()
                .holding(&request)
                .then(expect::status_patched(&name))
        };
        let first = script
            .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
            .await;
        first.result.expect("settling succeeds");
        let observed = first.server.objects.request(&name);
        if i % 2 == 0 {
            assert_eq!(observed.phase(), Some(Phase::Active), "{name}");
            caches = caches.role_binding(
                first
                    .server
                    .objects
                    .role_binding(NAMESPACE, &format!("kubepim-{name}")),
            );
        } else {
            assert_eq!(observed.phase(), Some(Phase::Pending), "{name}");
        }
        caches = caches.request(observed.clone());
        settled.push(observed);
    }
    let resync = Scenario::silent()
        .run(|client| {
            let ctx = caches.context(client);
            async move {
                for request in settled {
                    reconcile(Arc::new(request), ctx.clone()).await?;
                }
                Ok::<_, Error>(())
            }
        })
        .await;
    resync.result.expect("the resync succeeds");
    assert_eq!(resync.server.writes(), 0);
    assert!(resync.server.calls.is_empty() && resync.server.events.is_empty());
}

/// A request for an allowed role in a namespace that does not exist: the API server refuses the
/// binding with 404 for the namespace; the request is Denied with the reason and the namespace
/// named (never silent, never retried forever), and nothing stays bound.
#[tokio::test(start_paused = true)]
async fn a_namespace_that_does_not_exist_denies_the_request_with_the_reason() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let request = activation_request("r1");
    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::finalizer_added("r1"))
        .then(expect::role_binding_created(NAMESPACE).replies_namespace_not_found(NAMESPACE))
        .then(expect::role_binding_deleted_by_name(NAMESPACE, "kubepim-r1").replies_not_found())
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Denied));
            assert_eq!(s.reason.as_deref(), Some(reasons::NAMESPACE_NOT_FOUND));
            let message = s.message.clone().unwrap_or_default();
            assert!(
                message.contains(&format!("namespace {NAMESPACE} does not exist")),
                "{message}"
            );
            assert!(s.bindings.is_empty() && s.expires_at.is_none());
        }))
        .run(|client| async move {
            let result = reconcile(Arc::new(request.clone()), caches.context(client)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            result
        })
        .await;
    outcome
        .result
        .expect("the reconcile succeeds: the outcome is recorded, not retried");
    assert_eq!(outcome.server.writes(), 4);
    assert!(
        outcome.server.published("Denied"),
        "{:?}",
        outcome.server.events
    );
}

/// A binding name taken by someone else's binding: the grant cannot be made, and retrying does not
/// cure it. The request shows why (Ready=False, BindingNameTaken, the binding named) with one
/// Warning Event; the next failing reconcile writes nothing more.
#[tokio::test(start_paused = true)]
async fn a_persistent_error_is_shown_on_the_request_once() {
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let request = activation_request("r1");
    let squatter: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kubepim-r1", "namespace": NAMESPACE, "uid": "uid-squatter"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}],
    }))
    .unwrap();
    let outcome = Scenario::new()
        .holding(&request)
        .holding(&squatter)
        .then(expect::finalizer_added("r1"))
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::role_binding_read(NAMESPACE, "kubepim-r1"))
        .then(expect::request_read("r1"))
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(condition(&s, READY), ("False", "BindingNameTaken"));
            let ready = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
            assert!(ready.message.contains("kubepim-r1"), "{}", ready.message);
            assert!(s.bindings.is_empty() && s.phase.is_none());
        }))
        .run(|client| async move {
            let result = reconcile(Arc::new(request.clone()), caches.context(client)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            result
        })
        .await;
    assert!(matches!(outcome.result, Err(Error::NameTaken { .. })));
    assert!(outcome.server.published("BindingNameTaken"));
    let squatter_kept = outcome.server.objects.role_binding(NAMESPACE, "kubepim-r1");
    assert_eq!(squatter_kept.metadata.uid.as_deref(), Some("uid-squatter"));

    // The retry meets the same error: the request already says so, nothing more is written.
    let shown = outcome.server.objects.request("r1");
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE).no_approval_required());
    let again = Scenario::new()
        .holding(&shown)
        .holding(&squatter)
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::role_binding_read(NAMESPACE, "kubepim-r1"))
        .then(expect::request_read("r1"))
        .run(|client| async move {
            let result = reconcile(Arc::new(shown.clone()), caches.context(client)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            result
        })
        .await;
    assert!(matches!(again.result, Err(Error::NameTaken { .. })));
    assert_eq!(
        again.server.writes(),
        1,
        "only the create that meets the squatter"
    );
    assert!(again.server.events.is_empty());
}

/// alice held db-admin for 7h10m yesterday; the role allows 8h a week. Her new 1h request is
/// Denied before anything is bound, with the usage in the message, in one write (the status), and
/// the Denied Event goes out as for any refusal.
#[tokio::test(start_paused = true)]
async fn a_pending_request_over_its_budget_is_denied_with_the_usage() {
    let yesterday = truncate_to_second(now()) - chrono::Duration::hours(24);
    let earlier = activation_request("r0").status_with(|s| {
        s.phase = Some(Phase::Expired);
        s.activated_at = Some(crate::time::to_k8s(yesterday));
        s.expires_at = Some(crate::time::to_k8s(
            yesterday + chrono::Duration::minutes(430),
        ));
        s.ended_at = s.expires_at.clone();
    });
    let caches = Caches::with_alice_eligible_for(
        privileged_role(ROLE)
            .no_approval_required()
            .budget("8h", "168h"),
    )
    .request(earlier);
    let request = activation_request("r1");
    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Denied));
            assert_eq!(s.reason.as_deref(), Some(reasons::BUDGET_EXCEEDED));
            assert_eq!(condition(&s, DENIED), ("True", reasons::BUDGET_EXCEEDED));
            assert_eq!(
                s.message.as_deref(),
                Some(
                    "alice used 7h10m of 8h in the last 7d on role db-admin; this request asks \
                     for 1h (budget: spec.budget of PrivilegedRole db-admin)"
                )
            );
            assert!(s.bindings.is_empty() && s.activated_at.is_none() && s.ended_at.is_none());
        }))
        .run(|client| reconcile(Arc::new(request.clone()), caches.context(client)))
        .await;
    outcome.result.expect("the denial is recorded");
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        outcome.server.published("Denied"),
        "{:?}",
        outcome.server.events
    );
}
