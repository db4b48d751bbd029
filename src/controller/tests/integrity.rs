//! Role integrity in the request reconciler: the role's rules recorded at activation, a widened
//! role ending the grant, a narrowed one recorded and kept.
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::conditions::ROLE_NARROWED;
use crate::api::{ActivationRequest, ActivationRequestStatus, Phase};
use crate::controller::fixtures::*;
use crate::controller::request::reconcile;
use crate::controller::role_rules::{self, RoleRules};
use crate::policy::reasons;
use crate::policy::role_integrity::Observed;
use crate::time::truncate_to_second;

fn rule(resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn pods_read() -> Vec<PolicyRule> {
    vec![rule(&["pods"], &["get", "list"])]
}

/// r1, Active for another 30 minutes, with `recorded` as the rules it was granted with.
fn active_grant(recorded: &[PolicyRule]) -> (ActivationRequest, Caches) {
    let until = truncate_to_second(now()) + secs(1800);
    let observed = Observed::of(recorded);
    let request = activation_request("r1")
        .finalized()
        .approved_by(BOB)
        .active_until(until)
        .status_with(|s| {
            s.granted_rules = observed.rules.clone();
            s.role_digest = Some(observed.digest.clone());
        });
    let binding = granted_role_binding(&request, until);
    let caches = Caches::with_alice_eligible_for(privileged_role(ROLE))
        .role_binding(binding)
        .request(cached(&request));
    (request, caches)
}

/// As the operator's cache holds it: without the recorded rules.
fn cached(request: &ActivationRequest) -> ActivationRequest {
    let mut cached = request.clone();
    role_rules::trim_cached(&mut cached);
    cached
}

fn narrowed_condition(s: &ActivationRequestStatus) -> Option<(String, String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == ROLE_NARROWED)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(start_paused = true)]
async fn activation_records_the_rules_the_role_has_then() {
    let role = privileged_role(ROLE).no_approval_required();
    let caches = Caches::with_alice_eligible_for(role.clone());
    let request = activation_request("r1");
    let rules = Observed::of(&pods_read());
    let want = rules.clone();
    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::finalizer_added("r1"))
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::status_patched("r1").with_status(move |s, _| {
            assert_eq!(s.phase, Some(Phase::Active));
            assert_eq!(s.granted_rules, want.rules);
            assert_eq!(s.role_digest.as_deref(), Some(want.digest.as_str()));
        }))
        .run(|client| {
            let ctx = caches.context(client);
            ctx.role_rules.remember(&role, Some(rules));
            reconcile(Arc::new(request.clone()), ctx)
        })
        .await;
    outcome.result.expect("activation succeeds");
    assert_eq!(
        outcome.server.writes(),
        3,
        "the record rides on the activation's writes"
    );
}

#[tokio::test(start_paused = true)]
async fn activation_reads_the_role_when_it_was_not_read_yet() {
    let role = privileged_role(ROLE).no_approval_required();
    let caches = Caches::with_alice_eligible_for(role.clone());
    let request = activation_request("r1");
    let cluster_role = ClusterRole {
        metadata: kube::api::ObjectMeta {
            name: Some(ROLE.into()),
            ..Default::default()
        },
        rules: Some(pods_read()),
        ..Default::default()
    };
    let want = Observed::of(&pods_read());
    let outcome = Scenario::new()
        .holding(&request)
        .holding(&cluster_role)
        .then(expect::cluster_role_read(ROLE))
        .then(expect::finalizer_added("r1"))
        .then(expect::role_binding_created(NAMESPACE))
        .then(expect::status_patched("r1").with_status(move |s, _| {
            assert_eq!(s.granted_rules, want.rules);
            assert_eq!(s.role_digest.as_deref(), Some(want.digest.as_str()));
        }))
        .run(|client| {
            let ctx = caches.context(client);
            ctx.role_rules.forget(ROLE);
            reconcile(Arc::new(request.clone()), ctx)
        })
        .await;
    outcome.result.expect("activation succeeds");
    assert_eq!(outcome.server.writes(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_role_widened_during_the_grant_revokes_it_naming_what_was_added() {
    let (request, caches) = active_grant(&pods_read());
    let role = privileged_role(ROLE);
    let mut wider = pods_read();
    wider.push(rule(&["secrets"], &["get"]));
    let outcome = Scenario::new()
        .holding(&request)
        // The cache does not keep the recorded rules: read back once the role differs.
        .then(expect::request_read("r1"))
        .then(expect::role_binding_deleted(
            NAMESPACE,
            "kubepim-r1",
            "uid-rb-r1",
        ))
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Revoked));
            assert_eq!(s.reason.as_deref(), Some(reasons::ROLE_CHANGED));
            assert_eq!(
                s.message.as_deref(),
                Some(
                    "ClusterRole db-admin now allows more than when the grant was made: added \
                     get secrets; the grant ends"
                )
            );
            // What the grant was made with stays on record (not sent, so not changed).
            assert!(s.granted_rules.is_empty());
        }))
        .run(|client| {
            let ctx = caches.context(client);
            ctx.role_rules.remember(&role, Some(Observed::of(&wider)));
            reconcile(Arc::new(cached(&request)), ctx)
        })
        .await;
    outcome.result.expect("revocation succeeds");
    assert_eq!(outcome.server.writes(), 2, "revocation budget");
    let on_server = outcome.server.objects.request("r1").status.unwrap();
    assert_eq!(on_server.granted_rules, Observed::of(&pods_read()).rules);
    assert!(
        outcome.server.published("Revoked"),
        "{:?}",
        outcome.server.events
    );
}

