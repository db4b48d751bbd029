//! The sweeper and the binding guard: every managed binding against the request it points at.
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};

use crate::api::{Phase, labels};
use crate::controller::fixtures::*;
use crate::controller::sweeper::{guard, startup_sweep, sweep};
use crate::policy::reasons;
use crate::time::truncate_to_second;

/// A binding made by someone else that copies kubepim's label and annotations: named `name`,
/// pointing at `request` (its name and uid), claiming to expire in 2099.
fn forged_for(request: &crate::api::ActivationRequest, name: &str) -> RoleBinding {
    let mut forged = granted_role_binding(request, "2099-01-01T00:00:00Z".parse().unwrap());
    forged.metadata.name = Some(name.into());
    forged.metadata.uid = Some(format!("uid-{name}"));
    forged
}

#[tokio::test(start_paused = true)]
async fn sweeper_deletes_orphaned_expired_and_terminal_grants_and_keeps_valid_ones() {
    let soon = truncate_to_second(now()) + secs(1800);
    let past = truncate_to_second(now()) - secs(10);

    // Gone: its request was deleted with the finalizer force-removed.
    let gone = activation_request("r-gone");
    let gone_binding = granted_role_binding(&gone, soon);
    // Valid: an active request, its binding until its expiry.
    let valid = activation_request("r-valid")
        .approved_by(BOB)
        .active_until(soon);
    let valid_binding = granted_role_binding(&valid, soon);
    // Expired by its annotation (the request reconciler has not got to it yet).
    let expired = activation_request("r-expired")
        .approved_by(BOB)
        .active_until(past);
    let expired_binding = granted_role_binding(&expired, past);
    // Terminal: the request is over but a ClusterRoleBinding stayed behind.
    let done = activation_request("r-done").in_phase(Phase::Expired);
    let done_binding = granted_cluster_role_binding(&done, soon);

    let caches = Caches::new()
        .role(privileged_role(ROLE))
        .request(valid)
        .request(expired)
        .request(done);
    let outcome = Scenario::new()
        .holding(&gone_binding)
        .holding(&valid_binding)
        .holding(&expired_binding)
        .holding(&done_binding)
        .then(
            expect::role_bindings_listed(None)
                .replies_page(&[gone_binding, valid_binding], Some("page-2")),
        )
        // Not in the cache: a read decides, not the cache's silence.
        .then(expect::request_read("r-gone"))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r-gone",
            "uid-rb-r-gone",
        ))
        .then(expect::role_bindings_listed(Some("page-2")).replies_page(&[expired_binding], None))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r-expired",
            "uid-rb-r-expired",
        ))
        .then(expect::cluster_role_bindings_listed(None).replies_page(&[done_binding], None))
        .then(expect::cluster_role_binding_deleted(
            "kubepim-r-done",
            "uid-crb-r-done",
        ))
        .run(|client| async move { sweep(&caches.context(client)).await })
        .await;

    assert_eq!(outcome.result.expect("the sweep succeeds"), 3);
    assert_eq!(outcome.server.writes(), 3);
    assert!(
        outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r-valid")
    );
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r-gone")
    );
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r-expired")
    );
}

