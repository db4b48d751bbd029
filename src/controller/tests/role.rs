//! The PrivilegedRole reconciler.
use std::sync::Arc;
use std::time::Duration;

use crate::api::PrivilegedRole;
use crate::api::conditions::READY;
use crate::controller::fixtures::*;
use crate::controller::role::reconcile;
use crate::policy::reasons;
use kube::runtime::controller::Action;

#[tokio::test(start_paused = true)]
async fn missing_cluster_role_makes_the_role_not_ready_and_a_second_look_writes_nothing() {
    let role = privileged_role(ROLE);
    let caches = Caches::new().role(role.clone());

    let outcome = Scenario::new()
        .holding(&role)
        .then(expect::cluster_role_read(ROLE).replies_not_found())
        .then(expect::privileged_role_status_patched(ROLE).checking(|c| {
            let ready = c.body["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|x| x["type"] == READY))
                .cloned()
                .unwrap_or_else(|| panic!("no Ready condition: {:#}", c.body));
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], reasons::REFERENCED_ROLE_NOT_FOUND);
            assert_eq!(c.body["status"]["activeGrants"], 0);
        }))
        .run(|client| reconcile(Arc::new(role.clone()), caches.context(client)))
        .await;
    let action = outcome.result.expect("the role reconcile succeeds");
    assert_eq!(outcome.server.writes(), 1);
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));

    let observed: PrivilegedRole = outcome
        .server
        .objects
        .get(&format!("/apis/kubepim.io/v1alpha1/privilegedroles/{ROLE}"))
        .expect("the server holds the role");
    let again = Scenario::new()
        .then(expect::cluster_role_read(ROLE).replies_not_found())
        .run(|client| reconcile(Arc::new(observed), caches.context(client)))
        .await;
    again.result.expect("the role reconcile succeeds");
    assert_eq!(
        again.server.writes(),
        0,
        "an unchanged status is not written again"
    );
}

fn cluster_role(name: &str, rules: serde_json::Value) -> k8s_openapi::api::rbac::v1::ClusterRole {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "uid": format!("uid-cr-{name}"), "resourceVersion": "5"},
        "rules": rules,
    }))
    .expect("a valid ClusterRole")
}

fn condition(body: &serde_json::Value, type_: &str) -> serde_json::Value {
    body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition: {body:#}"))
}

#[tokio::test(start_paused = true)]
async fn a_role_the_operator_may_not_bind_is_not_ready_and_says_which_value_to_add() {
    use crate::api::conditions::RISK_ASSESSED;
    let name = "cluster-admin";
    let role = privileged_role(name);
    let caches = Caches::new().role(role.clone());
    let target = cluster_role(
        name,
        serde_json::json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    );

    let check_status = |c: &crate::controller::fixtures::Call| {
        let ready = condition(&c.body, READY);
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], reasons::NOT_BINDABLE);
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("bind ClusterRole cluster-admin in namespace payments")
                && message.contains("add \"cluster-admin\" to bindableRoles.clusterRoles"),
            "{message}"
        );
        let risk = condition(&c.body, RISK_ASSESSED);
        assert_eq!(risk["status"], "True");
        assert_eq!(risk["reason"], reasons::RISK_ELEVATED);
        // Granted in `payments` only: no cluster-wide flags.
        assert_eq!(
            c.body["status"]["riskFlags"],
            serde_json::json!([
                "Bind",
                "Escalate",
                "Impersonate",
                "RBACWrite",
                "KubepimWrite"
            ])
        );
        // The scan's field is never written here.
        assert!(c.body["status"].get("unmanagedBindings").is_none());
    };
    let outcome = Scenario::new()
        .holding(&role)
        .holding(&target)
        .then(expect::cluster_role_read(name))
        // No cluster-wide bind; the role is granted by RoleBindings, so `payments` is asked too.
        .then(expect::bind_reviewed("clusterroles", name, None, false))
        .then(expect::bind_reviewed(
            "clusterroles",
            name,
            Some(NAMESPACE),
            false,
        ))
        .then(expect::privileged_role_status_patched(name).checking(check_status))
        // The reconcile our own write triggers: the answer is remembered, not asked again.
        .then(expect::cluster_role_read(name))
        .then(expect::privileged_role_status_patched(name))
        .run(|client| async move {
            let ctx = caches.context(client);
            let first = reconcile(Arc::new(role.clone()), ctx.clone()).await;
            let second = reconcile(Arc::new(role), ctx).await;
            [first, second]
        })
        .await;
    for action in outcome.result {
        let action = action.expect("the role reconcile succeeds");
        assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_bindable_read_only_role_is_ready_with_low_risk_and_settles() {
    use crate::api::conditions::RISK_ASSESSED;
    let role = privileged_role(ROLE).cluster_wide();
    let caches = Caches::new().role(role.clone());
    let target = cluster_role(
        ROLE,
        serde_json::json!([{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "list"]}]),
    );
    let outcome = Scenario::new()
        .holding(&role)
        .holding(&target)
        .then(expect::cluster_role_read(ROLE))
        .then(expect::bind_reviewed("clusterroles", ROLE, None, true))
        .then(expect::privileged_role_status_patched(ROLE).checking(|c| {
            let ready = condition(&c.body, READY);
            assert_eq!(
                (ready["status"].as_str(), ready["reason"].as_str()),
                (Some("True"), Some(reasons::ROLE_BINDABLE))
            );
            let risk = condition(&c.body, RISK_ASSESSED);
            // Secrets read cluster-wide.
            assert_eq!(risk["reason"], reasons::RISK_ELEVATED);
            assert_eq!(
                c.body["status"]["riskFlags"],
                serde_json::json!(["ClusterSecretsRead"])
            );
        }))
        .run(|client| reconcile(Arc::new(role.clone()), caches.context(client)))
        .await;
    outcome.result.expect("the role reconcile succeeds");
    assert_eq!(persisted_writes(&outcome.server), 1);

    // As the server holds it now, with the scan's field set: nothing to write.
    let mut observed: PrivilegedRole = outcome
        .server
        .objects
        .get(&format!("/apis/kubepim.io/v1alpha1/privilegedroles/{ROLE}"))
        .expect("the server holds the role");
    observed
        .status
        .as_mut()
        .expect("a status")
        .unmanaged_bindings = Some(crate::api::UnmanagedBindings {
        count: 2,
        ..Default::default()
    });
    let again = Scenario::new()
        .holding(&target)
        .then(expect::cluster_role_read(ROLE))
        .then(expect::bind_reviewed("clusterroles", ROLE, None, true))
        .run(|client| reconcile(Arc::new(observed), caches.context(client)))
        .await;
    again.result.expect("the role reconcile succeeds");
    assert_eq!(
        persisted_writes(&again.server),
        0,
        "an unchanged status is not written again"
    );
}