#[tokio::test(start_paused = true)]
async fn a_role_narrowed_during_the_grant_is_recorded_and_the_grant_kept() {
    let (request, caches) = active_grant(&pods_read());
    let role = privileged_role(ROLE);
    let narrower = vec![rule(&["pods"], &["get"])];
    let outcome = Scenario::new()
        .holding(&request)
        .then(expect::request_read("r1"))
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Active));
            assert_eq!(
                narrowed_condition(&s),
                Some((
                    "True".into(),
                    reasons::ROLE_NARROWED.into(),
                    "ClusterRole db-admin now allows less than when the grant was made: removed \
                     list pods; the grant is kept"
                        .into()
                ))
            );
            // Not rewritten (not even sent: the merge patch leaves the server's copy), so a
            // widening back beyond the grant is still judged against it.
            assert!(s.granted_rules.is_empty());
            assert_eq!(
                s.role_digest.as_deref(),
                Some(Observed::of(&pods_read()).digest.as_str())
            );
        }))
        .run(|client| {
            let ctx = caches.context(client);
            ctx.role_rules
                .remember(&role, Some(Observed::of(&narrower)));
            reconcile(Arc::new(cached(&request)), ctx)
        })
        .await;
    outcome.result.expect("the grant goes on");
    assert_eq!(outcome.server.writes(), 1);
    let on_server = outcome.server.objects.request("r1").status.unwrap();
    assert_eq!(on_server.granted_rules, Observed::of(&pods_read()).rules);
    assert!(
        outcome
            .server
            .calls
            .iter()
            .all(|c| c.method != http::Method::DELETE),
        "the binding stays"
    );
    assert!(
        outcome.server.published(reasons::ROLE_NARROWED),
        "{:?}",
        outcome.server.events
    );

    // Recorded once: later passes on what was written write nothing, and the record is read
    // back once per grant (here a fresh context: a new leader), not once per pass.
    let written = outcome.server.objects.request("r1");
    let caches = caches.request(cached(&written));
    let again = Scenario::new()
        .holding(&written)
        .then(expect::request_read("r1"))
        .run(|client| async move {
            let ctx = caches.context(client);
            ctx.role_rules
                .remember(&role, Some(Observed::of(&narrower)));
            let first = reconcile(Arc::new(cached(&written)), ctx.clone()).await;
            let second = reconcile(Arc::new(cached(&written)), ctx).await;
            first.and(second)
        })
        .await;
    again.result.expect("no-op reconciles succeed");
    assert_eq!(again.server.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_role_keeps_the_grant_and_then_writes_nothing() {
    let (request, caches) = active_grant(&pods_read());
    let role = privileged_role(ROLE);
    // Split differently, same permissions: not a change.
    let same = vec![rule(&["pods"], &["get"]), rule(&["pods"], &["list"])];
    let first = Scenario::new()
        .holding(&request)
        .then(expect::status_patched("r1").with_status(|s, _| {
            assert_eq!(s.phase, Some(Phase::Active));
            assert_eq!(narrowed_condition(&s), None);
        }))
        .run(|client| {
            let ctx = caches.context(client);
            ctx.role_rules.remember(&role, Some(Observed::of(&same)));
            reconcile(Arc::new(request.clone()), ctx)
        })
        .await;
    first.result.expect("the grant goes on");
    let written = first.server.objects.request("r1");
    let caches = caches.request(written.clone());
    let again = Scenario::silent()
        .run(|client| {
            let ctx = caches.context(client);
            ctx.role_rules.remember(&role, Some(Observed::of(&same)));
            reconcile(Arc::new(written.clone()), ctx)
        })
        .await;
    again.result.expect("a no-op reconcile succeeds");
    assert_eq!(again.server.writes(), 0);
    assert!(again.server.calls.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_changed_reading_sends_exactly_the_grants_recorded_otherwise() {
    let (request, caches) = active_grant(&pods_read());
    let role = privileged_role(ROLE);
    let same = activation_request("r2")
        .approved_by(BOB)
        .active_until(truncate_to_second(now()) + secs(1800))
        .status_with(|s| s.role_digest = Some(Observed::of(&pods_read()).digest));
    let caches = caches.request(same);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let outcome = Scenario::silent()
        .run(|client| async move {
            let mut ctx = caches.context(client);
            let ctx_mut = Arc::get_mut(&mut ctx).expect("a fresh context");
            ctx_mut.role_rules = RoleRules::with_changes(tx);
            // Same rules: nobody is sent.
            role_rules::refreshed(&ctx, &role, Some(Observed::of(&pods_read())));
            let mut wider = pods_read();
            wider.push(rule(&["secrets"], &["get"]));
            role_rules::refreshed(&ctx, &role, Some(Observed::of(&wider)));
            // The same changed reading again (the 60 s re-check): not sent twice.
            role_rules::refreshed(&ctx, &role, Some(Observed::of(&wider)));
            ctx.role_rules.current(&role)
        })
        .await;
    assert!(outcome.result.is_some(), "the reading is kept");
    drop(outcome);
    let sent: Vec<ObjectRef<ActivationRequest>> = futures::StreamExt::collect(rx).await;
    // r2 recorded the old digest too, so both are sent once, on the changed reading only.
    let mut names: Vec<String> = sent.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["r1", "r2"]);
    assert_eq!(request.name_any(), "r1");
}
