//! End-to-end, layer 4: the security contract's negative matrix (SECURITY.md),
//! enforced by a real API server with the chart's admission policies and RBAC.
//!
//! The chart's `rbac.yaml`, `admission-policies.yaml` and `binding-policies.yaml` are rendered with
//! real Helm (helm-python-sdk, `import helm_python`, called through `python3`) and applied as
//! `helm install` would create them. The operator runs as the ServiceAccount the chart binds,
//! `system:serviceaccount:kubepim-e2e-system:kubepim`, so the admission policies see the identity
//! they see in a cluster. Without a control plane every test says once that it is skipped; with
//! one but without helm_python, likewise.
//!
//! Every row is refused by the API server and has a positive control. Where it is refused:
//!
//! | row | what | mechanism | test |
//! |-----|------|-----------|------|
//! | 1 | request in another's name, groups, uid or extra | VAP `request-create` | `row01_…` |
//! | 2 | request created with a status | API server: the /status subresource drops it on CREATE (a VAP never sees it) | `row02_…` |
//! | 3 | spec change | CRD CEL (`self == oldSelf`) | `row03_…` |
//! | 4 | approve own request | VAP `request-status` | `row04_…` |
//! | 5 | approve as a ServiceAccount | VAP `request-status` | `row05_…` |
//! | 6 | approve without being an approver | VAP `request-status` (`admission.rbacApproval`: verb `approve` on `privilegedroles/<role>`); otherwise the controller does not count it | `row06_…`, `controller_…` |
//! | 7 | approval in another's name or groups | VAP `request-status` | `row07_…` |
//! | 8 | remove, reorder, edit approvals; add two | VAP `request-status` | `row08_…` |
//! | 9 | controller fields as a non-controller | VAP `request-status` | `row09_…` |
//! | 10 | approve after Denied, Expired, cancel | VAP `request-status` | `row10_…` |
//! | 11 | the controller adding an approval | VAP `request-status` (controller = verb `manage`) | `row11_…` |
//! | 12 | cancel, change or delete another's request | VAP `request-update`, `request-delete` | `row12_…` |
//! | 13 | not eligible, outside the window, namespace, too long | the controller: Denied with the reason, no binding (the webhook adds admission-time feedback) | `controller_…` |
//! | 14 | write PrivilegedRole or Eligibility as a user | RBAC (only `kubepim-policy-admin`, never aggregated) | `row14_…` |
//! | 15 | binding to a PrivilegedRole's role outside kubepim | VAP `standing-privilege` (`standingPrivilege.prevent`) | `row15_…`, `controller_…` (off) |
//! | 16 | operator: `system:` subject, two subjects, unmanaged delete | VAP `operator-bindings`; RBAC for roles it may not bind | `row16_…` |
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_security`
#[path = "support/security.rs"]
mod security;
mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Once;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef as RbacRoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubepim::api::{
    ActivationRequest, ActivationRequestStatus, Approval, Decision, Eligibility, Phase,
    PrivilegedRole, SubjectRef, labels,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use security::{OPERATOR_SA, RELEASE_NAMESPACE};
use support::Env;
use support::envtest::{
    ASSETS_ENV, KUBECONFIG_ENV, NAMESPACE_READER, POD_READER, SECRET_READER, groups_of,
};
use support::fixtures;

const RBAC: &str = "rbac.authorization.k8s.io";
/// Namespace with the Role `SECRET_READER` listed in `bindableRoles.roles`.
const APPS_NAMESPACE: &str = "kubepim-e2e-apps";
/// The harness's `operator` user is in this group: the break-glass identity here.
const BREAK_GLASS_GROUP: &str = "kubepim-e2e:operators";
const POLICY_TIMEOUT: Duration = Duration::from_secs(30);
const NO_CLUSTER: &str = "SKIPPED: e2e_security: set KUBEBUILDER_ASSETS to a directory with etcd and \
     kube-apiserver (or KUBEPIM_E2E_KUBECONFIG) to run the security matrix";
const NO_HELM: &str = "SKIPPED: e2e_security: python3 module helm_python missing; \
     pip install helm-python-sdk to render the chart";

// ------------------------------------------------------------------------------------------------
// Set-up: one control plane and one release for the tests of this file
// ------------------------------------------------------------------------------------------------

static SKIP: Once = Once::new();

/// One line for the whole binary, however many tests skip.
fn skip(line: &str) {
    SKIP.call_once(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

fn cluster_configured() -> bool {
    [ASSETS_ENV, KUBECONFIG_ENV]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// The values of the shared release: every optional policy on.
fn shared_values() -> Value {
    json!({
        "admission": {"policies": {"enabled": true}, "rbacApproval": true},
        "standingPrivilege": {"prevent": true},
        "breakGlass": {"users": [], "groups": [BREAK_GLASS_GROUP]},
        "bindableRoles": {
            "clusterRoles": [POD_READER, NAMESPACE_READER],
            "roles": [{"namespace": APPS_NAMESPACE, "name": SECRET_READER}],
        },
    })
}

/// The rendered documents of the shared release, once per test binary; `None`: skip.
static SHARED: OnceCell<Option<Vec<Value>>> = OnceCell::const_new();

async fn shared(test: &str) -> Option<(Env, Vec<Value>)> {
    if !cluster_configured() {
        skip(NO_CLUSTER);
        return None;
    }
    let env = Env::shared(test).await?;
    let docs = SHARED
        .get_or_init(|| async {
            install_shared(&env)
                .await
                .unwrap_or_else(|e| panic!("installing the chart's security layer: {e:#}"))
        })
        .await
        .clone();
    match docs {
        Some(docs) => Some((env, docs)),
        None => {
            skip(NO_HELM);
            None
        }
    }
}

async fn install_shared(env: &Env) -> anyhow::Result<Option<Vec<Value>>> {
    let admin = env.admin();
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(APPS_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    // The Role of `bindableRoles.roles` (applied: the namespace outlives a test process when
    // the cluster is an external one).
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": SECRET_READER, "namespace": APPS_NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
    });
    security::apply(&admin, &[role]).await?;
    let Some(release) = security::install(env, shared_values()).await? else {
        return Ok(None);
    };
    bind_approvers(env).await?;
    wait_enforced(env, &release.docs).await?;
    Ok(Some(release.docs))
}

/// Bob and carol approve (the chart's approver role); alice and mallory do not.
async fn bind_approvers(env: &Env) -> anyhow::Result<()> {
    let admin = env.admin();
    let approvers = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("kubepim-e2e-approvers".into()),
            ..Default::default()
        },
        role_ref: cluster_role_ref("kubepim-approver"),
        subjects: Some(vec![user("bob"), user("carol")]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            "kubepim-e2e-approvers",
            &PatchParams::apply("kubepim-e2e").force(),
            &Patch::Apply(&approvers),
        )
        .await?;
    Ok(())
}

/// Waits until every policy of the release refuses what it should, and the operator's and the
/// approvers' RBAC is in effect (each through the API server's informers).
async fn wait_enforced(env: &Env, docs: &[Value]) -> anyhow::Result<()> {
    let policies = security::policy_names(docs);
    let admin = env.admin();
    let operator = security::service_account_client(env, RELEASE_NAMESPACE, OPERATOR_SA).await;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let dry_patch = PatchParams {
        dry_run: true,
        ..Default::default()
    };

    // A real request to aim the update, status and delete canaries at.
    let canary = env.name("canary");
    let alice: Api<ActivationRequest> = Api::all(env.client("alice"));
    let mallory: Api<ActivationRequest> = Api::all(env.client("mallory"));
    let request = fixtures::request(env, "canary", "alice", "canary", &[], "10m");
    security::eventually("creating the canary request", POLICY_TIMEOUT, || async {
        match alice.create(&PostParams::default(), &request).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;

    let by = |policy: &str| format!("ValidatingAdmissionPolicy '{policy}'");
    for policy in &policies {
        let needle = by(policy);
        let refused = |r: Result<(), kube::Error>| match r {
            Err(kube::Error::Api(e)) if e.message.contains(&needle) => Ok(()),
            Err(e) => Err(e.to_string()),
            Ok(()) => Err("accepted".to_string()),
        };
        let what = format!("policy {policy}");
        match policy.trim_start_matches("kubepim-") {
            "request-create" => {
                let mut r = fixtures::request(env, "canary-bob", "alice", "canary", &[], "10m");
                r.spec.requester = Some(env.requester("bob"));
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(alice.create(&dry, &r).await.map(drop))
                })
                .await?
            }
            "request-status" => {
                let patch = json_patch(
                    json!([{"op": "add", "path": "/status", "value": {"phase": "Active"}}]),
                );
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(
                        mallory
                            .patch_status(&canary, &dry_patch, &patch)
                            .await
                            .map(drop),
                    )
                })
                .await?
            }
            "request-update" => {
                let patch = Patch::Merge(json!({"spec": {"cancel": true}}));
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(mallory.patch(&canary, &dry_patch, &patch).await.map(drop))
                })
                .await?
            }
            "request-delete" => {
                let dp = DeleteParams {
                    dry_run: true,
                    ..Default::default()
                };
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(mallory.delete(&canary, &dp).await.map(drop))
                })
                .await?
            }
            "operator-bindings" => {
                let b = cluster_role_binding(env, "canary", POD_READER, vec![user("alice")], None);
                let api: Api<ClusterRoleBinding> = Api::all(operator.clone());
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(api.create(&dry, &b).await.map(drop))
                })
                .await?
            }
            "standing-privilege" => {
                let b = cluster_role_binding(env, "canary", POD_READER, vec![user("alice")], None);
                let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(api.create(&dry, &b).await.map(drop))
                })
                .await?
            }
            "managed-label" => {
                let b = cluster_role_binding(env, "canary", "view", vec![user("alice")], Some("x"));
                let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(api.create(&dry, &b).await.map(drop))
                })
                .await?
            }
            "protect-namespace" => {
                let probe = security::self_protection_probe(env).await?;
                let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
                    Api::namespaced(probe, RELEASE_NAMESPACE);
                let cm = k8s_openapi::api::core::v1::ConfigMap {
                    metadata: env.meta("canary"),
                    ..Default::default()
                };
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(api.create(&dry, &cm).await.map(drop))
                })
                .await?
            }
            "protect-cluster" => {
                let probe = security::self_protection_probe(env).await?;
                let api: Api<ClusterRole> = Api::all(probe);
                let role = ClusterRole {
                    metadata: ObjectMeta {
                        name: Some("kubepim-canary".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(api.create(&dry, &role).await.map(drop))
                })
                .await?
            }
            "review-status" => {
                // The controller (the admin, allowed every verb) adding a decision.
                let name = env.name("canary-review");
                let review = json!({"apiVersion": "kubepim.io/v1alpha1", "kind": "AccessReview",
                    "metadata": {"name": name},
                    "spec": {"selector": {"all": true}, "reviewers": {"users": ["bob"]}, "duration": "1h"}});
                let reviews: Api<kubepim::api::AccessReview> = Api::all(admin.clone());
                let review: kubepim::api::AccessReview = serde_json::from_value(review)?;
                match reviews.create(&PostParams::default(), &review).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                let patch = Patch::Merge(json!({"status": {"decisions": [
                    {"item": "x/User/alice", "decision": "Keep", "reviewer": "admin"}]}}));
                security::eventually(&what, POLICY_TIMEOUT, || async {
                    refused(
                        reviews
                            .patch_status(&name, &dry_patch, &patch)
                            .await
                            .map(drop),
                    )
                })
                .await?
            }
            other => anyhow::bail!("no canary for policy {other}"),
        }
    }
    // The controller is recognised by `manage` (its ClusterRoleBinding is in effect).
    let as_controller: Api<ActivationRequest> = Api::all(operator.clone());
    let phase =
        json_patch(json!([{"op": "add", "path": "/status", "value": {"phase": "Pending"}}]));
    security::eventually("the operator's RBAC", POLICY_TIMEOUT, || async {
        as_controller
            .patch_status(&canary, &dry_patch, &phase)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await?;
    for approver in ["bob", "carol"] {
        let role = ("kubepim.io", "privilegedroles", Some("canary"), None);
        security::eventually(
            &format!("{approver}'s approver role"),
            POLICY_TIMEOUT,
            || async {
                if security::allowed(&admin, approver, &groups_of(approver), role, "approve").await
                {
                    Ok(())
                } else {
                    Err("not allowed yet".into())
                }
            },
        )
        .await?;
    }
    alice.delete(&canary, &DeleteParams::default()).await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// Outcomes of the steps of one test, reported together.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
}

impl Checks {
    /// Must be refused (403/422) with `needle` in the message.
    fn refused<T>(&mut self, what: &str, result: Result<T, kube::Error>, needle: &str) {
        match result {
            Err(kube::Error::Api(e))
                if (e.code == 403 || e.code == 422) && e.message.contains(needle) => {}
            Err(kube::Error::Api(e)) => self.failures.push(format!(
                "{what}: refused ({} {}) but without {needle:?}: {}",
                e.code, e.reason, e.message
            )),
            Err(e) => self.failures.push(format!("{what}: unexpected error: {e}")),
            Ok(_) => self.failures.push(format!(
                "{what}: ACCEPTED, expected a refusal naming {needle:?}"
            )),
        }
    }

    /// Must be refused by the admission policy `policy` (suffix of `kubepim-…`) with `needle`.
    fn refused_by<T>(
        &mut self,
        policy: &str,
        what: &str,
        result: Result<T, kube::Error>,
        needle: &str,
    ) {
        let by = format!("ValidatingAdmissionPolicy 'kubepim-{policy}'");
        match &result {
            Err(kube::Error::Api(e)) if !e.message.contains(&by) => self.failures.push(format!(
                "{what}: refused ({} {}) but not by {by}: {}",
                e.code, e.reason, e.message
            )),
            _ => self.refused(what, result, needle),
        }
    }

    /// Refused by one of `policies` (several can refuse the same write; the API server names the
    /// first it evaluated), its message containing `needle`.
    fn refused_by_any<T>(
        &mut self,
        policies: &[&str],
        what: &str,
        result: Result<T, kube::Error>,
        needle: &str,
    ) {
        match &result {
            Err(kube::Error::Api(e))
                if !policies.iter().any(|p| {
                    e.message
                        .contains(&format!("ValidatingAdmissionPolicy 'kubepim-{p}'"))
                }) =>
            {
                self.failures.push(format!(
                    "{what}: refused ({} {}) but not by any of {policies:?}: {}",
                    e.code, e.reason, e.message
                ))
            }
            _ => self.refused(what, result, needle),
        }
    }

    /// A positive control: must succeed.
    fn accepted<T>(&mut self, what: &str, result: Result<T, kube::Error>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.failures
                    .push(format!("{what}: REFUSED, expected success: {e}"));
                None
            }
        }
    }

    fn check(&mut self, what: &str, ok: bool, seen: impl std::fmt::Display) {
        if !ok {
            self.failures.push(format!("{what}: {seen}"));
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} check(s) failed:\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

fn json_patch(ops: Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops).expect("a JSON patch"))
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC.into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

fn group(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC.into()),
        kind: "Group".into(),
        name: name.into(),
        namespace: None,
    }
}

fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        api_group: Some(String::new()),
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(namespace.into()),
    }
}

fn cluster_role_ref(name: &str) -> RbacRoleRef {
    RbacRoleRef {
        api_group: RBAC.into(),
        kind: "ClusterRole".into(),
        name: name.into(),
    }
}

/// Metadata of a binding; with `request`, the labels and annotations the operator writes.
fn binding_meta(env: &Env, base: &str, request: Option<&str>) -> ObjectMeta {
    let mut meta = env.meta(base);
    if let Some(request) = request {
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
        labels.insert(labels::REQUEST.into(), request.into());
        labels.insert(labels::ROLE.into(), "e2e".into());
        meta.annotations = Some(BTreeMap::from([
            (labels::REQUEST.into(), request.into()),
            (labels::REQUEST_UID.into(), "00000000-e2e".into()),
            (labels::EXPIRES_AT.into(), "2030-01-01T00:00:00Z".into()),
        ]));
    }
    meta
}

fn cluster_role_binding(
    env: &Env,
    base: &str,
    role: &str,
    subjects: Vec<Subject>,
    request: Option<&str>,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: binding_meta(env, base, request),
        role_ref: cluster_role_ref(role),
        subjects: Some(subjects),
    }
}

fn role_binding(
    env: &Env,
    base: &str,
    namespace: &str,
    role_ref: RbacRoleRef,
    subjects: Vec<Subject>,
    request: Option<&str>,
) -> RoleBinding {
    let mut metadata = binding_meta(env, base, request);
    metadata.namespace = Some(namespace.into());
    RoleBinding {
        metadata,
        role_ref,
        subjects: Some(subjects),
    }
}

/// An approval entry for `user`, as the API server reports their identity.
fn entry(user: &str) -> Value {
    fixtures::approval_entry(user, Decision::Approved, "ok")
}

/// The JSON patch that appends `entry` to `status.approvals` of `current` (creating the list or
/// the status when absent).
fn append(current: &ActivationRequest, entry: Value) -> Patch<()> {
    let status = current.status.as_ref();
    if status.is_some_and(|s| !s.approvals.is_empty()) {
        json_patch(json!([{"op": "add", "path": "/status/approvals/-", "value": entry}]))
    } else if status.is_some() {
        json_patch(json!([{"op": "add", "path": "/status/approvals", "value": [entry]}]))
    } else {
        json_patch(json!([{"op": "add", "path": "/status", "value": {"approvals": [entry]}}]))
    }
}

/// `client` appends `entry` to the request's approvals (reading it first as admin).
async fn approve_as(
    env: &Env,
    client: &Client,
    name: &str,
    entry: Value,
) -> Result<ActivationRequest, kube::Error> {
    let current = Api::<ActivationRequest>::all(env.admin()).get(name).await?;
    Api::<ActivationRequest>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &append(&current, entry))
        .await
}

/// `user` appends their own approval.
async fn approve(env: &Env, user: &str, name: &str) -> Result<ActivationRequest, kube::Error> {
    approve_as(env, &env.client(user), name, entry(user)).await
}

/// Alice's request for `role` (no PrivilegedRole needed: no operator runs on the shared plane).
async fn alice_request(env: &Env, c: &mut Checks, base: &str) -> String {
    let role = env.name("role");
    let request = fixtures::request(env, base, "alice", &role, &[], "30m");
    let created = Api::<ActivationRequest>::all(env.client("alice"))
        .create(&PostParams::default(), &request)
        .await;
    c.accepted(&format!("alice creating {base}"), created)
        .map(|r| r.name_any())
        .unwrap_or_else(|| env.name(base))
}

/// Status written by the controller (the operator's ServiceAccount, allowed `manage`).
async fn controller_sets(
    controller: &Client,
    name: &str,
    status: Value,
) -> Result<ActivationRequest, kube::Error> {
    Api::<ActivationRequest>::all(controller.clone())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
}

async fn operator_client(env: &Env) -> Client {
    security::service_account_client(env, RELEASE_NAMESPACE, OPERATOR_SA).await
}

async fn wait_allowed(env: &Env, who: (&str, &[String]), what: security::Target<'_>, verb: &str) {
    let admin = env.admin();
    security::eventually(
        &format!("{} {verb} {what:?}", who.0),
        POLICY_TIMEOUT,
        || async {
            if security::allowed(&admin, who.0, who.1, what, verb).await {
                Ok(())
            } else {
                Err("not allowed yet".into())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

// ------------------------------------------------------------------------------------------------
// The policies themselves
// ------------------------------------------------------------------------------------------------

/// Every policy the chart can render, in every combination of its options, is accepted by the
/// API server (CEL compiles, cost within budget), and `admission.policies.enabled: false` renders
/// none.
#[tokio::test]
async fn every_policy_variant_is_accepted_by_the_api_server() {
    let Some((env, _)) = shared("policies-accepted").await else {
        return;
    };
    let mut c = Checks::default();
    let variants = [
        json!({}),
        json!({"admission": {"rbacApproval": true}, "standingPrivilege": {"prevent": true}}),
        json!({
            "admission": {"rbacApproval": false},
            "standingPrivilege": {"prevent": true},
            "breakGlass": {"users": ["root-1", "root-2"], "groups": ["g1", "g2"]},
            "bindableRoles": {"clusterRoles": ["admin"], "roles": [{"namespace": "a", "name": "b"}, {"namespace": "c", "name": "d"}]},
        }),
        json!({"standingPrivilege": {"prevent": true}, "bindableRoles": {"clusterRoles": [], "roles": []}}),
        json!({"selfProtection": {"adminGroups": ["a", "b"], "exemptUsers": ["helm", "system:serviceaccount:argocd:x"]}}),
    ];
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let admin = env.admin();
    let mut seen = 0;
    for (i, values) in variants.iter().enumerate() {
        let docs = security::render(values, security::TEMPLATES)
            .expect("render")
            .expect("helm_python");
        for doc in docs.iter().filter(|d| {
            d["kind"] == "ValidatingAdmissionPolicy"
                || d["kind"] == "ValidatingAdmissionPolicyBinding"
        }) {
            let mut obj: DynamicObject = serde_json::from_value(doc.clone()).expect("object");
            let name = format!("{}-v{i}", obj.name_any());
            obj.metadata.name = Some(name.clone());
            let gvk = kube::core::GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                doc["kind"].as_str().unwrap(),
            );
            let (resource, _) = kube::discovery::pinned_kind(&admin, &gvk)
                .await
                .expect("discovery");
            let api: Api<DynamicObject> = Api::all_with(admin.clone(), &resource);
            c.accepted(
                &format!("variant {i}: {} {name}", doc["kind"]),
                api.create(&dry, &obj).await,
            );
            seen += 1;
        }
    }
    c.check("policies rendered", seen >= 20, format!("only {seen}"));
    let off = security::render(
        &json!({"admission": {"policies": {"enabled": false}}, "standingPrivilege": {"prevent": true}}),
        security::TEMPLATES,
    )
    .expect("render")
    .expect("helm_python");
    let policies = security::policy_names(&off);
    c.check(
        "admission.policies.enabled=false renders no policy",
        policies.is_empty(),
        format!("{policies:?}"),
    );
    c.finish();
}

// ------------------------------------------------------------------------------------------------
// The negative matrix
// ------------------------------------------------------------------------------------------------

/// Row 1: a request names someone else (or other groups, uid, extra), or nobody.
#[tokio::test]
async fn row01_requester_is_the_caller() {
    let Some((env, _)) = shared("row01").await else {
        return;
    };
    let mut c = Checks::default();
    let api: Api<ActivationRequest> = Api::all(env.client("alice"));
    let pp = PostParams::default();
    let role = env.name("role");
    let own = fixtures::request(&env, "own", "alice", &role, &[], "30m");
    let with = |base: &str, change: &dyn Fn(&mut kubepim::api::Requester)| {
        let mut r = own.clone();
        r.metadata.name = Some(env.name(base));
        let mut requester = env.requester("alice");
        change(&mut requester);
        r.spec.requester = Some(requester);
        r
    };

    let as_bob = with("as-bob", &|r| *r = env.requester("bob"));
    c.refused_by(
        "request-create",
        "alice naming bob",
        api.create(&pp, &as_bob).await,
        "spec.requester must be your own identity 'alice', not 'bob'",
    );
    let more_groups = with("groups", &|r| r.groups.push("sre-leads".into()));
    c.refused_by(
        "request-create",
        "alice adding the group sre-leads",
        api.create(&pp, &more_groups).await,
        "spec.requester.groups must be exactly your own groups",
    );
    let fewer_groups = with("fewer", &|r| r.groups.retain(|g| g != "developers"));
    c.refused_by(
        "request-create",
        "alice leaving out a group",
        api.create(&pp, &fewer_groups).await,
        "spec.requester.groups must be exactly your own groups",
    );
    let uid = with("uid", &|r| r.uid = Some("uid-bob".into()));
    c.refused_by(
        "request-create",
        "alice with bob's uid",
        api.create(&pp, &uid).await,
        "spec.requester.uid must be your own uid",
    );
    let extra = with("extra", &|r| {
        r.extra.insert("amr".into(), vec!["mfa".into()]);
    });
    c.refused_by(
        "request-create",
        "alice claiming an MFA attribute",
        api.create(&pp, &extra).await,
        "spec.requester.extra must be exactly your own extra attributes",
    );
    let mut nobody = own.clone();
    nobody.metadata.name = Some(env.name("nobody"));
    nobody.spec.requester = None;
    c.refused_by(
        "request-create",
        "alice leaving out the requester",
        api.create(&pp, &nobody).await,
        "spec.requester is required and must be your own identity 'alice'",
    );
    // Positive control: her exact identity.
    c.accepted("alice as herself", api.create(&pp, &own).await);
    c.finish();
}

/// Row 2: a request created with a status (pre-approved, Active). The API server drops the
/// status on CREATE (status subresource), before any admission policy runs: nothing is rejected,
/// and nothing is pre-approved. Writing the same status afterwards is row 9.
#[tokio::test]
async fn row02_status_on_create_never_pre_approves() {
    let Some((env, _)) = shared("row02").await else {
        return;
    };
    let mut c = Checks::default();
    let api: Api<ActivationRequest> = Api::all(env.client("alice"));
    let mut r = fixtures::request(&env, "preapproved", "alice", &env.name("role"), &[], "30m");
    r.status = Some(ActivationRequestStatus {
        phase: Some(Phase::Active),
        approvals: vec![Approval {
            approver: "bob".into(),
            groups: groups_of("bob"),
            decision: Decision::Approved,
            reason: None,
            time: None,
        }],
        ..Default::default()
    });
    if let Some(created) = c.accepted(
        "alice creating with a status",
        api.create(&PostParams::default(), &r).await,
    ) {
        let stored = Api::<ActivationRequest>::all(env.admin())
            .get(&created.name_any())
            .await
            .expect("get");
        c.check(
            "status dropped on create",
            stored.status.is_none() || stored.status == Some(Default::default()),
            format!("stored status {:?}", stored.status),
        );
        // ... and writing it now is the controller's alone (row 9).
        let patch = json_patch(json!([{"op": "add", "path": "/status", "value": {
            "phase": "Active", "approvals": [entry("bob")]}}]));
        c.refused_by(
            "request-status",
            "alice writing the status afterwards",
            api.patch_status(&created.name_any(), &PatchParams::default(), &patch)
                .await,
            "only the kubepim controller may set status.phase",
        );
    }
    c.finish();
}

/// Row 3: the spec is immutable but for cancel (CRD CEL, before any admission policy).
#[tokio::test]
async fn row03_spec_is_immutable() {
    let Some((env, _)) = shared("row03").await else {
        return;
    };
    let mut c = Checks::default();
    let api: Api<ActivationRequest> = Api::all(env.client("alice"));
    let ns = env.namespace("apps").await;
    let role = env.name("role");
    let r = fixtures::request(&env, "immutable", "alice", &role, &[&ns], "30m");
    let Some(r) = c.accepted(
        "alice creating",
        api.create(&PostParams::default(), &r).await,
    ) else {
        return c.finish();
    };
    let name = r.name_any();
    let pp = PatchParams::default();
    let cases = [
        (
            json!({"spec": {"role": "cluster-admin"}}),
            "spec.role is immutable",
        ),
        (
            json!({"spec": {"duration": "4h"}}),
            "spec.duration is immutable",
        ),
        (
            json!({"spec": {"namespaces": ["kube-system"]}}),
            "spec.namespaces is immutable",
        ),
        (
            json!({"spec": {"justification": "changed"}}),
            "spec.justification is immutable",
        ),
        (
            json!({"spec": {"ticket": "INC-1"}}),
            "spec is immutable after creation",
        ),
        (
            json!({"spec": {"requester": {"username": "bob"}}}),
            "spec.requester is immutable",
        ),
    ];
    for (patch, needle) in cases {
        c.refused(
            &format!("alice patching {patch}"),
            api.patch(&name, &pp, &Patch::Merge(&patch)).await,
            needle,
        );
    }
    c.accepted(
        "alice cancelling",
        api.patch(&name, &pp, &Patch::Merge(json!({"spec": {"cancel": true}})))
            .await,
    );
    c.refused(
        "alice un-cancelling",
        api.patch(
            &name,
            &pp,
            &Patch::Merge(json!({"spec": {"cancel": false}})),
        )
        .await,
        "spec.cancel cannot be undone",
    );
    c.finish();
}

/// Row 4: approving (or denying) one's own request.
#[tokio::test]
async fn row04_no_self_approval() {
    let Some((env, _)) = shared("row04").await else {
        return;
    };
    let mut c = Checks::default();
    let name = alice_request(&env, &mut c, "own").await;
    c.refused_by(
        "request-status",
        "alice approving her own request",
        approve(&env, "alice", &name).await,
        "you cannot approve or deny your own request",
    );
    let deny = fixtures::approval_entry("alice", Decision::Denied, "no");
    c.refused_by(
        "request-status",
        "alice denying her own request",
        approve_as(&env, &env.client("alice"), &name, deny).await,
        "you cannot approve or deny your own request",
    );
    c.accepted("bob approving", approve(&env, "bob", &name).await);
    c.finish();
}

/// Row 5: a ServiceAccount approving, even one RBAC allows to.
#[tokio::test]
async fn row05_no_approval_by_service_account() {
    let Some((env, _)) = shared("row05").await else {
        return;
    };
    let mut c = Checks::default();
    let ns = env.namespace("robots").await;
    let robot = security::service_account_client(&env, &ns, "robot").await;
    let robot_name = format!("system:serviceaccount:{ns}:robot");
    let crb = ClusterRoleBinding {
        metadata: env.meta("robot-approver"),
        role_ref: cluster_role_ref("kubepim-approver"),
        subjects: Some(vec![service_account(&ns, "robot")]),
    };
    fixtures::create(&Api::all(env.admin()), &crb).await;
    let name = alice_request(&env, &mut c, "robot").await;
    let groups = security::service_account_groups(&ns);
    wait_allowed(
        &env,
        (&robot_name, &groups),
        ("kubepim.io", "activationrequests/status", Some(&name), None),
        "patch",
    )
    .await;
    let own = json!({"approver": robot_name, "groups": groups, "decision": "Approved"});
    c.refused_by(
        "request-status",
        "a ServiceAccount approving (RBAC allows it)",
        approve_as(&env, &robot, &name, own).await,
        &format!("ServiceAccount '{robot_name}' cannot approve or deny requests"),
    );
    c.accepted("bob approving", approve(&env, "bob", &name).await);
    c.finish();
}

/// Row 6: approving without the verb `approve` on the request's PrivilegedRole
/// (`admission.rbacApproval`); `approve` on another role does not do.
#[tokio::test]
async fn row06_approver_needs_approve_on_the_role() {
    let Some((env, _)) = shared("row06").await else {
        return;
    };
    let mut c = Checks::default();
    let name = alice_request(&env, &mut c, "rbac").await;
    let role = env.name("role");
    c.refused_by(
        "request-status",
        "mallory (no approve verb) approving",
        approve(&env, "mallory", &name).await,
        &format!("'mallory' may not approve or deny requests for PrivilegedRole '{role}'"),
    );
    // `approve` on another PrivilegedRole only.
    let other = env.name("other-role");
    let grant = |base: &str, role_name: &str| ClusterRole {
        metadata: env.meta(base),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["kubepim.io".into()]),
            resources: Some(vec!["privilegedroles".into()]),
            verbs: vec!["approve".into()],
            resource_names: Some(vec![role_name.into()]),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let bind = |base: &str| ClusterRoleBinding {
        metadata: env.meta(base),
        role_ref: cluster_role_ref(&env.name(base)),
        subjects: Some(vec![user("mallory")]),
    };
    let admin = env.admin();
    fixtures::create(&Api::all(admin.clone()), &grant("approve-other", &other)).await;
    fixtures::create(&Api::all(admin.clone()), &bind("approve-other")).await;
    let mallory = ("mallory", groups_of("mallory"));
    wait_allowed(
        &env,
        (mallory.0, &mallory.1),
        ("kubepim.io", "privilegedroles", Some(&other), None),
        "approve",
    )
    .await;
    c.refused_by(
        "request-status",
        "mallory approving with `approve` on another role only",
        approve(&env, "mallory", &name).await,
        &format!("needs the verb 'approve' on privilegedroles/{role}"),
    );
    // Positive control: `approve` on exactly this role (resourceNames).
    fixtures::create(&Api::all(admin.clone()), &grant("approve-this", &role)).await;
    fixtures::create(&Api::all(admin.clone()), &bind("approve-this")).await;
    wait_allowed(
        &env,
        (mallory.0, &mallory.1),
        ("kubepim.io", "privilegedroles", Some(&role), None),
        "approve",
    )
    .await;
    c.accepted(
        "mallory approving with `approve` on this role",
        approve(&env, "mallory", &name).await,
    );
    c.finish();
}

/// Row 7: an approval recorded under another user's name or groups.
#[tokio::test]
async fn row07_approval_only_in_own_name() {
    let Some((env, _)) = shared("row07").await else {
        return;
    };
    let mut c = Checks::default();
    let name = alice_request(&env, &mut c, "names").await;
    let carol = env.client("carol");
    let mut as_dave = entry("carol");
    as_dave["approver"] = json!("dave");
    c.refused_by(
        "request-status",
        "carol recording an approval as dave (first entry)",
        approve_as(&env, &carol, &name, as_dave.clone()).await,
        "status.approvals[0].approver must be your own identity 'carol', not 'dave'",
    );
    c.accepted("bob approving", approve(&env, "bob", &name).await);
    c.refused_by(
        "request-status",
        "carol recording an approval as dave",
        approve_as(&env, &carol, &name, as_dave).await,
        "status.approvals[1].approver must be your own identity 'carol', not 'dave'",
    );
    let mut bobs_groups = entry("carol");
    bobs_groups["groups"] = json!(groups_of("bob"));
    c.refused_by(
        "request-status",
        "carol recording bob's groups",
        approve_as(&env, &carol, &name, bobs_groups).await,
        "status.approvals[1].groups must be exactly your own groups",
    );
    let mut no_groups = entry("carol");
    no_groups["groups"] = json!([]);
    c.refused_by(
        "request-status",
        "carol leaving out her groups",
        approve_as(&env, &carol, &name, no_groups).await,
        "status.approvals[1].groups must be exactly your own groups",
    );
    c.accepted(
        "carol approving as herself",
        approve(&env, "carol", &name).await,
    );
    c.finish();
}

/// Row 8: removing, reordering or editing an approval, or adding two at once.
#[tokio::test]
async fn row08_approvals_are_append_only() {
    let Some((env, _)) = shared("row08").await else {
        return;
    };
    let mut c = Checks::default();
    let name = alice_request(&env, &mut c, "append").await;
    let carol: Api<ActivationRequest> = Api::all(env.client("carol"));
    let pp = PatchParams::default();
    c.accepted("bob approving", approve(&env, "bob", &name).await);
    let needle = "status.approvals is append-only";
    c.refused_by(
        "request-status",
        "carol turning bob's approval into a denial",
        carol
            .patch_status(
                &name,
                &pp,
                &json_patch(json!([{"op": "replace", "path": "/status/approvals/0/decision", "value": "Denied"}])),
            )
            .await,
        needle,
    );
    c.refused_by(
        "request-status",
        "carol removing bob's approval",
        carol
            .patch_status(
                &name,
                &pp,
                &json_patch(json!([{"op": "remove", "path": "/status/approvals/0"}])),
            )
            .await,
        needle,
    );
    c.refused_by(
        "request-status",
        "carol replacing bob's approval with hers",
        carol
            .patch_status(
                &name,
                &pp,
                &json_patch(json!([{"op": "replace", "path": "/status/approvals/0", "value": entry("carol")}])),
            )
            .await,
        needle,
    );
    c.refused_by(
        "request-status",
        "carol inserting hers before bob's",
        carol
            .patch_status(
                &name,
                &pp,
                &json_patch(
                    json!([{"op": "add", "path": "/status/approvals/0", "value": entry("carol")}]),
                ),
            )
            .await,
        needle,
    );
    let mut dave = entry("carol");
    dave["approver"] = json!("dave");
    c.refused_by(
        "request-status",
        "carol adding two approvals in one write",
        carol
            .patch_status(
                &name,
                &pp,
                &json_patch(json!([
                    {"op": "add", "path": "/status/approvals/-", "value": entry("carol")},
                    {"op": "add", "path": "/status/approvals/-", "value": dave},
                ])),
            )
            .await,
        "append exactly one approval per write: status.approvals would go from 1 to 3 entries",
    );
    c.accepted("carol appending hers", approve(&env, "carol", &name).await);
    c.refused_by(
        "request-status",
        "carol moving hers first",
        carol
            .patch_status(
                &name,
                &pp,
                &json_patch(json!([{"op": "move", "from": "/status/approvals/1", "path": "/status/approvals/0"}])),
            )
            .await,
        needle,
    );
    let stored = Api::<ActivationRequest>::all(env.admin())
        .get(&name)
        .await
        .expect("get");
    let approvers: Vec<String> = stored
        .status
        .map(|s| s.approvals.into_iter().map(|a| a.approver).collect())
        .unwrap_or_default();
    c.check(
        "approvals as appended",
        approvers == ["bob", "carol"],
        format!("{approvers:?}"),
    );
    c.finish();
}

/// Row 9: phase, conditions, expiresAt, bindings... set by anyone but the controller.
#[tokio::test]
async fn row09_controller_fields_only_by_the_controller() {
    let Some((env, _)) = shared("row09").await else {
        return;
    };
    let mut c = Checks::default();
    let name = alice_request(&env, &mut c, "fields").await;
    let bob: Api<ActivationRequest> = Api::all(env.client("bob"));
    let pp = PatchParams::default();
    let fields = [
        ("phase", json!("Active")),
        (
            "conditions",
            json!([{"type": "Approved", "status": "True", "reason": "Approved", "message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"}]),
        ),
        ("activatedAt", json!("2026-01-01T00:00:00Z")),
        ("expiresAt", json!("2099-01-01T00:00:00Z")),
        (
            "bindings",
            json!([{"kind": "ClusterRoleBinding", "name": "cluster-admin"}]),
        ),
        ("reason", json!("Approved")),
        ("message", json!("approved")),
        ("observedGeneration", json!(1)),
        // Role integrity: the rules a grant was made with, what a widening is judged against.
        (
            "grantedRules",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
        ("roleDigest", json!("0".repeat(64))),
        // Privilege budgets count elevated time up to endedAt; the continuous-elevation cap counts
        // from continuousSince.
        ("endedAt", json!("2026-01-01T00:00:01Z")),
        ("continuousSince", json!("2099-01-01T00:00:00Z")),
        // The activity record: an approver must not be able to make a grant look used (or
        // unused, to have it end as idle).
        (
            "activity",
            json!({"source": "AuditWebhook", "requests": 1, "lastUse": "2099-01-01T00:00:00Z"}),
        ),
        // What `kubectl pim footholds --remove` deletes: an approver must not be able to point
        // it at someone else's objects.
        (
            "footholds",
            json!([{"kind": "RoleBinding", "namespace": "kube-system", "name": "x", "why": "forged"}]),
        ),
    ];
    for (field, value) in &fields {
        c.refused_by(
            "request-status",
            &format!("bob setting status.{field}"),
            bob.patch_status(
                &name,
                &pp,
                &json_patch(json!([{"op": "add", "path": "/status", "value": {(*field): value}}])),
            )
            .await,
            &format!("only the kubepim controller may set status.{field}"),
        );
    }
    c.refused_by(
        "request-status",
        "bob approving and setting the phase in one write",
        bob.patch_status(
            &name,
            &pp,
            &json_patch(json!([{"op": "add", "path": "/status", "value": {"phase": "Active", "approvals": [entry("bob")]}}])),
        )
        .await,
        "only the kubepim controller may set status.phase",
    );
    c.refused_by(
        "request-status",
        "bob approving and rewriting the granted rules in one write",
        bob.patch_status(
            &name,
            &pp,
            &json_patch(json!([{"op": "add", "path": "/status", "value": {
                "grantedRules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
                "approvals": [entry("bob")],
            }}])),
        )
        .await,
        "only the kubepim controller may set status.grantedRules",
    );
    c.accepted("bob approving", approve(&env, "bob", &name).await);
    let controller = operator_client(&env).await;
    c.accepted(
        "the controller setting phase and expiresAt",
        controller_sets(
            &controller,
            &name,
            json!({"phase": "Active", "expiresAt": "2099-01-01T00:00:00Z", "reason": "Activated"}),
        )
        .await,
    );
    c.accepted(
        "the controller writing the activity record",
        controller_sets(
            &controller,
            &name,
            json!({"activity": {"source": "AuditWebhook", "requests": 2, "lastUse": "2026-01-01T00:00:00Z"}}),
        )
        .await,
    );
    c.refused_by(
        "request-status",
        "carol changing the activity record while approving",
        Api::<ActivationRequest>::all(env.client("carol"))
            .patch_status(
                &name,
                &pp,
                &json_patch(json!([
                    {"op": "replace", "path": "/status/activity/lastUse", "value": "2100-01-01T00:00:00Z"},
                    {"op": "add", "path": "/status/approvals/-", "value": entry("carol")},
                ])),
            )
            .await,
        "only the kubepim controller may set status.activity",
    );
    c.refused_by(
        "request-status",
        "carol changing the controller's expiresAt while approving",
        Api::<ActivationRequest>::all(env.client("carol"))
            .patch_status(
                &name,
                &pp,
                &json_patch(json!([
                    {"op": "replace", "path": "/status/expiresAt", "value": "2100-01-01T00:00:00Z"},
                    {"op": "add", "path": "/status/approvals/-", "value": entry("carol")},
                ])),
            )
            .await,
        "only the kubepim controller may set status.expiresAt",
    );
    c.finish();
}

/// Row 10: approving after the request was denied, expired or cancelled.
#[tokio::test]
async fn row10_no_approval_after_terminal_phase() {
    let Some((env, _)) = shared("row10").await else {
        return;
    };
    let mut c = Checks::default();
    let controller = operator_client(&env).await;
    for phase in ["Denied", "Expired", "Cancelled", "Revoked", "Failed"] {
        let name = alice_request(&env, &mut c, &phase.to_lowercase()).await;
        c.accepted(
            &format!("the controller setting {phase}"),
            controller_sets(&controller, &name, json!({"phase": phase})).await,
        );
        c.refused_by(
            "request-status",
            &format!("bob approving a {phase} request"),
            approve(&env, "bob", &name).await,
            &format!("request {name} is {phase}: approvals after a terminal phase are refused"),
        );
    }
    // Cancelled by the requester, before the controller has seen it.
    let name = alice_request(&env, &mut c, "by-requester").await;
    c.accepted(
        "alice cancelling",
        Api::<ActivationRequest>::all(env.client("alice"))
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"cancel": true}})),
            )
            .await,
    );
    c.refused_by(
        "request-status",
        "bob approving a cancelled request",
        approve(&env, "bob", &name).await,
        "was cancelled by its requester",
    );
    // Positive control: a Pending request.
    let name = alice_request(&env, &mut c, "pending").await;
    c.accepted(
        "the controller setting Pending",
        controller_sets(&controller, &name, json!({"phase": "Pending"})).await,
    );
    c.accepted(
        "bob approving a Pending request",
        approve(&env, "bob", &name).await,
    );
    c.finish();
}

/// Row 11: the controller adding (or removing, or changing) an approval.
#[tokio::test]
async fn row11_controller_never_adds_approvals() {
    let Some((env, _)) = shared("row11").await else {
        return;
    };
    let mut c = Checks::default();
    let controller = operator_client(&env).await;
    let name = alice_request(&env, &mut c, "controller").await;
    let operator = security::operator_username();
    let own = json!({"approver": operator, "groups": security::service_account_groups(RELEASE_NAMESPACE), "decision": "Approved"});
    let needle = "the controller never adds, removes or changes status.approvals";
    c.refused_by(
        "request-status",
        "the controller approving in its own name",
        approve_as(&env, &controller, &name, own).await,
        needle,
    );
    c.refused_by(
        "request-status",
        "the controller approving in bob's name",
        approve_as(&env, &controller, &name, entry("bob")).await,
        needle,
    );
    c.accepted("bob approving", approve(&env, "bob", &name).await);
    let api: Api<ActivationRequest> = Api::all(controller.clone());
    c.refused_by(
        "request-status",
        "the controller removing bob's approval",
        api.patch_status(
            &name,
            &PatchParams::default(),
            &json_patch(json!([{"op": "remove", "path": "/status/approvals/0"}])),
        )
        .await,
        needle,
    );
    c.refused_by(
        "request-status",
        "the controller turning bob's approval into a denial",
        api.patch_status(
            &name,
            &PatchParams::default(),
            &json_patch(json!([{"op": "replace", "path": "/status/approvals/0/decision", "value": "Denied"}])),
        )
        .await,
        needle,
    );
    // Positive control: its own fields, approvals untouched.
    let updated = c.accepted(
        "the controller setting phase and reason",
        controller_sets(
            &controller,
            &name,
            json!({"phase": "Active", "reason": "Approved"}),
        )
        .await,
    );
    if let Some(updated) = updated {
        let approvals = updated.status.map(|s| s.approvals.len()).unwrap_or(0);
        c.check(
            "bob's approval kept",
            approvals == 1,
            format!("{approvals} approvals"),
        );
    }
    c.finish();
}

/// Row 12: cancelling, changing or deleting someone else's request.
#[tokio::test]
async fn row12_only_requester_cancels_or_deletes() {
    let Some((env, _)) = shared("row12").await else {
        return;
    };
    let mut c = Checks::default();
    let pp = PatchParams::default();
    let mallory: Api<ActivationRequest> = Api::all(env.client("mallory"));
    let alice: Api<ActivationRequest> = Api::all(env.client("alice"));
    let name = alice_request(&env, &mut c, "victim").await;
    c.refused_by(
        "request-update",
        "mallory cancelling alice's request",
        mallory
            .patch(&name, &pp, &Patch::Merge(json!({"spec": {"cancel": true}})))
            .await,
        &format!("only the requester 'alice' may cancel request {name} (you are 'mallory')"),
    );
    // The revocation finalizer: only the controller takes it off; only the requester or the
    // controller adds finalizers.
    let mut guarded = fixtures::request(&env, "guarded", "alice", &env.name("role"), &[], "30m");
    guarded.metadata.finalizers = Some(vec![kubepim::api::FINALIZER.into()]);
    let guarded = c
        .accepted(
            "alice creating a request with the revocation finalizer",
            alice.create(&PostParams::default(), &guarded).await,
        )
        .map(|r| r.name_any())
        .unwrap_or_default();
    let hold = Patch::Merge(
        json!({"metadata": {"finalizers": [kubepim::api::FINALIZER, "example.com/hold"]}}),
    );
    c.refused_by(
        "request-update",
        "mallory adding a finalizer to alice's request",
        mallory.patch(&guarded, &pp, &hold).await,
        &format!(
            "only the requester 'alice' or the kubepim controller may add finalizers to request {guarded} (you are 'mallory')"
        ),
    );
    let strip = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    for who in ["mallory", "alice"] {
        c.refused_by(
            "request-update",
            &format!("{who} removing the revocation finalizer"),
            Api::<ActivationRequest>::all(env.client(who))
                .patch(&guarded, &pp, &strip)
                .await,
            &format!(
                "only the kubepim controller removes the finalizer kubepim.io/revoke-bindings from request {guarded}"
            ),
        );
    }
    let controller = operator_client(&env).await;
    c.accepted(
        "the controller removing the revocation finalizer",
        Api::<ActivationRequest>::all(controller)
            .patch(&guarded, &pp, &strip)
            .await,
    );
    c.refused_by(
        "request-delete",
        "mallory deleting alice's request",
        mallory.delete(&name, &DeleteParams::default()).await,
        &format!(
            "only the requester 'alice' (or an identity allowed 'manage' on activationrequests) may delete request {name} (you are 'mallory')"
        ),
    );
    c.refused_by(
        "request-delete",
        "bob (an approver) deleting alice's request",
        Api::<ActivationRequest>::all(env.client("bob"))
            .delete(&name, &DeleteParams::default())
            .await,
        "may delete request",
    );
    // Positive controls: the requester cancels and deletes her own; an admin deletes anyone's.
    c.accepted(
        "alice cancelling her own",
        alice
            .patch(&name, &pp, &Patch::Merge(json!({"spec": {"cancel": true}})))
            .await,
    );
    c.accepted(
        "alice deleting her own",
        alice.delete(&name, &DeleteParams::default()).await,
    );
    let other = alice_request(&env, &mut c, "admin-deletes").await;
    c.accepted(
        "admin (allowed every verb, so `manage`) deleting alice's request",
        Api::<ActivationRequest>::all(env.admin())
            .delete(&other, &DeleteParams::default())
            .await,
    );
    c.finish();
}

/// Row 14: ordinary users cannot write PrivilegedRoles or Eligibilities (RBAC); only the
/// chart's `kubepim-policy-admin` can, and no role the chart aggregates carries write access.
#[tokio::test]
async fn row14_policy_objects_need_policy_admin() {
    let Some((env, docs)) = shared("row14").await else {
        return;
    };
    let mut c = Checks::default();
    let pp = PostParams::default();
    let ns = env.namespace("policy").await;
    let pr = fixtures::pod_reader(&env, "pods", &[&ns]);
    let el = fixtures::eligibility(
        &env,
        "alice",
        &pr.name_any(),
        vec![SubjectRef::user("alice")],
    );
    for who in ["alice", "bob", "mallory"] {
        c.refused(
            &format!("{who} creating a PrivilegedRole"),
            Api::<PrivilegedRole>::all(env.client(who))
                .create(&pp, &pr)
                .await,
            "cannot create resource \"privilegedroles\"",
        );
        c.refused(
            &format!("{who} creating an Eligibility"),
            Api::<Eligibility>::all(env.client(who))
                .create(&pp, &el)
                .await,
            "cannot create resource \"eligibilities\"",
        );
    }
    // Positive control: the chart's policy-admin role (here on a ServiceAccount of the test).
    let gitops = security::service_account_client(&env, &ns, "gitops").await;
    let crb = ClusterRoleBinding {
        metadata: env.meta("gitops"),
        role_ref: cluster_role_ref("kubepim-policy-admin"),
        subjects: Some(vec![service_account(&ns, "gitops")]),
    };
    fixtures::create(&Api::all(env.admin()), &crb).await;
    let gitops_user = format!("system:serviceaccount:{ns}:gitops");
    wait_allowed(
        &env,
        (&gitops_user, &security::service_account_groups(&ns)),
        ("kubepim.io", "eligibilities", None, None),
        "create",
    )
    .await;
    c.accepted(
        "policy-admin creating a PrivilegedRole",
        Api::<PrivilegedRole>::all(gitops.clone())
            .create(&pp, &pr)
            .await,
    );
    c.accepted(
        "policy-admin creating an Eligibility",
        Api::<Eligibility>::all(gitops.clone())
            .create(&pp, &el)
            .await,
    );
    c.refused(
        "alice editing the PrivilegedRole",
        Api::<PrivilegedRole>::all(env.client("alice"))
            .patch(
                &pr.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"approval": {"requiredApprovals": 0}}})),
            )
            .await,
        "cannot patch resource \"privilegedroles\"",
    );
    c.refused(
        "alice deleting the Eligibility",
        Api::<Eligibility>::all(env.client("alice"))
            .delete(&el.name_any(), &DeleteParams::default())
            .await,
        "cannot delete resource \"eligibilities\"",
    );
    // No chart role that aggregates into view/edit/admin writes policy (the aggregation
    // controller runs in kube-controller-manager, not here: checked on the rendered roles).
    for role in docs.iter().filter(|d| d["kind"] == "ClusterRole") {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        let aggregated = role["metadata"]["labels"]
            .as_object()
            .is_some_and(|l| l.keys().any(|k| k.contains("aggregate-to-")));
        let writes_policy = role["rules"].as_array().into_iter().flatten().any(|r| {
            let resources = r["resources"].to_string();
            let writes = r["verbs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| !matches!(v.as_str(), Some("get" | "list" | "watch")));
            writes
                && (resources.contains("\"privilegedroles\"")
                    || resources.contains("\"eligibilities\""))
        });
        c.check(
            &format!("ClusterRole {name}"),
            !(aggregated && writes_policy),
            "aggregated into a built-in role and writes PrivilegedRoles or Eligibilities",
        );
        if name.ends_with("-policy-admin") {
            c.check("policy-admin is not aggregated", !aggregated, "it is");
        }
    }
    c.finish();
}

/// Row 15 (prevention on): a binding to a role PrivilegedRoles hand out, made outside kubepim.
#[tokio::test]
async fn row15_standing_privilege_refused_when_prevented() {
    let Some((env, _)) = shared("row15").await else {
        return;
    };
    let mut c = Checks::default();
    let pp = PostParams::default();
    let admin = env.admin();
    let ns = env.namespace("standing").await;
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let needle = "which kubepim hands out just in time (standingPrivilege.prevent)";
    c.refused_by(
        "standing-privilege",
        "admin binding the pod-reader ClusterRole cluster-wide",
        crbs.create(
            &pp,
            &cluster_role_binding(&env, "standing", POD_READER, vec![user("alice")], None),
        )
        .await,
        &format!("grants ClusterRole {POD_READER}, {needle}"),
    );
    c.refused_by(
        "standing-privilege",
        "admin binding the namespace-reader ClusterRole in a namespace",
        Api::<RoleBinding>::namespaced(admin.clone(), &ns)
            .create(
                &pp,
                &role_binding(
                    &env,
                    "standing",
                    &ns,
                    cluster_role_ref(NAMESPACE_READER),
                    vec![group("developers")],
                    None,
                ),
            )
            .await,
        needle,
    );
    let secret_reader = RbacRoleRef {
        api_group: RBAC.into(),
        kind: "Role".into(),
        name: SECRET_READER.into(),
    };
    c.refused_by(
        "standing-privilege",
        "admin binding a protected Role in its namespace",
        Api::<RoleBinding>::namespaced(admin.clone(), APPS_NAMESPACE)
            .create(
                &pp,
                &role_binding(
                    &env,
                    "standing",
                    APPS_NAMESPACE,
                    secret_reader.clone(),
                    vec![user("alice")],
                    None,
                ),
            )
            .await,
        &format!("grants Role {SECRET_READER}"),
    );
    // Spoofing the managed label does not make a binding kubepim's: two policies refuse it,
    // and the API server names whichever it evaluated first.
    c.refused_by_any(
        &["standing-privilege", "managed-label"],
        "admin creating a binding that looks managed",
        crbs.create(
            &pp,
            &cluster_role_binding(
                &env,
                "spoofed",
                POD_READER,
                vec![user("alice")],
                Some("made-up"),
            ),
        )
        .await,
        "",
    );
    // Positive controls: a break-glass identity; an unprotected role; the same Role name in a
    // namespace that is not configured.
    let break_glass: Api<ClusterRoleBinding> = Api::all(env.client("operator"));
    if c.accepted(
        "break-glass (group) binding pod-reader",
        break_glass
            .create(
                &pp,
                &cluster_role_binding(&env, "break-glass", POD_READER, vec![user("alice")], None),
            )
            .await,
    )
    .is_some()
    {
        let _ = crbs
            .delete(&env.name("break-glass"), &DeleteParams::default())
            .await;
    }
    if c.accepted(
        "admin binding an unprotected ClusterRole",
        crbs.create(
            &pp,
            &cluster_role_binding(&env, "view", "view", vec![user("bob")], None),
        )
        .await,
    )
    .is_some()
    {
        let _ = crbs
            .delete(&env.name("view"), &DeleteParams::default())
            .await;
    }
    fixtures::secret_reader_role(&env, &ns).await;
    c.accepted(
        "admin binding the same Role name elsewhere",
        Api::<RoleBinding>::namespaced(admin.clone(), &ns)
            .create(
                &pp,
                &role_binding(
                    &env,
                    "elsewhere",
                    &ns,
                    secret_reader,
                    vec![user("alice")],
                    None,
                ),
            )
            .await,
    );
    c.finish();
}

/// Row 16, and the operator's RBAC: what the operator's own identity may not do with bindings.
#[tokio::test]
async fn row16_operator_binding_shape() {
    let Some((env, _)) = shared("row16").await else {
        return;
    };
    let mut c = Checks::default();
    let pp = PostParams::default();
    let operator = operator_client(&env).await;
    let crbs: Api<ClusterRoleBinding> = Api::all(operator.clone());
    let request = Some("some-request");
    let shape = |base: &str, role: &str, subjects: Vec<Subject>| {
        cluster_role_binding(&env, base, role, subjects, request)
    };

    // Positive controls first: what activation writes.
    let good = c.accepted(
        "operator creating a managed ClusterRoleBinding",
        crbs.create(&pp, &shape("good", POD_READER, vec![user("alice")]))
            .await,
    );
    let rb = role_binding(
        &env,
        "good-role",
        APPS_NAMESPACE,
        RbacRoleRef {
            api_group: RBAC.into(),
            kind: "Role".into(),
            name: SECRET_READER.into(),
        },
        vec![user("alice")],
        request,
    );
    let rbs: Api<RoleBinding> = Api::namespaced(operator.clone(), APPS_NAMESPACE);
    c.accepted(
        "operator creating a managed RoleBinding to a bindable Role",
        rbs.create(&pp, &rb).await,
    );

    let by = "operator-bindings";
    c.refused_by(
        by,
        "operator binding two subjects",
        crbs.create(
            &pp,
            &shape("two", POD_READER, vec![user("alice"), user("mallory")]),
        )
        .await,
        "must have exactly one subject, the requester",
    );
    c.refused_by(
        by,
        "operator binding a system: user",
        crbs.create(
            &pp,
            &shape("system", POD_READER, vec![user("system:admin")]),
        )
        .await,
        "never binds a system identity: subject 'system:admin'",
    );
    c.refused_by(
        by,
        "operator binding system:authenticated",
        crbs.create(
            &pp,
            &shape("everyone", POD_READER, vec![group("system:authenticated")]),
        )
        .await,
        "never a Group",
    );
    c.refused_by(
        by,
        "operator binding a group",
        crbs.create(&pp, &shape("group", POD_READER, vec![group("developers")]))
            .await,
        "never a Group: Group developers",
    );
    c.refused_by(
        by,
        "operator binding its own ServiceAccount",
        crbs.create(
            &pp,
            &shape(
                "itself",
                POD_READER,
                vec![service_account(RELEASE_NAMESPACE, OPERATOR_SA)],
            ),
        )
        .await,
        "never binds a ServiceAccount of kube-system or of its own namespace",
    );
    c.refused_by(
        by,
        "operator binding a kube-system ServiceAccount",
        crbs.create(
            &pp,
            &shape(
                "kube-system",
                POD_READER,
                vec![service_account("kube-system", "default")],
            ),
        )
        .await,
        "never binds a ServiceAccount of kube-system",
    );
    c.refused_by(
        by,
        "operator creating an unlabelled binding",
        crbs.create(
            &pp,
            &cluster_role_binding(&env, "unlabelled", POD_READER, vec![user("alice")], None),
        )
        .await,
        "must carry the label app.kubernetes.io/managed-by=kubepim",
    );
    let mut no_request = shape("no-request", POD_READER, vec![user("alice")]);
    no_request.metadata.annotations = None;
    c.refused_by(
        by,
        "operator creating a binding that names no request",
        crbs.create(&pp, &no_request).await,
        "must name its ActivationRequest (annotation kubepim.io/request)",
    );
    // RBAC: `bind` on the bindable roles only.
    c.refused(
        "operator binding cluster-admin",
        crbs.create(
            &pp,
            &shape("cluster-admin", "cluster-admin", vec![user("alice")]),
        )
        .await,
        "is attempting to grant RBAC permissions not currently held",
    );
    // A role not in bindableRoles, with permissions the operator does not hold.
    let unbindable = ClusterRole {
        metadata: env.meta("unbindable"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    fixtures::create(&Api::all(env.admin()), &unbindable).await;
    c.refused(
        "operator binding a role outside bindableRoles",
        crbs.create(
            &pp,
            &shape("unbindable", &env.name("unbindable"), vec![user("alice")]),
        )
        .await,
        "is attempting to grant RBAC permissions not currently held",
    );
    // RBAC: never changes a binding, never writes roles.
    c.refused(
        "operator patching a binding",
        crbs.patch(
            &env.name("good"),
            &PatchParams::default(),
            &Patch::Merge(json!({"subjects": [user("mallory")]})),
        )
        .await,
        "cannot patch resource \"clusterrolebindings\"",
    );
    c.refused(
        "operator creating a ClusterRole",
        Api::<ClusterRole>::all(operator.clone())
            .create(
                &pp,
                &ClusterRole {
                    metadata: env.meta("escalate"),
                    ..Default::default()
                },
            )
            .await,
        "cannot create resource \"clusterroles\"",
    );
    // Deletes: managed ones only.
    let admin_crbs: Api<ClusterRoleBinding> = Api::all(env.admin());
    let unmanaged = fixtures::create(
        &admin_crbs,
        &cluster_role_binding(&env, "unmanaged", "view", vec![user("bob")], None),
    )
    .await;
    c.refused_by(
        by,
        "operator deleting an unmanaged binding",
        crbs.delete(&unmanaged.name_any(), &DeleteParams::default())
            .await,
        &format!(
            "may delete only the bindings it manages (label app.kubernetes.io/managed-by=kubepim): ClusterRoleBinding {} is not one",
            unmanaged.name_any()
        ),
    );
    if let Some(good) = good {
        c.accepted(
            "operator deleting a managed binding",
            crbs.delete(&good.name_any(), &DeleteParams::default())
                .await,
        );
    }
    let _ = rbs.delete(&rb.name_any(), &DeleteParams::default()).await;
    let _ = admin_crbs
        .delete(&unmanaged.name_any(), &DeleteParams::default())
        .await;
    c.finish();
}

/// The operator's ClusterRole, as rendered: no wildcard, no escalate or impersonate, `bind` only
/// by name, no write on roles; and the API server agrees (SubjectAccessReviews).
#[tokio::test]
async fn operator_rbac_is_least_privilege() {
    let Some((env, docs)) = shared("operator-rbac").await else {
        return;
    };
    let mut c = Checks::default();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "kubepim-operator")
        .expect("the operator's ClusterRole");
    for rule in role["rules"].as_array().expect("rules") {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        let (verbs, resources, groups) = (list("verbs"), list("resources"), list("apiGroups"));
        let names = list("resourceNames");
        c.check(
            &format!("rule {rule}"),
            !verbs
                .iter()
                .chain(&resources)
                .chain(&groups)
                .any(|s| s == "*"),
            "has a wildcard",
        );
        c.check(
            &format!("rule {rule}"),
            !verbs.iter().any(|v| v == "escalate" || v == "impersonate"),
            "has escalate or impersonate",
        );
        c.check(
            &format!("rule {rule}"),
            !verbs.iter().any(|v| v == "bind") || !names.is_empty(),
            "has bind without resourceNames",
        );
        let on_roles = resources
            .iter()
            .any(|r| r == "roles" || r == "clusterroles");
        c.check(
            &format!("rule {rule}"),
            !on_roles
                || verbs
                    .iter()
                    .all(|v| matches!(v.as_str(), "get" | "list" | "watch" | "bind")),
            "writes roles",
        );
    }
    let admin = env.admin();
    let me = security::operator_username();
    let groups = security::service_account_groups(RELEASE_NAMESPACE);
    let rbac = |resource: &'static str, name: Option<&'static str>| (RBAC, resource, name, None);
    let cases: Vec<(&str, security::Target, bool)> = vec![
        ("bind", rbac("clusterroles", Some("cluster-admin")), false),
        ("bind", rbac("clusterroles", Some("admin")), false),
        (
            "escalate",
            rbac("clusterroles", Some("cluster-admin")),
            false,
        ),
        ("create", rbac("clusterroles", None), false),
        ("update", rbac("clusterrolebindings", None), false),
        ("impersonate", ("", "users", Some("admin"), None), false),
        (
            "impersonate",
            ("", "groups", Some("system:masters"), None),
            false,
        ),
        ("get", ("", "secrets", None, Some(RELEASE_NAMESPACE)), false),
        (
            "patch",
            ("kubepim.io", "privilegedroles", None, None),
            false,
        ),
        // History retention deletes ended requests one by one, after exporting each; never all
        // at once, and never policy.
        (
            "deletecollection",
            ("kubepim.io", "activationrequests", None, None),
            false,
        ),
        (
            "delete",
            ("kubepim.io", "privilegedroles", None, None),
            false,
        ),
        ("delete", ("kubepim.io", "eligibilities", None, None), false),
        (
            "delete",
            ("kubepim.io", "activationrequests", None, None),
            true,
        ),
        ("bind", rbac("clusterroles", Some(POD_READER)), true),
        ("create", rbac("clusterrolebindings", None), true),
        (
            "manage",
            ("kubepim.io", "activationrequests", None, None),
            true,
        ),
        (
            "patch",
            ("kubepim.io", "activationrequests/status", None, None),
            true,
        ),
    ];
    for (verb, what, want) in cases {
        let got = security::allowed(&admin, &me, &groups, what, verb).await;
        c.check(
            &format!("operator {verb} {what:?}"),
            got == want,
            format!("allowed={got}, want {want}"),
        );
    }
    c.finish();
}

// ------------------------------------------------------------------------------------------------
// With the operator: row 13 (controller-side), row 6 without rbacApproval, row 15 off
// ------------------------------------------------------------------------------------------------

fn in_an_hour() -> Time {
    let at = chrono::Utc::now() + chrono::Duration::hours(1);
    Time(
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .parse()
            .expect("timestamp"),
    )
}

async fn bindings_of(env: &Env, request: &str) -> usize {
    fixtures::role_bindings_of(env, request).await.len()
        + fixtures::cluster_role_bindings_of(env, request).await.len()
}

/// The real operator, running as the chart's ServiceAccount under every admission policy: it
/// activates what it should (its status, finalizer and binding writes pass the policies) and
/// denies, without a binding, what row 13 lists. Then row 6 when `admission.rbacApproval` is off
/// (an approval from a non-approver is admitted but does not count) and row 15 when prevention is
/// switched off (the out-of-band binding is admitted; detecting it is the scanner's job).
#[tokio::test]
async fn controller_enforces_eligibility_under_the_policies() {
    if !cluster_configured() {
        skip(NO_CLUSTER);
        return;
    }
    let Some(env) = Env::isolated("security-controller").await else {
        return;
    };
    if env.startup().is_none() {
        // It reinstalls the release with other values: not on a cluster shared with the others.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED: controller_enforces_eligibility_under_the_policies needs a control plane of its own (KUBEBUILDER_ASSETS)"
        );
        return;
    }
    let mut values = shared_values();
    values["admission"]["rbacApproval"] = json!(false);
    values["bindableRoles"]["roles"] = json!([]);
    let Some(release) = security::install(&env, values.clone())
        .await
        .unwrap_or_else(|e| panic!("installing: {e:#}"))
    else {
        skip(NO_HELM);
        return;
    };
    bind_approvers(&env).await.expect("approvers");
    wait_enforced(&env, &release.docs)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut c = Checks::default();

    let config = security::service_account_config(&env, RELEASE_NAMESPACE, OPERATOR_SA)
        .await
        .expect("operator identity");
    let mut config = config;
    config.default_retry = false;
    let client = Client::try_from(config).expect("operator client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(kubepim::runtime::run_operator(
        client,
        kubepim::runtime::OperatorSettings::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let ns = env.namespace("apps").await;
    let elsewhere = env.namespace("elsewhere").await;
    let role = fixtures::create_role(
        &env,
        &fixtures::pod_reader(&env, "pods", &[&ns, &elsewhere]),
    )
    .await;
    let role_name = role.name_any();
    let mut carol_only =
        fixtures::eligibility(&env, "carol", &role_name, vec![SubjectRef::user("carol")]);
    carol_only.spec.namespaces = vec![ns.clone()];
    fixtures::create_eligibility(&env, &carol_only).await;
    let mut later = fixtures::eligibility(
        &env,
        "mallory-later",
        &role_name,
        vec![SubjectRef::user("mallory")],
    );
    later.spec.not_before = Some(in_an_hour());
    fixtures::create_eligibility(&env, &later).await;

    // Row 13: each refused by the controller: Denied with its reason, and no binding.
    let cases = [
        (
            "not-eligible",
            "alice",
            vec![ns.clone()],
            "30m",
            "NotEligible",
        ),
        (
            "namespace",
            "carol",
            vec![elsewhere.clone()],
            "30m",
            "NamespaceNotAllowed",
        ),
        (
            "too-long",
            "carol",
            vec![ns.clone()],
            "2h",
            "DurationTooLong",
        ),
        (
            "window",
            "mallory",
            vec![ns.clone()],
            "30m",
            "EligibilityNotYetValid",
        ),
    ];
    for (base, who, namespaces, duration, reason) in &cases {
        let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        let r = fixtures::request(&env, base, who, &role_name, &namespaces, duration);
        let name = fixtures::submit(&env, who, &r).await.name_any();
        let denied = support::wait::phase(&env, &name, Phase::Denied).await;
        let got = denied.status.as_ref().and_then(|s| s.reason.clone());
        c.check(
            &format!("row 13 {base}: reason"),
            got.as_deref() == Some(*reason),
            format!("{got:?}, want {reason}"),
        );
        let n = bindings_of(&env, &name).await;
        c.check(
            &format!("row 13 {base}: no binding"),
            n == 0,
            format!("{n} bindings"),
        );
    }
    // Positive control: eligible, allowed namespace, within the maximum.
    let ok = fixtures::request(&env, "eligible", "carol", &role_name, &[&ns], "30m");
    let ok = fixtures::submit(&env, "carol", &ok).await.name_any();
    support::wait::phase(&env, &ok, Phase::Active).await;
    let granted = fixtures::role_bindings_of(&env, &ok).await;
    let subjects: Vec<String> = granted
        .iter()
        .flat_map(|b| b.subjects.iter().flatten().map(|s| s.name.clone()))
        .collect();
    c.check(
        "eligible request: one binding for carol",
        granted.len() == 1 && subjects == ["carol"],
        format!("{subjects:?}"),
    );

    // Approval under the policies; row 6 with rbacApproval off: the controller ignores it.
    let gated = fixtures::with_approvers(
        fixtures::pod_reader(&env, "gated", &[&ns]),
        1,
        &["bob"],
        &[],
    );
    let gated = fixtures::create_role(&env, &gated).await.name_any();
    fixtures::create_eligibility(
        &env,
        &fixtures::eligibility(&env, "carol-gated", &gated, vec![SubjectRef::user("carol")]),
    )
    .await;
    let asked = fixtures::request(&env, "gated", "carol", &gated, &[&ns], "30m");
    let asked = fixtures::submit(&env, "carol", &asked).await.name_any();
    support::wait::phase(&env, &asked, Phase::Pending).await;
    c.accepted(
        "mallory approving (admitted: rbacApproval off)",
        approve(&env, "mallory", &asked).await,
    );
    support::wait::stays(&env, &asked, Some(Phase::Pending), Duration::from_secs(2)).await;
    let n = bindings_of(&env, &asked).await;
    c.check(
        "row 6: a non-approver's approval grants nothing",
        n == 0,
        format!("{n} bindings"),
    );
    c.accepted("bob approving", approve(&env, "bob", &asked).await);
    support::wait::phase(&env, &asked, Phase::Active).await;
    let n = bindings_of(&env, &asked).await;
    c.check("approved request: bound", n == 1, format!("{n} bindings"));
    support::invariants::assert_i1(&env).await;

    // A stolen operator token makes no lasting binding: the shape the operator-bindings policy
    // accepts (managed label, request annotation, one User subject), pointing at carol's own
    // Pending request, is admitted, and then deleted by the binding guard: it is no binding
    // recorded for an Active request.
    let pending = fixtures::request(&env, "pending", "carol", &gated, &[&ns], "30m");
    let pending = fixtures::submit(&env, "carol", &pending).await.name_any();
    support::wait::phase(&env, &pending, Phase::Pending).await;
    let thief = security::service_account_client(&env, RELEASE_NAMESPACE, OPERATOR_SA).await;
    let stolen = cluster_role_binding(
        &env,
        "stolen",
        POD_READER,
        vec![user("carol")],
        Some(&pending),
    );
    let stolen_name = stolen.name_any();
    c.accepted(
        "a stolen operator token creating a managed-shaped ClusterRoleBinding (admitted)",
        Api::<ClusterRoleBinding>::all(thief)
            .create(&PostParams::default(), &stolen)
            .await,
    );
    let removed =
        security::eventually("the stolen binding deleted", Duration::from_secs(5), || {
            let admin_crbs = Api::<ClusterRoleBinding>::all(env.admin());
            let name = stolen_name.clone();
            async move {
                match admin_crbs.get_opt(&name).await {
                    Ok(None) => Ok(()),
                    Ok(Some(_)) => Err("still there".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
    c.check(
        "a binding made with a stolen operator token is deleted within 5 s",
        removed.is_ok(),
        format!("{removed:?}"),
    );
    let still = fixtures::can(&env, "carol", "list", "pods", Some(&elsewhere)).await;
    c.check(
        "carol cannot list pods elsewhere through the stolen binding",
        !still,
        "allowed".to_string(),
    );
    support::invariants::assert_i1(&env).await;

    // Row 15: prevention on (the operator's own bindings above went through), then off.
    let admin_crbs: Api<ClusterRoleBinding> = Api::all(env.admin());
    let standing = cluster_role_binding(&env, "standing", POD_READER, vec![user("alice")], None);
    c.refused_by(
        "standing-privilege",
        "admin binding pod-reader with prevention on",
        admin_crbs.create(&PostParams::default(), &standing).await,
        "which kubepim hands out just in time",
    );
    let mut off = values.clone();
    off["standingPrivilege"]["prevent"] = json!(false);
    let off_docs = security::render(&off, security::TEMPLATES)
        .expect("render")
        .expect("helm_python");
    security::apply(&env.admin(), &off_docs)
        .await
        .expect("apply");
    security::prune(&env.admin(), &release.docs, &off_docs)
        .await
        .expect("prune");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let admitted = security::eventually("prevention off", POLICY_TIMEOUT, || async {
        admin_crbs
            .create(&dry, &standing)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    c.check(
        "prevention off takes effect",
        admitted.is_ok(),
        format!("{admitted:?}"),
    );
    c.accepted(
        "admin binding pod-reader with prevention off (detected later, not refused)",
        admin_crbs.create(&PostParams::default(), &standing).await,
    );
    let _ = admin_crbs
        .delete(&standing.name_any(), &DeleteParams::default())
        .await;

    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(30), operator).await {
        Ok(Ok(Ok(()))) => {}
        other => c.check("operator stops cleanly", false, format!("{other:?}")),
    }
    c.finish();
}
