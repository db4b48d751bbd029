//! End-to-end: a grant cannot mint kubepim's identity, switch it off or forge its bindings
//! (security contract I6 and I7), against a real API server with the chart's policies applied.
//!
//! The attack reported against 426d566: with `edit` granted cluster-wide, the requester created a
//! token for the operator's ServiceAccount (`kubectl create token kubepim -n kubepim`) that
//! outlived the grant, and could read and update the webhook's TLS Secret and delete the
//! operator's ServiceAccount and Deployment. Here a ServiceAccount with broad RBAC everywhere
//! (the "probe", standing in for that grant: the built-in `edit` is empty on a control plane
//! without the aggregation controller) tries each of those, and more; the self-protection
//! policies refuse every one, each with a positive control elsewhere. On 426d566 (no such
//! policies) every one of these writes was admitted.
//!
//! What admission cannot see is probed too, so that SECURITY.md's residual risks are facts: reads
//! (the probe reads the Secret) and admission policies (a policy that denies the probe everything
//! does not stop it changing a ValidatingAdmissionPolicy, while it does stop it creating a
//! webhook configuration: those kubepim protects).
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_selfprotect`
#[allow(dead_code)]
#[path = "support/security.rs"]
mod security;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kubepim::api::labels;
use serde_json::json;

use security::{OPERATOR_SA, PROBE_NAMESPACE, RELEASE_NAMESPACE};
use support::Env;
use support::envtest::POD_READER;

const RBAC: &str = "rbac.authorization.k8s.io";
const POLICY_TIMEOUT: Duration = Duration::from_secs(30);

fn dry() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

fn dry_patch() -> PatchParams {
    PatchParams {
        dry_run: true,
        ..Default::default()
    }
}

fn dry_delete() -> DeleteParams {
    DeleteParams {
        dry_run: true,
        ..Default::default()
    }
}

fn named(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        ..Default::default()
    }
}

/// Failures collected over a test, so one run reports every row.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    /// Refused by the policy `kubepim-<policy>` (any policy when `policy` is empty) with `needle`.
    fn refused<T>(
        &mut self,
        what: &str,
        policy: &str,
        needle: &str,
        result: Result<T, kube::Error>,
    ) {
        let by = if policy.is_empty() {
            "ValidatingAdmissionPolicy '".to_string()
        } else {
            format!("ValidatingAdmissionPolicy 'kubepim-{policy}'")
        };
        match result {
            Err(kube::Error::Api(e))
                if (e.code == 403 || e.code == 422)
                    && e.message.contains(&by)
                    && e.message.contains(needle) => {}
            Err(e) => self.0.push(format!(
                "{what}: refused, but not by {by} with {needle:?}: {e}"
            )),
            Ok(_) => self
                .0
                .push(format!("{what}: ACCEPTED, expected {by} to refuse it")),
        }
    }

    fn accepted<T>(&mut self, what: &str, result: Result<T, kube::Error>) {
        if let Err(e) = result {
            self.0
                .push(format!("{what}: REFUSED, expected success: {e}"));
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "failures:\n  - {}",
            self.0.join("\n  - ")
        );
    }
}

fn token_request() -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(24 * 3600),
            bound_object_ref: None,
        },
        ..Default::default()
    }
}

fn pod_as(namespace: &str, service_account: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "runs-as", "namespace": namespace},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }))
    .expect("a pod")
}

fn deployment_as(namespace: &str, service_account: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "runs-as", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "serviceAccountName": service_account,
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
        },
    }))
    .expect("a deployment")
}

fn binding(name: &str, namespace: &str, marks: Option<(&str, &str)>) -> RoleBinding {
    let mut metadata = named(name, Some(namespace));
    if let Some((label, annotation)) = marks {
        if !label.is_empty() {
            metadata.labels = Some(BTreeMap::from([(
                labels::MANAGED_BY.to_string(),
                label.to_string(),
            )]));
        }
        if !annotation.is_empty() {
            metadata.annotations = Some(BTreeMap::from([(
                annotation.to_string(),
                "some-request".to_string(),
            )]));
        }
    }
    RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: RBAC.into(),
            kind: "ClusterRole".into(),
            name: POD_READER.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some(RBAC.into()),
            kind: "User".into(),
            name: "alice".into(),
            namespace: None,
        }]),
    }
}

/// Installs the chart's policies and waits until each of the three policies the checks rely on
/// refuses the probe (the API server loads them one by one: one in force says nothing of the
/// others).
async fn install(env: &Env) -> Option<Client> {
    let values = json!({
        "admission": {"policies": {"enabled": true}},
        "bindableRoles": {"clusterRoles": [POD_READER]},
    });
    security::install(env, values)
        .await
        .unwrap_or_else(|e| panic!("installing the chart's policies: {e:#}"))?;
    let probe = security::self_protection_probe(env)
        .await
        .unwrap_or_else(|e| panic!("the probe: {e:#}"));
    let configmaps: Api<ConfigMap> = Api::namespaced(probe.clone(), RELEASE_NAMESPACE);
    let canary = ConfigMap {
        metadata: named("canary", Some(RELEASE_NAMESPACE)),
        ..Default::default()
    };
    let labelled: Api<RoleBinding> = Api::namespaced(probe.clone(), PROBE_NAMESPACE);
    let forged = binding(
        "canary",
        PROBE_NAMESPACE,
        Some((labels::MANAGED_BY_VALUE, "")),
    );
    let crds: Api<CustomResourceDefinition> = Api::all(probe.clone());
    security::eventually("the self-protection policies", POLICY_TIMEOUT, || async {
        let namespace = configmaps.create(&dry(), &canary).await;
        let label = labelled.create(&dry(), &forged).await;
        let cluster = crds
            .delete("privilegedroles.kubepim.io", &dry_delete())
            .await
            .map(|_| ());
        match (namespace, label, cluster) {
            (Err(kube::Error::Api(a)), Err(kube::Error::Api(b)), Err(kube::Error::Api(c)))
                if a.message.contains("kubepim-protect-namespace")
                    && b.message.contains("kubepim-managed-label")
                    && c.message.contains("kubepim-protect-cluster") =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    Some(probe)
}

#[tokio::test]
async fn a_broad_grant_cannot_mint_the_operators_identity_nor_switch_kubepim_off() {
    let Some(env) = Env::isolated("selfprotect").await else {
        return;
    };
    let Some(probe) = install(&env).await else {
        eprintln!("SKIPPED: helm_python is not installed");
        return;
    };
    let admin = env.admin();
    let ns = RELEASE_NAMESPACE;
    let mut c = Checks::default();

    // Objects of the operator's, as the chart and the operator create them.
    let secret = Secret {
        metadata: named("kubepim-webhook-tls", Some(ns)),
        string_data: Some(BTreeMap::from([("tls.key".to_string(), "k".to_string())])),
        ..Default::default()
    };
    let service = Service {
        metadata: named("kubepim-webhook", Some(ns)),
        spec: Some(serde_json::from_value(json!({"ports": [{"port": 443}]})).expect("spec")),
        ..Default::default()
    };
    let lease = Lease {
        metadata: named("kubepim-leader", Some(ns)),
        ..Default::default()
    };
    for result in [
        Api::<Secret>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .map(drop),
        Api::<Service>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &service)
            .await
            .map(drop),
        Api::<Lease>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &lease)
            .await
            .map(drop),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("the administrator creating the operator's objects: {e}"),
        }
    }

    let by = "protect-namespace";
    let sas: Api<ServiceAccount> = Api::namespaced(probe.clone(), ns);
    c.refused(
        "minting a token for the operator's ServiceAccount",
        by,
        "may not CREATE serviceaccounts/token kubepim",
        sas.create_subresource::<TokenRequest, TokenRequest>(
            "token",
            OPERATOR_SA,
            &PostParams::default(),
            &token_request(),
        )
        .await,
    );
    let own: Api<ServiceAccount> = Api::namespaced(probe.clone(), PROBE_NAMESPACE);
    c.accepted(
        "positive control: a token for a ServiceAccount elsewhere",
        own.create_subresource::<TokenRequest, TokenRequest>(
            "token",
            "probe",
            &PostParams::default(),
            &token_request(),
        )
        .await,
    );
    c.refused(
        "a pod running as the operator",
        by,
        "may not CREATE pods",
        Api::<Pod>::namespaced(probe.clone(), ns)
            .create(&dry(), &pod_as(ns, OPERATOR_SA))
            .await,
    );
    c.accepted(
        "positive control: a pod elsewhere",
        Api::<Pod>::namespaced(probe.clone(), PROBE_NAMESPACE)
            .create(&dry(), &pod_as(PROBE_NAMESPACE, "probe"))
            .await,
    );
    c.refused(
        "a Deployment running as the operator",
        by,
        "may not CREATE deployments",
        Api::<Deployment>::namespaced(probe.clone(), ns)
            .create(&dry(), &deployment_as(ns, OPERATOR_SA))
            .await,
    );
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"tampered": "yes"}}}));
    c.refused(
        "updating the webhook's TLS Secret",
        by,
        "may not UPDATE secrets kubepim-webhook-tls",
        Api::<Secret>::namespaced(probe.clone(), ns)
            .patch("kubepim-webhook-tls", &dry_patch(), &relabel)
            .await,
    );
    c.refused(
        "deleting the webhook's TLS Secret",
        by,
        "may not DELETE secrets",
        Api::<Secret>::namespaced(probe.clone(), ns)
            .delete("kubepim-webhook-tls", &dry_delete())
            .await,
    );
    c.refused(
        "redirecting the webhook's Service",
        by,
        "may not UPDATE services",
        Api::<Service>::namespaced(probe.clone(), ns)
            .patch(
                "kubepim-webhook",
                &dry_patch(),
                &Patch::Merge(json!({"spec": {"selector": {"app": "mine"}}})),
            )
            .await,
    );
    c.refused(
        "taking the leader Lease",
        by,
        "may not UPDATE leases",
        Api::<Lease>::namespaced(probe.clone(), ns)
            .patch(
                "kubepim-leader",
                &dry_patch(),
                &Patch::Merge(json!({"spec": {"holderIdentity": "mallory"}})),
            )
            .await,
    );
    c.refused(
        "deleting the operator's ServiceAccount",
        by,
        "may not DELETE serviceaccounts kubepim",
        sas.delete(OPERATOR_SA, &dry_delete()).await,
    );
    c.refused(
        "a ConfigMap in the release namespace",
        by,
        "may not CREATE configmaps",
        Api::<ConfigMap>::namespaced(probe.clone(), ns)
            .create(
                &dry(),
                &ConfigMap {
                    metadata: named("mine", Some(ns)),
                    ..Default::default()
                },
            )
            .await,
    );
    c.accepted(
        "positive control: a ConfigMap elsewhere",
        Api::<ConfigMap>::namespaced(probe.clone(), PROBE_NAMESPACE)
            .create(
                &dry(),
                &ConfigMap {
                    metadata: named("mine", Some(PROBE_NAMESPACE)),
                    ..Default::default()
                },
            )
            .await,
    );

    let by = "protect-cluster";
    let crds: Api<CustomResourceDefinition> = Api::all(probe.clone());
    c.refused(
        "changing a kubepim CRD",
        by,
        "may not UPDATE activationrequests.kubepim.io",
        crds.patch("activationrequests.kubepim.io", &dry_patch(), &relabel)
            .await,
    );
    c.refused(
        "deleting a kubepim CRD",
        by,
        "may not DELETE privilegedroles.kubepim.io",
        crds.delete("privilegedroles.kubepim.io", &dry_delete())
            .await,
    );
    c.refused(
        "deleting the release namespace",
        by,
        "may not DELETE kubepim-e2e-system",
        Api::<k8s_openapi::api::core::v1::Namespace>::all(probe.clone())
            .delete(ns, &dry_delete())
            .await,
    );
    let roles: Api<ClusterRole> = Api::all(probe.clone());
    c.refused(
        "changing the operator's ClusterRole",
        by,
        "may not UPDATE kubepim-operator",
        roles
            .patch("kubepim-operator", &dry_patch(), &relabel)
            .await,
    );
    c.refused(
        "deleting the operator's ClusterRoleBinding",
        by,
        "may not DELETE kubepim-operator",
        Api::<ClusterRoleBinding>::all(probe.clone())
            .delete("kubepim-operator", &dry_delete())
            .await,
    );
    c.accepted(
        "positive control: a ClusterRole of another name",
        roles
            .create(
                &dry(),
                &ClusterRole {
                    metadata: named("someone-elses", None),
                    ..Default::default()
                },
            )
            .await,
    );

    // The managed label and annotations are the operator's alone.
    let by = "managed-label";
    let rbs: Api<RoleBinding> = Api::namespaced(probe.clone(), PROBE_NAMESPACE);
    c.refused(
        "a binding with kubepim's managed label",
        by,
        "only the kubepim operator may label a binding",
        rbs.create(
            &dry(),
            &binding(
                "labelled",
                PROBE_NAMESPACE,
                Some((labels::MANAGED_BY_VALUE, "")),
            ),
        )
        .await,
    );
    c.refused(
        "a binding with a kubepim.io/request annotation",
        by,
        "kubepim.io/request",
        rbs.create(
            &dry(),
            &binding("annotated", PROBE_NAMESPACE, Some(("", labels::REQUEST))),
        )
        .await,
    );
    c.refused(
        "a binding with a kubepim.io/expires-at annotation, as the administrator",
        by,
        "kubepim.io/expires-at",
        Api::<RoleBinding>::namespaced(admin.clone(), PROBE_NAMESPACE)
            .create(
                &dry(),
                &binding("annotated", PROBE_NAMESPACE, Some(("", labels::EXPIRES_AT))),
            )
            .await,
    );
    c.accepted(
        "positive control: a plain binding",
        rbs.create(&dry(), &binding("plain", PROBE_NAMESPACE, None))
            .await,
    );
    // A binding the operator made: nobody else may strip its label.
    let operator = security::service_account_client(&env, ns, OPERATOR_SA).await;
    let mut made = binding(
        "kubepim-made",
        PROBE_NAMESPACE,
        Some((labels::MANAGED_BY_VALUE, labels::REQUEST)),
    );
    made.metadata.annotations = Some(BTreeMap::from([(
        labels::REQUEST.to_string(),
        "some-request".to_string(),
    )]));
    Api::<RoleBinding>::namespaced(operator, PROBE_NAMESPACE)
        .create(&PostParams::default(), &made)
        .await
        .expect("the operator creates a managed binding");
    let strip = Patch::Json::<()>(
        serde_json::from_value(json!([
            {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"}
        ]))
        .expect("a JSON patch"),
    );
    c.refused(
        "stripping the managed label off the operator's binding, as the administrator",
        by,
        "is managed by kubepim",
        Api::<RoleBinding>::namespaced(admin.clone(), PROBE_NAMESPACE)
            .patch("kubepim-made", &dry_patch(), &strip)
            .await,
    );

    // What admission cannot see (SECURITY.md): reads, and admission configuration itself.
    c.accepted(
        "residual: the probe reads the webhook's Secret (reads are never admitted)",
        Api::<Secret>::namespaced(probe.clone(), ns)
            .get("kubepim-webhook-tls")
            .await,
    );
    // A policy that denies the probe everything, admission configuration included: once it
    // refuses the probe's ConfigMaps, its silence on policies and webhook configurations is the
    // API server exempting them, not a policy still loading.
    let deny_all: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": "e2e-deny-the-probe"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                {"apiGroups": [""], "apiVersions": ["*"], "operations": ["CREATE"],
                 "resources": ["configmaps"]},
                {"apiGroups": ["admissionregistration.k8s.io"], "apiVersions": ["*"],
                 "operations": ["CREATE", "UPDATE"], "resources": ["*"]},
            ]},
            "matchConditions": [{"name": "the-probe",
                "expression": format!("request.userInfo.username == 'system:serviceaccount:{PROBE_NAMESPACE}:probe'")}],
            "validations": [{"expression": "false", "message": "e2e: everything is denied to the probe"}],
        },
    }))
    .expect("a policy");
    let deny_binding: k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding =
        serde_json::from_value(json!({
            "metadata": {"name": "e2e-deny-the-probe"},
            "spec": {"policyName": "e2e-deny-the-probe", "validationActions": ["Deny"]},
        }))
        .expect("a binding");
    Api::<ValidatingAdmissionPolicy>::all(admin.clone())
        .create(&PostParams::default(), &deny_all)
        .await
        .expect("the deny-all policy");
    Api::all(admin.clone())
        .create(&PostParams::default(), &deny_binding)
        .await
        .expect("its binding");
    let cms: Api<ConfigMap> = Api::namespaced(probe.clone(), PROBE_NAMESPACE);
    let canary = ConfigMap {
        metadata: named("denied", Some(PROBE_NAMESPACE)),
        ..Default::default()
    };
    security::eventually("the deny-all policy in force", POLICY_TIMEOUT, || async {
        match cms.create(&dry(), &canary).await {
            Err(kube::Error::Api(e)) if e.message.contains("e2e-deny-the-probe") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    c.accepted(
        "residual: a policy does not apply to policies (the probe changes kubepim's own)",
        Api::<ValidatingAdmissionPolicy>::all(probe.clone())
            .patch("kubepim-protect-namespace", &dry_patch(), &relabel)
            .await,
    );
    // Webhook configurations, unlike policies, are subject to policies: kubepim's are protected.
    c.refused(
        "the probe creating a webhook configuration while the deny-all policy is in force",
        "",
        "e2e: everything is denied to the probe",
        Api::<ValidatingWebhookConfiguration>::all(probe.clone())
            .create(
                &dry(),
                &serde_json::from_value(json!({"metadata": {"name": "e2e-probe-webhook"}}))
                    .expect("a webhook configuration"),
            )
            .await,
    );
    let kubepims: MutatingWebhookConfiguration =
        serde_json::from_value(json!({"metadata": {"name": "kubepim"}})).expect("a configuration");
    match Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .create(&PostParams::default(), &kubepims)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("the administrator creating kubepim's webhook configuration: {e}"),
    }
    c.refused(
        "deleting kubepim's mutating webhook configuration",
        "protect-cluster",
        "may not DELETE kubepim",
        Api::<MutatingWebhookConfiguration>::all(probe.clone())
            .delete("kubepim", &dry_delete())
            .await,
    );
    c.finish();
}