/// The start-up sweep judges from the synced request cache: the only reads are the bindings'
/// lists (no list of every request beside the cache, which held a second, untrimmed copy of each;
/// issue 11). The scenario fails on any call it does not expect.
#[tokio::test(start_paused = true)]
async fn the_start_up_sweep_judges_from_the_request_cache_without_listing_requests() {
    let soon = truncate_to_second(now()) + secs(1800);
    let valid = activation_request("r-valid")
        .approved_by(BOB)
        .active_until(soon);
    let valid_binding = granted_role_binding(&valid, soon);
    let done = activation_request("r-done").in_phase(Phase::Expired);
    let done_binding = granted_cluster_role_binding(&done, soon);
    let caches = Caches::new()
        .role(privileged_role(ROLE))
        .request(valid)
        .request(done);
    let outcome = Scenario::new()
        .holding(&valid_binding)
        .holding(&done_binding)
        .then(expect::role_bindings_listed(None).replies_page(&[valid_binding], None))
        .then(expect::cluster_role_bindings_listed(None).replies_page(&[done_binding], None))
        .then(expect::cluster_role_binding_deleted(
            "kubepim-r-done",
            "uid-crb-r-done",
        ))
        .run(|client| async move { startup_sweep(&caches.context(client)).await })
        .await;
    assert_eq!(outcome.result.expect("the sweep succeeds"), 1);
    assert_eq!(outcome.server.writes(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_failing_binding_does_not_stop_the_sweep() {
    let past = truncate_to_second(now()) - secs(10);
    // Its request is not cached, and reading it fails.
    let unknown = activation_request("r-unknown");
    let unknown_binding = granted_role_binding(&unknown, truncate_to_second(now()) + secs(600));
    // Listed after it: expired, must still go.
    let expired = activation_request("r-expired")
        .approved_by(BOB)
        .active_until(past);
    let expired_binding = granted_role_binding(&expired, past);
    let caches = Caches::new().request(expired);

    let outcome = Scenario::new()
        .holding(&expired_binding)
        .then(
            expect::role_bindings_listed(None)
                .replies_page(&[unknown_binding, expired_binding], None),
        )
        .then(expect::request_read("r-unknown").replies_unavailable())
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r-expired",
            "uid-rb-r-expired",
        ))
        .then(
            expect::cluster_role_bindings_listed(None)
                .replies_page::<ClusterRoleBinding>(&[], None),
        )
        .run(|client| async move { sweep(&caches.context(client)).await })
        .await;
    assert!(
        outcome.result.is_err(),
        "the failure is still reported (and the pass retried): {:?}",
        outcome.result
    );
    assert!(
        !outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r-expired")
    );
}

#[tokio::test(start_paused = true)]
async fn managed_binding_naming_no_request_is_swept() {
    // Labelled as kubepim's, with an empty request annotation: anyone able to create a
    // RoleBinding can make one. It names no request, so it is unlabelled, and goes.
    let mut forged = granted_role_binding(
        &activation_request("r-x"),
        truncate_to_second(now()) + secs(600),
    );
    forged
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(labels::REQUEST.into(), String::new());
    forged
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(labels::REQUEST);

    let outcome = Scenario::new()
        .holding(&forged)
        .then(expect::role_bindings_listed(None).replies_page(&[forged], None))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r-x",
            "uid-rb-r-x",
        ))
        .then(
            expect::cluster_role_bindings_listed(None)
                .replies_page::<ClusterRoleBinding>(&[], None),
        )
        .run(|client| async move { sweep(&Caches::new().context(client)).await })
        .await;
    assert_eq!(outcome.result.expect("the sweep succeeds"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_forged_binding_pointing_at_the_requesters_own_pending_request_goes_with_a_warning() {
    // The reported attack: `kubepim-<other request>-x`, labelled and annotated as kubepim's,
    // pointing at her own Pending request, `expires-at` 2099.
    let pending = activation_request("r-own").in_phase(Phase::Pending);
    let forged = forged_for(&pending, "kubepim-r-other-x");
    let caches = Caches::new().role(privileged_role(ROLE)).request(pending);
    let outcome = Scenario::new()
        .holding(&forged)
        .then(expect::role_bindings_listed(None).replies_page(std::slice::from_ref(&forged), None))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r-other-x",
            "uid-kubepim-r-other-x",
        ))
        .then(
            expect::cluster_role_bindings_listed(None)
                .replies_page::<ClusterRoleBinding>(&[], None),
        )
        .run(|client| async move {
            let deleted = sweep(&caches.context(client)).await;
            // The Event is published on a task of its own.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            deleted
        })
        .await;
    assert_eq!(outcome.result.expect("the sweep succeeds"), 1);
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        outcome
            .server
            .published(reasons::ILLEGITIMATE_BINDING_REMOVED)
    );
}

