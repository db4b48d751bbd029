//! The chart's security layer on a test cluster: render `charts/kubepim` with real Helm
//! (helm-python-sdk, called through `python3`), apply what it renders, wait until the API server
//! enforces the admission policies, and hand out clients for ServiceAccount identities (the
//! operator runs as one, as it does in a cluster).
//!
//! Used by `tests/e2e_security.rs` through `#[path]`; it only needs `crate::support`.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, Config};
use serde_json::{Value, json};

use crate::support::Env;

/// Namespace the chart is "installed" into, and the operator's ServiceAccount there.
pub const RELEASE_NAMESPACE: &str = "kubepim-e2e-system";
pub const OPERATOR_SA: &str = "kubepim";
const RELEASE_NAME: &str = "kubepim";
const MANAGER: &str = "kubepim-e2e-chart";

/// The operator's username as the API server sees it (the chart's `kubepim.operatorUsername`).
pub fn operator_username() -> String {
    format!("system:serviceaccount:{RELEASE_NAMESPACE}:{OPERATOR_SA}")
}

/// The groups the API server gives a ServiceAccount.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".into(),
    ]
}

const RENDER: &str = r#"
import json, sys
try:
    from helm_python import Chart
except ImportError:
    print("NO_HELM_PYTHON")
    sys.exit(0)
out = Chart.load(sys.argv[1]).render(json.loads(sys.argv[2]), name=sys.argv[3], namespace=sys.argv[4])
print(json.dumps(out))
"#;

/// Renders the chart's templates whose file names are in `templates` with `values`. `Ok(None)`
/// when python3 or the helm_python module is missing (the caller skips).
pub fn render(values: &Value, templates: &[&str]) -> Result<Option<Vec<Value>>> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/kubepim");
    let output = match Command::new("python3")
        .arg("-c")
        .arg(RENDER)
        .arg(&chart)
        .arg(values.to_string())
        .arg(RELEASE_NAME)
        .arg(RELEASE_NAMESPACE)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("running python3"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "rendering the chart failed:\n{}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if stdout.trim() == "NO_HELM_PYTHON" {
        return Ok(None);
    }
    let files: serde_json::Map<String, Value> =
        serde_json::from_str(&stdout).context("render output")?;
    let mut docs = Vec::new();
    for (path, text) in files {
        let file = path.rsplit('/').next().unwrap_or_default();
        if !templates.contains(&file) {
            continue;
        }
        let text = text.as_str().unwrap_or_default();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(text)
            .with_context(|| format!("parsing the rendered {path}:\n{text}"))?;
        docs.extend(parsed.into_iter().filter(|d| d.is_object()));
    }
    Ok(Some(docs))
}

fn gvk_of(doc: &Value) -> Result<GroupVersionKind> {
    let api_version = doc["apiVersion"].as_str().context("apiVersion")?;
    let kind = doc["kind"].as_str().context("kind")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(GroupVersionKind::gvk(group, version, kind))
}

