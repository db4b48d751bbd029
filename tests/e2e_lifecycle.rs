//! End-to-end, layer 4: the request lifecycle against a real API server, acted out by different
//! users, with the operator running in-process as the `operator` user (least-privilege RBAC, not
//! system:masters).
//!
//! Each test gets a control plane of its own (the operator sees every request in the cluster, and
//! one test restarts it). Invariant I1 is asserted after every step.
//!
//! The requester is written into `spec.requester` by the test, as the admission webhook (a later
//! issue) will stamp it. Approvals are JSON-patch appends to `/status`, as with
//! `kubectl patch --subresource=status --type=json`.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_lifecycle`
mod support;

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kubepim::api::labels::{MANAGED_BY, MANAGED_BY_VALUE, REQUEST};
use kubepim::api::{ActivationRequest, Decision, Eligibility, FINALIZER, Phase, SubjectRef};
use kubepim::policy::reasons;
use kubepim::runtime::OperatorSettings;
use kubepim::time::{from_k8s, to_k8s};
use support::Env;
use support::envtest::{NAMESPACE_READER, POD_READER, SECRET_READER};
use support::fixtures::{self, approve, can, cancel, deny, submit};
use support::invariants::assert_i1;
use support::wait::{self, TIMEOUT, describe, until};

/// The operator as deployed, except a bounded concurrency. The sweeper keeps its 30 s default so
/// that prompt revocation has to come from the reconciler, not from a sweep.
fn settings() -> OperatorSettings {
    OperatorSettings {
        sweep_interval: Duration::from_secs(30),
        concurrency: 4,
        ..OperatorSettings::default()
    }
}

/// Stops the operator and checks it shut down cleanly.
async fn finish(env: Env) {
    let outcome = env.stop_operator().await;
    assert_eq!(outcome, "Ok(())", "run_operator's result after shutdown");
    assert_i1(&env).await;
}

fn user_subject(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

fn reason(ar: &ActivationRequest) -> Option<String> {
    ar.status.as_ref().and_then(|s| s.reason.clone())
}

fn expires_at(ar: &ActivationRequest) -> chrono::DateTime<Utc> {
    from_k8s(
        ar.status
            .as_ref()
            .and_then(|s| s.expires_at.as_ref())
            .unwrap_or_else(|| panic!("no expiresAt: {}", describe(ar))),
    )
}

/// Checks a managed RoleBinding or ClusterRoleBinding: labels, one subject (the requester), roleRef.
fn assert_managed(
    meta: &ObjectMeta,
    subjects: &Option<Vec<Subject>>,
    role_ref: &RoleRef,
    request: &str,
    requester: &str,
    kind: &str,
    role: &str,
) {
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(MANAGED_BY).map(String::as_str),
        Some(MANAGED_BY_VALUE),
        "managed-by label on {:?}",
        meta.name
    );
    assert_eq!(
        labels.get(REQUEST).map(String::as_str),
        Some(request),
        "request label on {:?}",
        meta.name
    );
    assert_eq!(
        subjects.clone().unwrap_or_default(),
        vec![user_subject(requester)],
        "subjects of {:?}",
        meta.name
    );
    assert_eq!(
        (role_ref.kind.as_str(), role_ref.name.as_str()),
        (kind, role),
        "roleRef of {:?}",
        meta.name
    );
}

/// Waits until the request has no managed binding left. Every sighting before that must be
/// before expiresAt + 1 s (I1). Returns when they were first seen gone.
async fn wait_bindings_gone(
    env: &Env,
    request: &str,
    expires: Option<chrono::DateTime<Utc>>,
) -> chrono::DateTime<Utc> {
    until(
        env,
        &format!("the bindings of {request} to be deleted"),
        TIMEOUT,
        || async {
            let seen_at = Utc::now();
            let rbs = fixtures::role_bindings_of(env, request).await;
            let crbs = fixtures::cluster_role_bindings_of(env, request).await;
            if rbs.is_empty() && crbs.is_empty() {
                return Ok(seen_at);
            }
            if let Some(expires) = expires {
                assert!(
                    seen_at < expires + chrono::Duration::seconds(1),
                    "I1: binding of {request} still exists at {seen_at}, expiresAt {expires} (+1s)"
                );
            }
            Err(format!(
                "{} RoleBinding(s), {} ClusterRoleBinding(s)",
                rbs.len(),
                crbs.len()
            ))
        },
    )
    .await
}

async fn no_bindings(env: &Env, request: &str) {
    let rbs = fixtures::role_bindings_of(env, request).await;
    let crbs = fixtures::cluster_role_bindings_of(env, request).await;
    assert!(
        rbs.is_empty() && crbs.is_empty(),
        "{request} has bindings: {rbs:?} {crbs:?}"
    );
}

