//! End-to-end: role integrity on a real API server, with the chart's admission policies and RBAC
//! and the operator as the chart's ServiceAccount. Alice holds an approved grant of a ClusterRole
//! in one namespace. The admin removes a verb from the ClusterRole: the grant stays Active and
//! the narrowing is recorded (positive control). Nobody but the operator may rewrite the rules
//! recorded at activation (negative). The admin then adds `get secrets`: the grant ends with
//! reason `RoleChanged`, the message names the added rule, the binding is gone. The same for a
//! namespaced Role, where a same-named Role in another namespace changing does nothing.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_integrity`
#[allow(dead_code)]
#[path = "support/security.rs"]
mod security;
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleRef};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kubepim::api::conditions::ROLE_NARROWED;
use kubepim::api::{ActivationRequest, Phase, SubjectRef};
use kubepim::policy::reasons;
use kubepim::runtime::OperatorSettings;
use serde_json::json;

use security::{OPERATOR_SA, RELEASE_NAMESPACE};
use support::Env;
use support::envtest::{NAMESPACE_READER, POD_READER, SECRET_READER, groups_of};
use support::fixtures::{self, submit};
use support::wait::{self, describe};

const POLICY_TIMEOUT: Duration = Duration::from_secs(30);

fn rule(resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The admin replaces the pod-reader ClusterRole's rules.
async fn set_rules(env: &Env, rules: Vec<PolicyRule>) {
    Api::<ClusterRole>::all(env.admin())
        .patch(
            POD_READER,
            &PatchParams::default(),
            &Patch::Merge(json!({ "rules": rules })),
        )
        .await
        .expect("the admin changes the ClusterRole");
}

/// The chart's security layer, bob bound to `kubepim-approver`, and the operator running as the
/// chart's ServiceAccount. `None` (said why) when this machine cannot run it.
async fn cluster(test: &str) -> Option<Env> {
    let env = Env::isolated(test).await?;
    install(&env, json!([])).await.then_some(env)
}

/// [`cluster`] on `env`, the operator also allowed to bind `roles` (`bindableRoles.roles`).
/// False (said why) when the chart cannot be rendered here.
async fn install(env: &Env, roles: serde_json::Value) -> bool {
    let values = json!({
        "admission": {"policies": {"enabled": true}, "rbacApproval": true},
        "bindableRoles": {"clusterRoles": [POD_READER, NAMESPACE_READER], "roles": roles},
    });
    let Some(_release) = security::install(env, values)
        .await
        .expect("installing the chart's policies")
    else {
        eprintln!(
            "SKIPPED: e2e_integrity: python3 module helm_python missing; pip install -r tests/chart/requirements.txt"
        );
        return false;
    };
    let approvers = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("kubepim-e2e-approvers".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "kubepim-approver".into(),
        },
        subjects: Some(vec![fixtures::user_subject("bob")]),
    };
    Api::<ClusterRoleBinding>::all(env.admin())
        .create(&PostParams::default(), &approvers)
        .await
        .expect("binding the approvers");
    // The policies and bob's RBAC take effect through the API server's informers.
    let alice: Api<ActivationRequest> = Api::all(env.client("alice"));
    let mut forged = fixtures::request(env, "canary", "alice", "none", &[], "10m");
    forged.spec.requester = Some(env.requester("bob"));
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    security::eventually("the request-create policy", POLICY_TIMEOUT, || async {
        match alice.create(&dry, &forged).await {
            Err(kube::Error::Api(e)) if e.message.contains("ValidatingAdmissionPolicy") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let admin = env.admin();
    let target = ("kubepim.io", "privilegedroles", Some("any"), None);
    security::eventually("bob's approver role", POLICY_TIMEOUT, || async {
        if security::allowed(&admin, "bob", &groups_of("bob"), target, "approve").await {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    let config = security::service_account_config(env, RELEASE_NAMESPACE, OPERATOR_SA)
        .await
        .expect("operator identity");
    env.start_operator_with(
        OperatorSettings {
            concurrency: 4,
            ..OperatorSettings::default()
        },
        config,
    );
    true
}

async fn get(env: &Env, name: &str) -> ActivationRequest {
    Api::<ActivationRequest>::all(env.admin())
        .get(name)
        .await
        .expect("read the request")
}

fn narrowed(ar: &ActivationRequest) -> Option<(String, String)> {
    ar.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == ROLE_NARROWED)
            .map(|c| (c.status.clone(), c.message.clone()))
    })
}

/// `user` writes `field` of the status through /status.
async fn patch_status_field(
    env: &Env,
    user: &str,
    name: &str,
    field: &str,
    value: serde_json::Value,
) -> Result<ActivationRequest, kube::Error> {
    Api::<ActivationRequest>::all(env.client(user))
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { field: value } })),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_widened_mid_grant_is_revoked_with_the_diff_narrowed_is_kept() {
    let Some(env) = cluster("integrity").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    let pr = fixtures::with_approvers(fixtures::pod_reader(&env, "pods", &[&ns]), 1, &["bob"], &[]);
    let role = fixtures::create_role(&env, &pr).await.name_any();
    let el = fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;

    let ar = fixtures::request(&env, "grant", "alice", &role, &[&ns], "30m");
    let name = submit(&env, "alice", &ar).await.name_any();
    fixtures::approve(&env, "bob", &name).await;
    let active = wait::phase(&env, &name, Phase::Active).await;
    let status = active.status.clone().expect("status");
    // What the grant was made with is on record (written by the operator: positive control).
    let digest = status
        .role_digest
        .clone()
        .expect("roleDigest recorded at activation");
    assert_eq!(digest.len(), 64, "{}", describe(&active));
    assert_eq!(status.granted_rules.len(), 1, "{:?}", status.granted_rules);
    assert_eq!(status.granted_rules[0].resources, ["pods"]);
    assert_eq!(status.granted_rules[0].verbs, ["get", "list", "watch"]);
    assert!(fixtures::can(&env, "alice", "list", "pods", Some(&ns)).await);

    // Narrowed: the grant is kept, the narrowing recorded.
    set_rules(&env, vec![rule(&["pods"], &["get", "list"])]).await;
    let seen = wait::until(&env, "RoleNarrowed on the grant", wait::TIMEOUT, || async {
        let ar = get(&env, &name).await;
        match narrowed(&ar) {
            Some((s, message)) if s == "True" => Ok((ar.clone(), message)),
            other => Err(format!("{other:?} {}", describe(&ar))),
        }
    })
    .await;
    let (kept, message) = seen;
    assert_eq!(kept.phase(), Some(Phase::Active), "{}", describe(&kept));
    assert!(message.contains("removed watch pods"), "{message}");
    let recorded = kept.status.clone().expect("status");
    assert_eq!(recorded.role_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        recorded.granted_rules, status.granted_rules,
        "never rewritten"
    );
    assert_eq!(fixtures::role_bindings_of(&env, &name).await.len(), 1);
    assert!(fixtures::can(&env, "alice", "list", "pods", Some(&ns)).await);

    // Negative: neither the requester nor an approver may rewrite the record (a wider record
    // would let a later widening pass), nor clear it.
    let wide = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    for user in ["alice", "bob"] {
        for (field, value) in [
            ("grantedRules", wide.clone()),
            ("roleDigest", json!("0".repeat(64))),
            ("roleDigest", serde_json::Value::Null),
        ] {
            match patch_status_field(&env, user, &name, field, value.clone()).await {
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => assert!(
                    e.message.contains(&format!(
                        "only the kubepim controller may set status.{field}"
                    )),
                    "{user} setting {field} to {value}: {}",
                    e.message
                ),
                other => panic!("{user} setting status.{field} to {value}: {other:?}"),
            }
        }
    }
    let untouched = get(&env, &name).await.status.expect("status");
    assert_eq!(untouched.role_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(untouched.granted_rules, status.granted_rules);

    // Widened: the grant ends, naming what was added; the binding is gone.
    let widened_at = Instant::now();
    set_rules(
        &env,
        vec![
            rule(&["pods"], &["get", "list"]),
            rule(&["secrets"], &["get"]),
        ],
    )
    .await;
    let revoked = wait::phase(&env, &name, Phase::Revoked).await;
    let detected = widened_at.elapsed();
    let status = revoked.status.clone().expect("status");
    assert_eq!(
        status.reason.as_deref(),
        Some(reasons::ROLE_CHANGED),
        "{}",
        describe(&revoked)
    );
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("added get secrets") && message.contains(POD_READER),
        "{message}"
    );
    wait::until(&env, "the binding gone", wait::TIMEOUT, || async {
        match fixtures::role_bindings_of(&env, &name).await.len() {
            0 => Ok(()),
            n => Err(format!("{n} bindings")),
        }
    })
    .await;
    assert!(!fixtures::can(&env, "alice", "get", "secrets", Some(&ns)).await);
    eprintln!(
        "role integrity: ClusterRole widened -> request Revoked (RoleChanged) observed after {} ms \
         (polling every 50 ms)",
        detected.as_millis()
    );
}

/// A namespaced Role: the watch on Roles reaches the grant, by namespace and name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_role_widened_mid_grant_is_revoked() {
    let Some(env) = Env::isolated("integrity-role").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    if !install(&env, json!([{"namespace": ns, "name": SECRET_READER}])).await {
        return;
    }
    fixtures::secret_reader_role(&env, &ns).await;
    let pr = fixtures::secret_reader(&env, "secrets", &ns);
    let role = fixtures::create_role(&env, &pr).await.name_any();
    let el = fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;
    let ar = fixtures::request(&env, "grant", "alice", &role, &[&ns], "30m");
    let name = submit(&env, "alice", &ar).await.name_any();
    let active = wait::phase(&env, &name, Phase::Active).await;
    let recorded = active.status.clone().expect("status");
    assert_eq!(
        recorded.granted_rules[0].resources,
        ["secrets"],
        "{}",
        describe(&active)
    );
    assert!(fixtures::can(&env, "alice", "get", "secrets", Some(&ns)).await);

    // Another Role of the same name elsewhere is not the granted one: nothing happens.
    let elsewhere = env.namespace("elsewhere").await;
    fixtures::secret_reader_role(&env, &elsewhere).await;
    Api::<Role>::namespaced(env.admin(), &elsewhere)
        .patch(
            SECRET_READER,
            &PatchParams::default(),
            &Patch::Merge(json!({ "rules": [rule(&["secrets"], &["*"])] })),
        )
        .await
        .expect("the admin changes the other Role");
    wait::stays(&env, &name, Some(Phase::Active), Duration::from_secs(2)).await;

    Api::<Role>::namespaced(env.admin(), &ns)
        .patch(
            SECRET_READER,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "rules": [rule(&["secrets"], &["get", "list"]), rule(&["configmaps"], &["get"])]
            })),
        )
        .await
        .expect("the admin widens the granted Role");
    let revoked = wait::phase(&env, &name, Phase::Revoked).await;
    let status = revoked.status.clone().expect("status");
    assert_eq!(status.reason.as_deref(), Some(reasons::ROLE_CHANGED));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains(&format!("Role {ns}/{SECRET_READER}"))
            && message.contains("added get configmaps"),
        "{message}"
    );
    wait::until(&env, "the binding gone", wait::TIMEOUT, || async {
        match fixtures::role_bindings_of(&env, &name).await.len() {
            0 => Ok(()),
            n => Err(format!("{n} bindings")),
        }
    })
    .await;
}