/// Writes that change something (an access review is a POST that stores nothing).
fn persisted_writes(server: &Transcript) -> usize {
    server
        .calls
        .iter()
        .filter(|c| c.is_write() && !c.path.ends_with("accessreviews"))
        .count()
}

#[tokio::test(start_paused = true)]
async fn the_grant_count_follows_the_requests_and_a_settled_pass_writes_nothing() {
    use crate::api::Phase;
    let role = privileged_role(ROLE).cluster_wide();
    let target = cluster_role(
        ROLE,
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
    );
    // The status as the pass during two grants wrote it; both grants have ended since.
    let first = Scenario::new()
        .holding(&role)
        .holding(&target)
        .then(expect::cluster_role_read(ROLE))
        .then(expect::bind_reviewed("clusterroles", ROLE, None, true))
        .then(expect::privileged_role_status_patched(ROLE))
        .run(|client| {
            let caches = Caches::new()
                .role(role.clone())
                .request(activation_request("a").active_until(now() + secs(60)))
                .request(activation_request("b").active_until(now() + secs(90)));
            reconcile(Arc::new(role.clone()), caches.context(client))
        })
        .await;
    first.result.expect("the role reconcile succeeds");
    let during: PrivilegedRole = first
        .server
        .objects
        .get(&format!("/apis/kubepim.io/v1alpha1/privilegedroles/{ROLE}"))
        .expect("the server holds the role");
    assert_eq!(during.status.as_ref().map(|s| s.active_grants), Some(2));

    let ended = Caches::new()
        .role(during.clone())
        .request(
            activation_request("a")
                .active_until(now())
                .in_phase(Phase::Expired),
        )
        .request(
            activation_request("b")
                .active_until(now())
                .in_phase(Phase::Expired),
        );
    let after = Scenario::new()
        .holding(&during)
        .holding(&target)
        .then(expect::cluster_role_read(ROLE))
        .then(expect::bind_reviewed("clusterroles", ROLE, None, true))
        .then(
            expect::privileged_role_status_patched(ROLE)
                .checking(|c| assert_eq!(c.body["status"]["activeGrants"], 0)),
        )
        .run(|client| reconcile(Arc::new(during), ended.context(client)))
        .await;
    after.result.expect("the role reconcile succeeds");
    assert_eq!(persisted_writes(&after.server), 1);

    // Settled: the next pass (the 60 s re-check) on what the server holds writes nothing.
    let settled: PrivilegedRole = after
        .server
        .objects
        .get(&format!("/apis/kubepim.io/v1alpha1/privilegedroles/{ROLE}"))
        .expect("the server holds the role");
    let again = Scenario::new()
        .holding(&target)
        .then(expect::cluster_role_read(ROLE))
        .then(expect::bind_reviewed("clusterroles", ROLE, None, true))
        .run(|client| {
            reconcile(
                Arc::new(settled),
                ended.context_at(client, now() + secs(60)),
            )
        })
        .await;
    again.result.expect("the role reconcile succeeds");
    assert_eq!(
        persisted_writes(&again.server),
        0,
        "a settled role is not written again"
    );
}

#[test]
fn a_request_refreshes_its_role_once_activated() {
    use crate::api::Phase;
    use crate::controller::role::affected_by;
    use kube::runtime::reflector::ObjectRef;
    let pending = activation_request("r").in_phase(Phase::Pending);
    assert_eq!(affected_by(&pending), None, "not counted before activation");
    let active = activation_request("r").active_until(now() + secs(60));
    assert_eq!(
        affected_by(&active),
        Some(ObjectRef::<PrivilegedRole>::new(ROLE))
    );
    // Its end is what brings `activeGrants` down.
    let expired = active.in_phase(Phase::Expired);
    assert_eq!(
        affected_by(&expired),
        Some(ObjectRef::<PrivilegedRole>::new(ROLE))
    );
}