/// A PrivilegedRole and an Eligibility for alice, created as admin.
async fn role_for_alice(env: &Env, pr: kubepim::api::PrivilegedRole) -> String {
    let name = pr.name_any();
    fixtures::create_role(env, &pr).await;
    let el = fixtures::eligibility(
        env,
        "alice-eligible",
        &name,
        vec![SubjectRef::user("alice")],
    );
    fixtures::create_eligibility(env, &el).await;
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_approved_request_is_granted_then_expires() {
    let Some(env) = Env::isolated("auto-expiry").await else {
        return;
    };
    let (ns1, ns2) = (env.namespace("apps").await, env.namespace("web").await);
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns1, &ns2])).await;
    assert_i1(&env).await;
    assert!(
        !can(&env, "alice", "list", "pods", Some(&ns1)).await,
        "alice can list pods before any grant"
    );

    let req = fixtures::request(&env, "fix", "alice", &role, &[&ns1, &ns2], "6s");
    let name = submit(&env, "alice", &req).await.name_any();
    let active = wait::phase(&env, &name, Phase::Active).await;
    assert_i1(&env).await;
    let status = active.status.clone().unwrap();
    let expires = expires_at(&active);
    let activated = from_k8s(status.activated_at.as_ref().expect("activatedAt"));
    let granted_for = expires - activated;
    assert!(
        (5..=6).contains(&granted_for.num_seconds()),
        "expiresAt - activatedAt = {granted_for}, asked for 6s"
    );
    assert!(
        active.finalizers().iter().any(|f| f == FINALIZER),
        "finalizer {FINALIZER} on the active request"
    );

    let rbs = fixtures::role_bindings_of(&env, &name).await;
    let mut namespaces: Vec<String> = rbs.iter().filter_map(|rb| rb.namespace()).collect();
    namespaces.sort();
    let mut want = vec![ns1.clone(), ns2.clone()];
    want.sort();
    assert_eq!(namespaces, want, "one RoleBinding per requested namespace");
    for rb in &rbs {
        assert_managed(
            &rb.metadata,
            &rb.subjects,
            &rb.role_ref,
            &name,
            "alice",
            "ClusterRole",
            POD_READER,
        );
    }
    assert_eq!(
        status.bindings.len(),
        2,
        "status.bindings: {:?}",
        status.bindings
    );
    assert!(
        fixtures::cluster_role_bindings_of(&env, &name)
            .await
            .is_empty(),
        "no ClusterRoleBinding for a namespaced role"
    );

    // Authorised while active: by SubjectAccessReview and by a request with alice's own client.
    assert!(
        can(&env, "alice", "list", "pods", Some(&ns1)).await,
        "alice may list pods in {ns1} while active"
    );
    assert!(
        can(&env, "alice", "list", "pods", Some(&ns2)).await,
        "alice may list pods in {ns2} while active"
    );
    assert!(
        !can(&env, "alice", "list", "pods", Some("default")).await,
        "the grant leaks to namespace default"
    );
    let alice_pods: Api<Pod> = Api::namespaced(env.client("alice"), &ns1);
    alice_pods
        .list(&ListParams::default())
        .await
        .expect("alice lists pods while active");

    let gone = wait_bindings_gone(&env, &name, Some(expires)).await;
    eprintln!(
        "expiry → bindings gone: {} ms after expiresAt",
        (gone - expires).num_milliseconds()
    );
    let expired = wait::phase(&env, &name, Phase::Expired).await;
    assert_eq!(
        reason(&expired).as_deref(),
        Some(reasons::DURATION_ELAPSED),
        "{}",
        describe(&expired)
    );
    assert_eq!(
        expires_at(&expired),
        expires,
        "expiresAt changed after expiry"
    );
    assert_i1(&env).await;

    assert!(
        !can(&env, "alice", "list", "pods", Some(&ns1)).await,
        "alice still authorised after expiry"
    );
    match alice_pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("alice listing pods after expiry: expected 403, got {other:?}"),
    }
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_by_an_approver_activates() {
    let Some(env) = Env::isolated("approval").await else {
        return;
    };
    let ns = env.namespace("vault").await;
    fixtures::secret_reader_role(&env, &ns).await;
    env.start_operator(settings());
    let pr = fixtures::with_approvers(
        fixtures::secret_reader(&env, "secrets", &ns),
        1,
        &["bob"],
        &[],
    );
    let role = role_for_alice(&env, pr).await;

    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "rotate", "alice", &role, &[&ns], "10m"),
    )
    .await
    .name_any();
    let pending = wait::phase(&env, &name, Phase::Pending).await;
    assert_eq!(
        reason(&pending).as_deref(),
        Some(reasons::AWAITING_APPROVAL),
        "{}",
        describe(&pending)
    );
    no_bindings(&env, &name).await;
    assert_i1(&env).await;

    approve(&env, "bob", &name).await;
    let active = wait::phase(&env, &name, Phase::Active).await;
    assert_i1(&env).await;
    let approvals = &active.status.as_ref().unwrap().approvals;
    assert!(
        approvals
            .iter()
            .any(|a| a.approver == "bob" && a.decision == Decision::Approved),
        "bob's approval kept in status (append-only): {approvals:?}"
    );
    let rbs = fixtures::role_bindings_of(&env, &name).await;
    assert_eq!(rbs.len(), 1, "one RoleBinding: {rbs:?}");
    assert_eq!(rbs[0].namespace().as_deref(), Some(ns.as_str()));
    assert_managed(
        &rbs[0].metadata,
        &rbs[0].subjects,
        &rbs[0].role_ref,
        &name,
        "alice",
        "Role",
        SECRET_READER,
    );
    assert!(
        can(&env, "alice", "get", "secrets", Some(&ns)).await,
        "alice may read secrets while active"
    );
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_by_an_approver_is_final_and_revokes() {
    let Some(env) = Env::isolated("denial").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let pr = fixtures::with_approvers(
        fixtures::pod_reader(&env, "pods", &[&ns]),
        1,
        &[],
        &["sre-leads"],
    );
    let role = role_for_alice(&env, pr).await;

    // Denied before activation: terminal, nothing granted.
    let denied = submit(
        &env,
        "alice",
        &fixtures::request(&env, "denied", "alice", &role, &[&ns], "10m"),
    )
    .await
    .name_any();
    wait::phase(&env, &denied, Phase::Pending).await;
    deny(&env, "bob", &denied).await;
    let ar = wait::phase(&env, &denied, Phase::Denied).await;
    assert_eq!(
        reason(&ar).as_deref(),
        Some(reasons::DENIED_BY_APPROVER),
        "{}",
        describe(&ar)
    );
    no_bindings(&env, &denied).await;
    assert_i1(&env).await;
    // A later approval does not revive it.
    approve(&env, "carol", &denied).await;
    let ar = wait::stays(&env, &denied, Some(Phase::Denied), Duration::from_secs(2)).await;
    no_bindings(&env, &denied).await;
    assert_eq!(reason(&ar).as_deref(), Some(reasons::DENIED_BY_APPROVER));
    assert_i1(&env).await;

    // Denied after activation: revoked at once.
    let later = submit(
        &env,
        "alice",
        &fixtures::request(&env, "later", "alice", &role, &[&ns], "10m"),
    )
    .await
    .name_any();
    wait::phase(&env, &later, Phase::Pending).await;
    approve(&env, "bob", &later).await;
    wait::phase(&env, &later, Phase::Active).await;
    assert_eq!(fixtures::role_bindings_of(&env, &later).await.len(), 1);
    assert_i1(&env).await;
    deny(&env, "carol", &later).await;
    wait_bindings_gone(&env, &later, None).await;
    let ar = until(&env, "the denied grant to end", TIMEOUT, || async {
        let ar = Api::<ActivationRequest>::all(env.admin())
            .get(&later)
            .await
            .map_err(|e| e.to_string())?;
        match ar.phase() {
            Some(Phase::Denied | Phase::Revoked) => Ok(ar),
            _ => Err(describe(&ar)),
        }
    })
    .await;
    eprintln!(
        "deny after activation ended in {:?} / {:?}",
        ar.phase(),
        reason(&ar)
    );
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_is_not_counted() {
    let Some(env) = Env::isolated("self-approval").await else {
        return;
    };
    let ns = env.namespace("payments").await;
    env.start_operator(settings());
    // alice and carol are both in payments-oncall, the approver group.
    let pr = fixtures::with_approvers(
        fixtures::pod_reader(&env, "pods", &[&ns]),
        1,
        &[],
        &["payments-oncall"],
    );
    let role = role_for_alice(&env, pr).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "mine", "alice", &role, &[&ns], "10m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Pending).await;

    approve(&env, "alice", &name).await;
    // Nothing to wait for when nothing should happen: watch it for a while.
    let ar = wait::stays(&env, &name, Some(Phase::Pending), Duration::from_secs(3)).await;
    no_bindings(&env, &name).await;
    eprintln!("after self-approval: {}", describe(&ar));
    assert_i1(&env).await;

    // Positive control: another member of the group counts.
    approve(&env, "carol", &name).await;
    wait::phase(&env, &name, Phase::Active).await;
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unapproved_request_expires_after_pending_timeout() {
    let Some(env) = Env::isolated("pending-timeout").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let mut pr =
        fixtures::with_approvers(fixtures::pod_reader(&env, "pods", &[&ns]), 1, &["bob"], &[]);
    pr.spec.approval.pending_timeout = fixtures::dur("4s");
    let role = role_for_alice(&env, pr).await;
    let created = Utc::now();
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "waiting", "alice", &role, &[&ns], "10m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Pending).await;
    assert_i1(&env).await;
    let ar = wait::phase(&env, &name, Phase::Expired).await;
    let after = Utc::now() - created;
    assert_eq!(
        reason(&ar).as_deref(),
        Some(reasons::NOT_APPROVED),
        "{}",
        describe(&ar)
    );
    assert!(
        after >= chrono::Duration::seconds(3),
        "expired after {after}, before the 4s pending timeout"
    );
    eprintln!(
        "pending timeout 4s → Expired observed after {} ms",
        after.num_milliseconds()
    );
    no_bindings(&env, &name).await;
    assert_i1(&env).await;
    // An approval after expiry changes nothing.
    approve(&env, "bob", &name).await;
    wait::stays(&env, &name, Some(Phase::Expired), Duration::from_secs(2)).await;
    no_bindings(&env, &name).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_revokes_an_active_grant() {
    let Some(env) = Env::isolated("cancel").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "oops", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Active).await;
    assert_eq!(fixtures::role_bindings_of(&env, &name).await.len(), 1);
    assert_i1(&env).await;

    cancel(&env, "alice", &name).await;
    wait_bindings_gone(&env, &name, None).await;
    let ar = wait::phase(&env, &name, Phase::Cancelled).await;
    assert_eq!(
        reason(&ar).as_deref(),
        Some(reasons::CANCELLED_BY_REQUESTER),
        "{}",
        describe(&ar)
    );
    assert_i1(&env).await;
    assert!(
        !can(&env, "alice", "list", "pods", Some(&ns)).await,
        "alice still authorised after cancelling"
    );
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_active_request_revokes_its_bindings() {
    let Some(env) = Env::isolated("delete").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "gone", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    let active = wait::phase(&env, &name, Phase::Active).await;
    assert!(
        active.finalizers().iter().any(|f| f == FINALIZER),
        "finalizer on the active request: {:?}",
        active.finalizers()
    );
    assert_eq!(fixtures::role_bindings_of(&env, &name).await.len(), 1);
    assert_i1(&env).await;

    let requests: Api<ActivationRequest> = Api::all(env.client("alice"));
    requests
        .delete(&name, &DeleteParams::default())
        .await
        .expect("alice deletes her request");
    until(
        &env,
        &format!("request {name} to be deleted"),
        TIMEOUT,
        || async {
            match Api::<ActivationRequest>::all(env.admin())
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
            {
                None => Ok(()),
                Some(ar) => Err(format!(
                    "still there, finalizers {:?}, {}",
                    ar.finalizers(),
                    describe(&ar)
                )),
            }
        },
    )
    .await;
    // The finalizer is removed only after the bindings are gone.
    no_bindings(&env, &name).await;
    assert_i1(&env).await;
    assert!(
        !can(&env, "alice", "list", "pods", Some(&ns)).await,
        "alice still authorised after deleting her request"
    );
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_eligibility_revokes_the_grant() {
    let Some(env) = Env::isolated("eligibility-gone").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let pr = fixtures::pod_reader(&env, "pods", &[&ns]);
    let role = pr.name_any();
    fixtures::create_role(&env, &pr).await;
    let el = fixtures::create_eligibility(
        &env,
        &fixtures::eligibility(&env, "alice-pods", &role, vec![SubjectRef::user("alice")]),
    )
    .await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "work", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Active).await;
    assert_i1(&env).await;

    Api::<Eligibility>::all(env.admin())
        .delete(&el.name_any(), &DeleteParams::default())
        .await
        .expect("delete eligibility");
    wait_bindings_gone(&env, &name, None).await;
    let ar = wait::phase(&env, &name, Phase::Revoked).await;
    eprintln!("eligibility deleted → {}", describe(&ar));
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_request_activates_at_start_time() {
    let Some(env) = Env::isolated("scheduled").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    // Whole seconds: that is what the API stores.
    let start = kubepim::time::truncate_to_second(Utc::now()) + chrono::Duration::seconds(6);
    let mut req = fixtures::request(&env, "later", "alice", &role, &[&ns], "1m");
    req.spec.start_at = Some(to_k8s(start));
    let name = submit(&env, "alice", &req).await.name_any();

    let scheduled = wait::phase(&env, &name, Phase::Scheduled).await;
    assert!(
        Utc::now() < start,
        "Scheduled only observed after startAt; make the start later"
    );
    no_bindings(&env, &name).await;
    assert_i1(&env).await;
    eprintln!("scheduled: {}", describe(&scheduled));

    let active = wait::phase(&env, &name, Phase::Active).await;
    let activated = from_k8s(
        active
            .status
            .as_ref()
            .unwrap()
            .activated_at
            .as_ref()
            .expect("activatedAt"),
    );
    assert!(
        activated >= start,
        "activatedAt {activated} before startAt {start}"
    );
    for rb in fixtures::role_bindings_of(&env, &name).await {
        let created = from_k8s(rb.metadata.creation_timestamp.as_ref().unwrap());
        assert!(
            created >= start,
            "binding created at {created}, before startAt {start}"
        );
    }
    eprintln!(
        "startAt → activatedAt: {} ms",
        (activated - start).num_milliseconds()
    );
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_role_gets_a_cluster_role_binding() {
    let Some(env) = Env::isolated("cluster-wide").await else {
        return;
    };
    env.start_operator(settings());
    let pr = fixtures::namespace_reader(&env, "namespaces");
    let role = pr.name_any();
    fixtures::create_role(&env, &pr).await;
    // Eligible through a group.
    fixtures::create_eligibility(
        &env,
        &fixtures::eligibility(
            &env,
            "oncall",
            &role,
            vec![SubjectRef::group("payments-oncall")],
        ),
    )
    .await;
    assert!(
        !can(&env, "alice", "list", "namespaces", None).await,
        "alice can list namespaces before any grant"
    );

    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "look", "alice", &role, &[], "30m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Active).await;
    assert_i1(&env).await;
    let crbs = fixtures::cluster_role_bindings_of(&env, &name).await;
    assert_eq!(crbs.len(), 1, "one ClusterRoleBinding: {crbs:?}");
    assert_managed(
        &crbs[0].metadata,
        &crbs[0].subjects,
        &crbs[0].role_ref,
        &name,
        "alice",
        "ClusterRole",
        NAMESPACE_READER,
    );
    assert!(
        fixtures::role_bindings_of(&env, &name).await.is_empty(),
        "no RoleBindings for a cluster-wide role"
    );
    assert!(
        can(&env, "alice", "list", "namespaces", None).await,
        "alice may list namespaces while active"
    );
    assert!(
        !can(&env, "carol", "list", "namespaces", None).await,
        "the grant is alice's alone, not her group's"
    );

    cancel(&env, "alice", &name).await;
    wait_bindings_gone(&env, &name, None).await;
    wait::phase(&env, &name, Phase::Cancelled).await;
    assert!(!can(&env, "alice", "list", "namespaces", None).await);
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restart_revokes_grants_that_expired_while_it_was_down() {
    let Some(env) = Env::isolated("restart").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "brief", "alice", &role, &[&ns], "5s"),
    )
    .await
    .name_any();
    let active = wait::phase(&env, &name, Phase::Active).await;
    let expires = expires_at(&active);
    assert_i1(&env).await;

    let outcome = env.stop_operator().await;
    assert_eq!(outcome, "Ok(())", "run_operator's result after shutdown");
    // Down across the expiry (I1 is knowingly broken while nobody runs; I4 bounds the recovery).
    let past = expires + chrono::Duration::seconds(2);
    while Utc::now() < past {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        fixtures::role_bindings_of(&env, &name).await.len(),
        1,
        "premise: the binding outlived expiry while the operator was down"
    );

    let restarted = Utc::now();
    env.start_operator(settings());
    let gone = wait_bindings_gone(&env, &name, None).await;
    let recovery = gone - restarted;
    eprintln!(
        "restart → expired binding revoked in {} ms",
        recovery.num_milliseconds()
    );
    assert!(
        recovery <= chrono::Duration::seconds(5),
        "revoked {recovery} after restart; target ≤ 5s"
    );
    let ar = wait::phase(&env, &name, Phase::Expired).await;
    assert_eq!(
        expires_at(&ar),
        expires,
        "expiresAt changed across the restart"
    );
    assert_i1(&env).await;
    finish(env).await;
}

/// A restart must not change anything that is still valid: an Active grant stays Active with the
/// same binding and expiry, a Pending request stays Pending. Restarted several times, because
/// what goes wrong here is a race between the operator's caches at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restart_keeps_valid_grants_and_pending_requests() {
    let Some(env) = Env::isolated("restart-keeps").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let auto = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let pr = fixtures::with_approvers(
        fixtures::pod_reader(&env, "gated", &[&ns]),
        1,
        &["bob"],
        &[],
    );
    let gated = pr.name_any();
    fixtures::create_role(&env, &pr).await;
    let el = fixtures::eligibility(&env, "alice-gated", &gated, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;

    let active = submit(
        &env,
        "alice",
        &fixtures::request(&env, "long", "alice", &auto, &[&ns], "30m"),
    )
    .await
    .name_any();
    let pending = submit(
        &env,
        "alice",
        &fixtures::request(&env, "asks", "alice", &gated, &[&ns], "30m"),
    )
    .await
    .name_any();
    let before = wait::phase(&env, &active, Phase::Active).await;
    wait::phase(&env, &pending, Phase::Pending).await;
    let binding_uid = fixtures::role_bindings_of(&env, &active).await[0].uid();
    assert_i1(&env).await;

    for round in 1..=5 {
        let outcome = env.stop_operator().await;
        assert_eq!(outcome, "Ok(())", "run_operator's result after shutdown");
        env.start_operator(settings());
        // Nothing should happen: watch both for a while after each start.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            env.check_operator();
            let requests: Api<ActivationRequest> = Api::all(env.admin());
            let a = requests.get(&active).await.unwrap();
            let p = requests.get(&pending).await.unwrap();
            assert_eq!(
                a.phase(),
                Some(Phase::Active),
                "restart {round}: the active grant changed: {}",
                describe(&a)
            );
            assert_eq!(
                p.phase(),
                Some(Phase::Pending),
                "restart {round}: the pending request changed: {}",
                describe(&p)
            );
            assert_eq!(
                expires_at(&a),
                expires_at(&before),
                "restart {round}: expiresAt moved"
            );
            let rbs = fixtures::role_bindings_of(&env, &active).await;
            assert_eq!(
                rbs.iter().map(|rb| rb.uid()).collect::<Vec<_>>(),
                vec![binding_uid.clone()],
                "restart {round}: the binding was deleted or replaced"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_i1(&env).await;
    }
    // Positive control: the operator still acts on the pending request.
    approve(&env, "bob", &pending).await;
    wait::phase(&env, &pending, Phase::Active).await;
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_deleted_out_of_band_is_recreated() {
    let Some(env) = Env::isolated("recreate").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "keep", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    let active = wait::phase(&env, &name, Phase::Active).await;
    let status = active.status.clone().unwrap();
    let rbs = fixtures::role_bindings_of(&env, &name).await;
    assert_eq!(rbs.len(), 1);
    let (rb_name, old_uid) = (rb_name_of(&rbs[0]), rbs[0].uid().unwrap());
    assert_i1(&env).await;

    Api::<RoleBinding>::namespaced(env.admin(), &ns)
        .delete(&rb_name, &DeleteParams::default())
        .await
        .expect("admin deletes the binding");
    let again = until(&env, "the binding to be re-created", TIMEOUT, || async {
        match fixtures::role_bindings_of(&env, &name).await.as_slice() {
            [rb] if rb.uid().as_deref() != Some(old_uid.as_str()) => Ok(rb.clone()),
            other => Err(format!(
                "{} binding(s), uids {:?}",
                other.len(),
                other.iter().map(|b| b.uid()).collect::<Vec<_>>()
            )),
        }
    })
    .await;
    assert_eq!(rb_name_of(&again), rb_name, "same deterministic name");
    assert_managed(
        &again.metadata,
        &again.subjects,
        &again.role_ref,
        &name,
        "alice",
        "ClusterRole",
        POD_READER,
    );
    let now = Api::<ActivationRequest>::all(env.admin())
        .get(&name)
        .await
        .unwrap();
    let now_status = now.status.clone().unwrap();
    assert_eq!(now.phase(), Some(Phase::Active));
    assert_eq!(
        now_status.expires_at, status.expires_at,
        "expiresAt must not move when a binding is re-created (I3)"
    );
    assert_eq!(
        now_status.activated_at, status.activated_at,
        "activatedAt must not move"
    );
    assert_i1(&env).await;
    finish(env).await;
}

fn rb_name_of(rb: &RoleBinding) -> String {
    rb.name_any()
}

/// A RoleBinding in `ns` and a ClusterRoleBinding, made by hand as admin, that carry kubepim's
/// labels for request `request` and grant mallory something.
async fn plant_managed_bindings(env: &Env, ns: &str, request: &str) {
    let labels = [
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (REQUEST.to_string(), request.to_string()),
    ];
    let meta = |namespace: Option<&str>| ObjectMeta {
        name: Some(format!("kubepim-{request}")),
        namespace: namespace.map(Into::into),
        labels: Some(labels.iter().cloned().collect()),
        ..Default::default()
    };
    let role_ref = |name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: name.into(),
    };
    let pp = PostParams::default();
    let rb = RoleBinding {
        metadata: meta(Some(ns)),
        role_ref: role_ref(POD_READER),
        subjects: Some(vec![user_subject("mallory")]),
    };
    Api::<RoleBinding>::namespaced(env.admin(), ns)
        .create(&pp, &rb)
        .await
        .expect("planted RoleBinding");
    let crb = ClusterRoleBinding {
        metadata: meta(None),
        role_ref: role_ref(NAMESPACE_READER),
        subjects: Some(vec![user_subject("mallory")]),
    };
    Api::<ClusterRoleBinding>::all(env.admin())
        .create(&pp, &crb)
        .await
        .expect("planted ClusterRoleBinding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_deletes_orphaned_managed_bindings() {
    let Some(env) = Env::isolated("sweeper").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    // Control: a binding kubepim does not manage must stay.
    let unmanaged = env.name("hand-made");
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin(), &ns);
    rbs.create(
        &PostParams::default(),
        &RoleBinding {
            metadata: env.meta("hand-made"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: POD_READER.into(),
            },
            subjects: Some(vec![user_subject("bob")]),
        },
    )
    .await
    .expect("unmanaged RoleBinding");

    // Orphans present before the operator starts: the start-up sweep.
    let before = env.name("ghost-before");
    plant_managed_bindings(&env, &ns, &before).await;
    assert!(
        can(&env, "mallory", "list", "pods", Some(&ns)).await,
        "premise: the orphan grants something"
    );
    let started = Utc::now();
    env.start_operator(OperatorSettings {
        sweep_interval: Duration::from_secs(2),
        ..settings()
    });
    wait_bindings_gone(&env, &before, None).await;
    eprintln!(
        "orphans present at start swept {} ms after operator start",
        (Utc::now() - started).num_milliseconds()
    );
    assert_i1(&env).await;

    // Orphans appearing while it runs: the periodic sweep (every 2 s here). Make sure the
    // operator is past its start-up first: a request it has activated proves that.
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "proof", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Active).await;
    let during = env.name("ghost-during");
    let planted = Utc::now();
    plant_managed_bindings(&env, &ns, &during).await;
    wait_bindings_gone(&env, &during, None).await;
    eprintln!(
        "orphans planted while running swept after {} ms (sweep interval 2 s)",
        (Utc::now() - planted).num_milliseconds()
    );

    // A binding labelled for a request that exists but has ended.
    cancel(&env, "alice", &name).await;
    wait::phase(&env, &name, Phase::Cancelled).await;
    wait_bindings_gone(&env, &name, None).await;
    plant_managed_bindings(&env, &ns, &name).await;
    wait_bindings_gone(&env, &name, None).await;

    assert!(
        rbs.get_opt(&unmanaged).await.unwrap().is_some(),
        "the sweeper deleted an unmanaged RoleBinding"
    );
    assert!(!can(&env, "mallory", "list", "pods", Some(&ns)).await);
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_by_someone_not_eligible_is_denied() {
    let Some(env) = Env::isolated("not-eligible").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "mallory",
        &fixtures::request(&env, "sneak", "mallory", &role, &[&ns], "10m"),
    )
    .await
    .name_any();
    let ar = wait::phase(&env, &name, Phase::Denied).await;
    assert_eq!(
        reason(&ar).as_deref(),
        Some(reasons::NOT_ELIGIBLE),
        "{}",
        describe(&ar)
    );
    no_bindings(&env, &name).await;
    assert!(!can(&env, "mallory", "list", "pods", Some(&ns)).await);
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_needs_distinct_authorised_approvers() {
    let Some(env) = Env::isolated("quorum").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let pr = fixtures::with_approvers(
        fixtures::pod_reader(&env, "pods", &[&ns]),
        2,
        &["bob"],
        &["sre-leads"],
    );
    let role = role_for_alice(&env, pr).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "two", "alice", &role, &[&ns], "10m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Pending).await;

    // bob twice, and mallory who is no approver: one approval counted. The API server itself
    // refuses bob's second entry: status.approvals is a list-map keyed by approver.
    approve(&env, "bob", &name).await;
    match fixtures::decide(&env, "bob", &name, Decision::Approved, "again").await {
        Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains("Duplicate value") => {}
        other => panic!("bob's second approval: expected 422 Duplicate value, got {other:?}"),
    }
    approve(&env, "mallory", &name).await;
    let ar = wait::stays(&env, &name, Some(Phase::Pending), Duration::from_secs(3)).await;
    eprintln!("after bob and mallory: {}", describe(&ar));
    no_bindings(&env, &name).await;
    assert_i1(&env).await;

    // carol (sre-leads) is the second distinct approver.
    approve(&env, "carol", &name).await;
    let active = wait::phase(&env, &name, Phase::Active).await;
    let approvers: Vec<String> = active
        .status
        .as_ref()
        .unwrap()
        .approvals
        .iter()
        .map(|a| a.approver.clone())
        .collect();
    assert_eq!(
        approvers,
        ["bob", "mallory", "carol"],
        "status.approvals must keep every entry in order (append-only)"
    );
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_denied_with_their_reason() {
    let Some(env) = Env::isolated("invalid").await else {
        return;
    };
    let (ns, ns_b) = (env.namespace("apps").await, env.namespace("web").await);
    let other = env.namespace("other").await;
    env.start_operator(settings());
    // Two namespaces: with only one, an empty spec.namespaces means that one (by design).
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns, &ns_b])).await;
    let mut cases: Vec<(ActivationRequest, &str)> = vec![
        (
            fixtures::request(&env, "wrong-ns", "alice", &role, &[&other], "10m"),
            reasons::NAMESPACE_OUTSIDE_SCOPE,
        ),
        (
            fixtures::request(&env, "too-long", "alice", &role, &[&ns], "2h"),
            reasons::DURATION_TOO_LONG,
        ),
        (
            fixtures::request(&env, "no-ns", "alice", &role, &[], "10m"),
            reasons::NAMESPACES_REQUIRED,
        ),
    ];
    let mut unjustified = fixtures::request(&env, "why", "alice", &role, &[&ns], "10m");
    unjustified.spec.justification = None;
    cases.push((unjustified, reasons::JUSTIFICATION_REQUIRED));
    let mut names = Vec::new();
    for (req, _) in &cases {
        names.push(submit(&env, "alice", req).await.name_any());
    }
    let mut failures = Vec::new();
    for (name, (_, want)) in names.iter().zip(&cases) {
        let ar = until(&env, &format!("{name} to be decided"), TIMEOUT, || async {
            let ar = Api::<ActivationRequest>::all(env.admin())
                .get(name)
                .await
                .map_err(|e| e.to_string())?;
            match ar.phase() {
                Some(p) if p != Phase::Pending => Ok(ar),
                _ => Err(describe(&ar)),
            }
        })
        .await;
        if ar.phase() != Some(Phase::Denied) || reason(&ar).as_deref() != Some(*want) {
            failures.push(format!(
                "{name}: expected Denied/{want}, got {}",
                describe(&ar)
            ));
        }
        no_bindings(&env, name).await;
    }
    assert_i1(&env).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_the_eligibility_window_revokes() {
    let Some(env) = Env::isolated("window-end").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let pr = fixtures::pod_reader(&env, "pods", &[&ns]);
    let role = pr.name_any();
    fixtures::create_role(&env, &pr).await;
    let not_after = kubepim::time::truncate_to_second(Utc::now()) + chrono::Duration::seconds(7);
    let mut el = fixtures::eligibility(
        &env,
        "alice-briefly",
        &role,
        vec![SubjectRef::user("alice")],
    );
    el.spec.not_after = Some(to_k8s(not_after));
    fixtures::create_eligibility(&env, &el).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "work", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    let active = wait::phase(&env, &name, Phase::Active).await;
    eprintln!(
        "active under an eligibility ending {not_after}: {}",
        describe(&active)
    );
    assert_i1(&env).await;
    // The grant rests on the eligibility: gone by its end (+1 s), like an expiry.
    let gone = wait_bindings_gone(&env, &name, Some(not_after)).await;
    eprintln!(
        "eligibility notAfter → bindings gone: {} ms",
        (gone - not_after).num_milliseconds()
    );
    let ar = until(&env, "the grant to end", TIMEOUT, || async {
        let ar = Api::<ActivationRequest>::all(env.admin())
            .get(&name)
            .await
            .map_err(|e| e.to_string())?;
        match ar.phase() {
            Some(p) if p.is_terminal() => Ok(ar),
            _ => Err(describe(&ar)),
        }
    })
    .await;
    eprintln!("after the eligibility window: {}", describe(&ar));
    assert!(
        matches!(ar.phase(), Some(Phase::Revoked | Phase::Expired)),
        "{}",
        describe(&ar)
    );
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_privileged_role_revokes_the_grant() {
    let Some(env) = Env::isolated("role-gone").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "work", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Active).await;
    assert_i1(&env).await;
    Api::<kubepim::api::PrivilegedRole>::all(env.admin())
        .delete(&role, &DeleteParams::default())
        .await
        .expect("delete PrivilegedRole");
    wait_bindings_gone(&env, &name, None).await;
    let ar = wait::phase(&env, &name, Phase::Revoked).await;
    assert_eq!(
        reason(&ar).as_deref(),
        Some(reasons::ROLE_NOT_FOUND),
        "{}",
        describe(&ar)
    );
    assert_i1(&env).await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_binding_is_put_right() {
    let Some(env) = Env::isolated("tampered").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let name = submit(
        &env,
        "alice",
        &fixtures::request(&env, "work", "alice", &role, &[&ns], "30m"),
    )
    .await
    .name_any();
    wait::phase(&env, &name, Phase::Active).await;
    let rb_name = fixtures::role_bindings_of(&env, &name).await[0].name_any();
    // Someone with RBAC write adds mallory to the managed binding.
    Api::<RoleBinding>::namespaced(env.admin(), &ns)
        .patch(
            &rb_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "subjects": [user_subject("alice"), user_subject("mallory")]
            })),
        )
        .await
        .expect("tamper with the binding");
    let tampered_at = Utc::now();
    until(
        &env,
        "the binding to grant alice alone again",
        TIMEOUT,
        || async {
            let rbs = fixtures::role_bindings_of(&env, &name).await;
            let subjects: Vec<Vec<Subject>> = rbs
                .iter()
                .map(|rb| rb.subjects.clone().unwrap_or_default())
                .collect();
            if subjects == vec![vec![user_subject("alice")]]
                && !can(&env, "mallory", "list", "pods", Some(&ns)).await
            {
                Ok(())
            } else {
                Err(format!("subjects {subjects:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "tampered binding put right in {} ms",
        (Utc::now() - tampered_at).num_milliseconds()
    );
    assert_eq!(
        Api::<ActivationRequest>::all(env.admin())
            .get(&name)
            .await
            .unwrap()
            .phase(),
        Some(Phase::Active)
    );
    assert!(can(&env, "alice", "list", "pods", Some(&ns)).await);
    assert_i1(&env).await;
    finish(env).await;
}

/// GitOps applies a PrivilegedRole and an Eligibility and the user asks at once: the request must
/// not be refused because the operator's caches have not seen the role yet. Repeated, because the
/// watches of different kinds deliver in no fixed order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_right_after_its_role_and_eligibility_is_granted() {
    let Some(env) = Env::isolated("fresh-role").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    // The operator is past its start-up once it has activated a request.
    let warm = role_for_alice(&env, fixtures::pod_reader(&env, "warm", &[&ns])).await;
    let first = submit(
        &env,
        "alice",
        &fixtures::request(&env, "warm-up", "alice", &warm, &[&ns], "30m"),
    )
    .await
    .name_any();
    wait::phase(&env, &first, Phase::Active).await;

    let mut names = Vec::new();
    for i in 0..10 {
        let pr = fixtures::pod_reader(&env, &format!("fresh-{i}"), &[&ns]);
        let role = pr.name_any();
        fixtures::create_role(&env, &pr).await;
        let el = fixtures::eligibility(
            &env,
            &format!("fresh-{i}"),
            &role,
            vec![SubjectRef::user("alice")],
        );
        fixtures::create_eligibility(&env, &el).await;
        let req = fixtures::request(&env, &format!("now-{i}"), "alice", &role, &[&ns], "30m");
        names.push(submit(&env, "alice", &req).await.name_any());
    }
    let mut failures = Vec::new();
    for name in &names {
        let ar = until(&env, &format!("{name} to be decided"), TIMEOUT, || async {
            let ar = Api::<ActivationRequest>::all(env.admin())
                .get(name)
                .await
                .map_err(|e| e.to_string())?;
            match ar.phase() {
                Some(Phase::Active) => Ok(ar),
                Some(p) if p.is_terminal() => Ok(ar),
                _ => Err(describe(&ar)),
            }
        })
        .await;
        if ar.phase() != Some(Phase::Active) {
            failures.push(format!("{name}: {}", describe(&ar)));
        }
    }
    assert_i1(&env).await;
    assert!(
        failures.is_empty(),
        "{} of {} requests made right after their role were refused:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
    finish(env).await;
}

/// The attack report's `ghost`: a request for an allowed role in a namespace that does not exist,
/// with no webhook to refuse it at create. On 426d566 it stayed without phase, reason or
/// condition, retried forever in the operator's log; now it is Denied within seconds, with the
/// reason and the namespace named, and nothing bound.
#[tokio::test]
async fn a_request_for_a_namespace_that_does_not_exist_is_denied_and_says_why() {
    let Some(env) = Env::isolated("ghost").await else {
        return;
    };
    env.start_operator(settings());
    let real = env.namespace("real").await;
    let ghost = env.name("ghost");
    let role = fixtures::create_role(
        &env,
        &fixtures::pod_reader(&env, "reader", &[&real, &ghost]),
    )
    .await;
    fixtures::create_eligibility(
        &env,
        &fixtures::eligibility(
            &env,
            "alice",
            &role.name_any(),
            vec![SubjectRef::user("alice")],
        ),
    )
    .await;
    let request = fixtures::submit(
        &env,
        "alice",
        &fixtures::request(
            &env,
            "haunted",
            "alice",
            &role.name_any(),
            &[&real, &ghost],
            "10m",
        ),
    )
    .await;
    let denied = until(
        &env,
        "the request Denied",
        Duration::from_secs(10),
        || async {
            let r: ActivationRequest = Api::all(env.admin())
                .get(&request.name_any())
                .await
                .map_err(|e| e.to_string())?;
            match r.phase() {
                Some(Phase::Denied) => Ok(r),
                _ => Err(wait::describe(&r)),
            }
        },
    )
    .await;
    let status = denied.status.clone().unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("NamespaceNotFound"));
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("namespace {ghost} does not exist")),
        "{message}"
    );
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Ready"),
        "a condition says it: {:?}",
        status.conditions
    );
    // Never a grant in part: nothing was left in the namespace that does exist.
    assert!(
        fixtures::role_bindings_of(&env, &request.name_any())
            .await
            .is_empty()
    );
    finish(env).await;
}

/// The counts in a role's and an eligibility's status follow the grants as they happen, so that
/// once the last grant has ended nothing is left to write: the idle cluster of docs/targets.md
/// (0 writes a minute) for the objects kubepim writes. Watched for longer than the 60 s re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cluster_writes_nothing_once_the_last_grant_has_ended() {
    let Some(env) = Env::isolated("idle").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(settings());
    let role = role_for_alice(&env, fixtures::pod_reader(&env, "pods", &[&ns])).await;
    let roles: Api<kubepim::api::PrivilegedRole> = Api::all(env.admin());
    let eligibilities: Api<Eligibility> = Api::all(env.admin());
    let requests: Api<ActivationRequest> = Api::all(env.admin());
    let elig = env.name("alice-eligible");
    // Well within the re-check: only a refresh triggered by the request passes this.
    let promptly = Duration::from_secs(5);
    let counts = || async {
        let r = roles.get(&role).await.map_err(|e| e.to_string())?;
        let e = eligibilities.get(&elig).await.map_err(|e| e.to_string())?;
        let active = r.status.map(|s| s.active_grants).unwrap_or_default();
        let activations = e.status.map(|s| s.activations).unwrap_or_default();
        Ok::<_, String>((active, activations))
    };

    let req = fixtures::request(&env, "brief", "alice", &role, &[&ns], "6s");
    let name = submit(&env, "alice", &req).await.name_any();
    wait::phase(&env, &name, Phase::Active).await;
    until(&env, "activeGrants 1, activations 1", promptly, || async {
        match counts().await? {
            (1, 1) => Ok(()),
            seen => Err(format!("(activeGrants, activations) = {seen:?}")),
        }
    })
    .await;
    wait::phase_within(&env, &name, Phase::Expired, TIMEOUT).await;
    no_bindings(&env, &name).await;
    until(
        &env,
        "activeGrants 0 after the expiry",
        promptly,
        || async {
            match counts().await? {
                (0, 1) => Ok(()),
                seen => Err(format!("(activeGrants, activations) = {seen:?}")),
            }
        },
    )
    .await;
    // The foothold review follows the revocation: its verdict is the request's last write.
    until(&env, "the foothold review's verdict", TIMEOUT, || async {
        let request = requests.get(&name).await.map_err(|e| e.to_string())?;
        match request.status.as_ref() {
            Some(s) if !kubepim::policy::footholds::is_pending(s) => Ok(()),
            _ => Err("review pending".to_string()),
        }
    })
    .await;

    // Settled. Any write to these objects would change their resourceVersion.
    let versions = || async {
        (
            roles.get(&role).await.expect("role").resource_version(),
            eligibilities
                .get(&elig)
                .await
                .expect("eligibility")
                .resource_version(),
            requests
                .get(&name)
                .await
                .expect("request")
                .resource_version(),
        )
    };
    let before = versions().await;
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert_eq!(
        versions().await,
        before,
        "(role, eligibility, request) written in the idle minute"
    );
    finish(env).await;
}
