//! The sweeper: every managed binding, page by page, against its request.
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;

use crate::api::{Phase, labels};
use crate::controller::fixtures::*;
use crate::controller::sweeper::sweep;
use crate::time::truncate_to_second;

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

    let caches = Caches::new().request(valid).request(expired).request(done);
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