#[tokio::test(start_paused = true)]
async fn forged_shapes_beside_an_active_grant_go_and_the_grant_stays() {
    let soon = truncate_to_second(now()) + secs(1800);
    let active = activation_request("r-active")
        .approved_by(BOB)
        .active_until(soon);
    let genuine = granted_role_binding(&active, soon);
    // The right name in a namespace never recorded for the request.
    let mut elsewhere = granted_role_binding(&active, soon);
    elsewhere.metadata.namespace = Some("billing".into());
    elsewhere.metadata.uid = Some("uid-elsewhere".into());
    // A second subject on a binding of the right shape otherwise.
    let mut two_subjects = forged_for(&active, "kubepim-r-active-2");
    two_subjects
        .subjects
        .as_mut()
        .unwrap()
        .push(k8s_openapi::api::rbac::v1::Subject {
            kind: "User".into(),
            name: "mallory".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        });
    let caches = Caches::new().role(privileged_role(ROLE)).request(active);
    let outcome = Scenario::new()
        .holding(&elsewhere)
        .holding(&genuine)
        .holding(&two_subjects)
        .then(expect::role_bindings_listed(None).replies_page(
            &[elsewhere.clone(), genuine.clone(), two_subjects.clone()],
            None,
        ))
        .then(expect::role_binding_deleted(
            "billing",
            "kubepim-r-active",
            "uid-elsewhere",
        ))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r-active-2",
            "uid-kubepim-r-active-2",
        ))
        .then(
            expect::cluster_role_bindings_listed(None)
                .replies_page::<ClusterRoleBinding>(&[], None),
        )
        .run(|client| async move { sweep(&caches.context(client)).await })
        .await;
    assert_eq!(outcome.result.expect("the sweep succeeds"), 2);
    assert!(
        outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r-active")
    );
}

#[tokio::test(start_paused = true)]
async fn the_guard_removes_a_forged_binding_as_the_watch_delivers_it() {
    let pending = activation_request("r-own").in_phase(Phase::Pending);
    let forged = forged_for(&pending, "kubepim-r-other-x");
    let caches = Caches::new()
        .role(privileged_role(ROLE))
        .request(pending)
        .role_binding(forged.clone());
    let outcome = Scenario::new()
        .holding(&forged)
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r-other-x",
            "uid-kubepim-r-other-x",
        ))
        .run(|client| async move {
            let ctx = caches.context(client);
            guard(
                ctx,
                futures::stream::iter(vec![std::sync::Arc::new(forged)]),
                futures::stream::empty::<std::sync::Arc<ClusterRoleBinding>>(),
            )
            .await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        })
        .await;
    assert_eq!(outcome.server.writes(), 1);
    assert!(
        outcome
            .server
            .published(reasons::ILLEGITIMATE_BINDING_REMOVED)
    );
}

#[tokio::test(start_paused = true)]
async fn the_guard_keeps_a_binding_the_operator_is_activating_this_moment() {
    // Made for an approved request whose activation is not recorded yet: its reconciler's.
    let approved = activation_request("r-approved").approved_by(BOB);
    let fresh = granted_role_binding(&approved, truncate_to_second(now()) + secs(3600));
    let caches = Caches::new()
        .role(privileged_role(ROLE))
        .request(approved)
        .role_binding(fresh.clone());
    let outcome = Scenario::new()
        .holding(&fresh)
        .run(|client| async move {
            guard(
                caches.context(client),
                futures::stream::iter(vec![std::sync::Arc::new(fresh)]),
                futures::stream::empty::<std::sync::Arc<ClusterRoleBinding>>(),
            )
            .await;
        })
        .await;
    assert_eq!(outcome.server.writes(), 0);
    assert!(
        outcome
            .server
            .objects
            .has_role_binding(NAMESPACE, "kubepim-r-approved")
    );
}