async fn api_for(client: &Client, doc: &Value) -> Result<(Api<DynamicObject>, String)> {
    let gvk = gvk_of(doc)?;
    let (resource, caps) = pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {gvk:?}"))?;
    let name = doc["metadata"]["name"]
        .as_str()
        .context("metadata.name")?
        .to_string();
    let api = match (caps.scope, doc["metadata"]["namespace"].as_str()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        (kube::discovery::Scope::Namespaced, None) => {
            Api::namespaced_with(client.clone(), RELEASE_NAMESPACE, &resource)
        }
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    Ok((api, name))
}

fn identity(doc: &Value) -> (String, String, String) {
    (
        doc["kind"].as_str().unwrap_or_default().to_string(),
        doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Server-side applies every document (as `helm install` would create them).
pub async fn apply(admin: &Client, docs: &[Value]) -> Result<()> {
    let ssa = PatchParams::apply(MANAGER).force();
    for doc in docs {
        let (api, name) = api_for(admin, doc).await?;
        api.patch(&name, &ssa, &Patch::Apply(doc))
            .await
            .with_context(|| format!("applying {:?}", identity(doc)))?;
    }
    Ok(())
}

/// Deletes what `old` has and `new` does not (as `helm upgrade` would).
pub async fn prune(admin: &Client, old: &[Value], new: &[Value]) -> Result<()> {
    let keep: Vec<_> = new.iter().map(identity).collect();
    for doc in old.iter().filter(|d| !keep.contains(&identity(d))) {
        let (api, name) = api_for(admin, doc).await?;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {:?}", identity(doc))),
        }
    }
    Ok(())
}

async fn ensure_namespace(admin: &Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// A ServiceAccount token (TokenRequest, 1 h), and its API server's client configuration.
pub async fn service_account_config(env: &Env, namespace: &str, name: &str) -> Result<Config> {
    let admin = env.admin();
    ensure_namespace(&admin, namespace).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).with_context(|| format!("creating ServiceAccount {name}")),
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let issued: TokenRequest = sas
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for {namespace}/{name}"))?;
    let token = issued.status.context("token request status")?.token;
    // The admin's configuration for the server and its CA; the identity is the token alone.
    let mut config = env.config("admin");
    config.auth_info = serde_json::from_value(json!({ "token": token }))?;
    Ok(config)
}

/// A client authenticated as the ServiceAccount `namespace/name` (created if missing).
pub async fn service_account_client(env: &Env, namespace: &str, name: &str) -> Client {
    let config = service_account_config(env, namespace, name)
        .await
        .unwrap_or_else(|e| panic!("ServiceAccount {namespace}/{name}: {e:#}"));
    Client::try_from(config).expect("ServiceAccount client")
}

/// What an access review asks about: API group, resource, name, namespace.
pub type Target<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

/// Asks the API server whether `user` (with `groups`) may `verb` the `group` `resource`.
pub async fn allowed(
    admin: &Client,
    user: &str,
    groups: &[String],
    (group, resource, name, namespace): Target<'_>,
    verb: &str,
) -> bool {
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.to_vec()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                name: name.map(Into::into),
                namespace: namespace.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &sar)
        .await
        .expect("SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// Polls `probe` until it returns `Ok` (RBAC and admission policies take effect through the API
/// server's informers, a moment after they are written).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            bail!("{what}: not in effect after {timeout:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The release: namespace, the operator's ServiceAccount, and the rendered templates applied.
pub struct Release {
    pub docs: Vec<Value>,
}

/// The templates of the security layer.
pub const TEMPLATES: &[&str] = &[
    "rbac.yaml",
    "admission-policies.yaml",
    "binding-policies.yaml",
    "self-protection-policies.yaml",
];

/// Where the self-protection probe's ServiceAccount lives.
pub const PROBE_NAMESPACE: &str = "kubepim-e2e-probe";
const PROBE: &str = "probe";

/// A ServiceAccount that RBAC allows broad writes (ConfigMaps, Secrets, pods, Services,
/// ServiceAccount tokens, Deployments, Leases, EndpointSlices, RBAC objects, CRDs) everywhere, as
/// a grant of a wide role would, and that no self-protection exemption covers: the self-protection
/// policies are what stands between it and kubepim's objects.
pub async fn self_protection_probe(env: &Env) -> Result<Client> {
    let admin = env.admin();
    let wide = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubepim-e2e-wide-writer"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "secrets", "pods", "pods/exec",
              "services", "endpoints", "serviceaccounts", "serviceaccounts/token", "namespaces"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
            {"apiGroups": ["rbac.authorization.k8s.io"],
             "resources": ["clusterroles", "clusterrolebindings", "roles", "rolebindings"],
             "verbs": ["get", "list", "create", "update", "patch", "delete", "bind", "escalate"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
            {"apiGroups": ["admissionregistration.k8s.io"],
             "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings",
               "validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
        ],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubepim-e2e-wide-writer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "kubepim-e2e-wide-writer"},
        "subjects": [{"kind": "ServiceAccount", "name": PROBE, "namespace": PROBE_NAMESPACE}],
    });
    apply(&admin, &[wide, binding]).await?;
    let config = service_account_config(env, PROBE_NAMESPACE, PROBE).await?;
    Ok(Client::try_from(config)?)
}

/// Renders with `values` and applies: the release namespace and ServiceAccount first (the chart's
/// Deployment template, not rendered here, would create the ServiceAccount). `Ok(None)` when the
/// chart cannot be rendered here (no helm_python).
pub async fn install(env: &Env, values: Value) -> Result<Option<Release>> {
    let Some(docs) = render(&values, TEMPLATES)? else {
        return Ok(None);
    };
    let admin = env.admin();
    ensure_namespace(&admin, RELEASE_NAMESPACE).await?;
    service_account_config(env, RELEASE_NAMESPACE, OPERATOR_SA).await?;
    apply(&admin, &docs).await?;
    Ok(Some(Release { docs }))
}

/// Names of the ValidatingAdmissionPolicies a release has.
pub fn policy_names(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .filter(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .filter_map(|d| d["metadata"]["name"].as_str().map(String::from))
        .collect()
}
