//! The operator in a pod, installed by the chart as `helm install` would (issue 10 §6): a
//! control plane and one node (containerd, kubelet, kube-controller-manager, kube-scheduler) from
//! `tests/support/node.rs`, the chart rendered with real Helm and applied, the image imported
//! into the node's containerd. Then a short journey through the pod: readiness, a request
//! approved and expired, the webhook stamping the requester, metrics scraped from the pod, and a
//! rollout restart of two replicas (leader election on) with a request still served.
//!
//! Opt-in (root, binaries, images: see CONTRIBUTING.md):
//! `KUBEPIM_NODE_E2E=1 KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_node`
#[allow(dead_code)]
#[path = "support/node.rs"]
mod node;
#[allow(dead_code)]
#[path = "support/security.rs"]
mod security;
mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubepim::api::{ActivationRequest, Phase, SubjectRef};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use security::RELEASE_NAMESPACE;
use support::envtest::{ControlPlaneOptions, NAMESPACE_READER, POD_READER};
use support::{Env, fixtures, wait};

const DEPLOYMENT: &str = "kubepim";
/// The operator's pods (the foothold remover's pods are component=foothold-remover).
const SELECTOR: &str = "app.kubernetes.io/name=kubepim,app.kubernetes.io/instance=kubepim,app.kubernetes.io/component=operator";
/// Pods start, probes pass, rollouts surge: slower than the in-process operator.
const POD_TIMEOUT: Duration = Duration::from_secs(180);

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Every template of the chart (a full `helm install`).
fn all_templates() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/kubepim/templates");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("chart templates")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// Helm's install order for the kinds the chart has; anything else after them.
fn kind_rank(doc: &Value) -> usize {
    const ORDER: &[&str] = &[
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    ];
    let kind = doc["kind"].as_str().unwrap_or_default();
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// `helm install kubepim charts/kubepim -n <ns> --create-namespace --set image.repository=kubepim
/// --set image.tag=<version> --set image.pullPolicy=Never …` (`helm upgrade` when installed).
fn values(api: (IpAddr, u16), replicas: u32) -> Value {
    json!({
        "image": {
            "repository": "kubepim",
            "tag": env!("CARGO_PKG_VERSION"),
            "pullPolicy": "Never",
        },
        "replicas": replicas,
        "bindableRoles": {"clusterRoles": [POD_READER, NAMESPACE_READER]},
        "operator": {"logFormat": "text", "sweepInterval": "5s"},
        // No kube-proxy on the test node: the `kubernetes` Service's ClusterIP leads nowhere.
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": api.0.to_string()},
            {"name": "KUBERNETES_SERVICE_PORT", "value": api.1.to_string()},
        ],
    })
}

async fn helm_install(env: &Env, values: &Value) -> Option<Vec<Value>> {
    let names = all_templates();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut docs = security::render(values, &names).unwrap_or_else(|e| panic!("render: {e:#}"))?;
    docs.sort_by_key(kind_rank);
    let admin = env.admin();
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(RELEASE_NAMESPACE.into()),
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
        Err(e) => panic!("creating namespace {RELEASE_NAMESPACE}: {e}"),
    }
    openshift_service_ca(env).await;
    security::apply(&admin, &docs)
        .await
        .unwrap_or_else(|e| panic!("applying the chart: {e:#}"));
    Some(docs)
}

/// The kube-apiserver in /opt/kubebuilder-assets may be built from openshift/kubernetes, whose
/// ServiceAccount admission adds the ConfigMap `openshift-service-ca.crt` to every token volume;
/// on such a server the pod does not start without it. Harmless elsewhere.
async fn openshift_service_ca(env: &Env) {
    let Some(cp) = env.control_plane() else {
        return;
    };
    let ca = std::fs::read_to_string(cp.ca_file()).expect("ca file");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("openshift-service-ca.crt".into()),
            namespace: Some(RELEASE_NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("service-ca.crt".to_string(), ca)])),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(env.admin(), RELEASE_NAMESPACE)
        .patch(
            "openshift-service-ca.crt",
            &PatchParams::apply("kubepim-e2e").force(),
            &Patch::Apply(&cm),
        )
        .await
        .expect("openshift-service-ca.crt");
}

/// What the operator pods look like, for failure messages.
async fn pods_state(admin: &Client) -> String {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    match pods.list(&ListParams::default().labels(SELECTOR)).await {
        Err(e) => format!("listing pods: {e}"),
        Ok(list) => list
            .items
            .iter()
            .map(|p| {
                let status = p.status.clone().unwrap_or_default();
                let waiting: Vec<String> = status
                    .container_statuses
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| c.state.and_then(|s| s.waiting))
                    .map(|w| {
                        format!(
                            "{}: {}",
                            w.reason.unwrap_or_default(),
                            w.message.unwrap_or_default()
                        )
                    })
                    .collect();
                format!(
                    "{} {} ip={} {waiting:?}",
                    p.name_any(),
                    status.phase.unwrap_or_default(),
                    status.pod_ip.unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Waits until the Deployment has rolled out: `replicas` pods, all updated and ready, no others.
async fn rolled_out(env: &Env, node: &mut node::Node, replicas: i32) -> Vec<Pod> {
    let admin = env.admin();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    let deadline = std::time::Instant::now() + POD_TIMEOUT;
    loop {
        if let Err(e) = node.check() {
            panic!("the node failed: {e:#}");
        }
        let d = deployments.get(DEPLOYMENT).await.expect("deployment");
        let status = d.status.clone().unwrap_or_default();
        let generation = d.metadata.generation.unwrap_or_default();
        let done = status.observed_generation.unwrap_or_default() >= generation
            && status.replicas == Some(replicas)
            && status.updated_replicas == Some(replicas)
            && status.ready_replicas == Some(replicas)
            && status.available_replicas == Some(replicas);
        if done {
            let list = pods
                .list(&ListParams::default().labels(SELECTOR))
                .await
                .expect("pods");
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            if running.len() == replicas as usize {
                return running;
            }
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "deployment {DEPLOYMENT} not rolled out to {replicas} after {POD_TIMEOUT:?}: \
                 status {status:?}; pods: {}\nkubelet:\n{}\ncontainerd:\n{}",
                pods_state(&admin).await,
                node.log_tail("kubelet", 20),
                node.log_tail("containerd", 10),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `GET http://<addr><path>` (HTTP/1.0, no client library needed): status and body.
async fn http_get(addr: (IpAddr, u16), path: &str) -> Result<(u16, String), String> {
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("connecting to {addr:?}: timed out"))?
        .map_err(|e| format!("connecting to {addr:?}: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.0);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .map_err(|_| "reading: timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn pod_ip(pod: &Pod) -> IpAddr {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("pod {} has no IP", pod.name_any()))
}

/// Alice asks without naming herself (the webhook stamps her), bob approves, the grant becomes
/// Active; returns the request's name.
async fn served_request(env: &Env, role: &str, ns: &str, base: &str, duration: &str) -> String {
    let mut ar = fixtures::request(env, base, "alice", role, &[ns], duration);
    ar.spec.requester = None;
    let created: ActivationRequest = wait::until(
        env,
        "the webhook to admit alice's request",
        POD_TIMEOUT,
        || {
            let api: Api<ActivationRequest> = Api::all(env.client("alice"));
            let ar = ar.clone();
            async move {
                api.create(&PostParams::default(), &ar)
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    let requester = created
        .spec
        .requester
        .clone()
        .expect("spec.requester stamped");
    assert_eq!(requester.username, "alice", "the webhook stamps the caller");
    assert!(
        requester.groups.contains(&"payments-oncall".to_string()),
        "the webhook stamps the caller's groups: {:?}",
        requester.groups
    );
    let name = created.name_any();
    wait::phase_within(env, &name, Phase::Pending, POD_TIMEOUT).await;
    fixtures::approve(env, "bob", &name).await;
    wait::phase_within(env, &name, Phase::Active, POD_TIMEOUT).await;
    assert!(
        !fixtures::role_bindings_of(env, &name).await.is_empty(),
        "an Active request has its RoleBinding"
    );
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_in_a_pod_installed_by_the_chart() {
    let pre = match node::prerequisites() {
        Ok(pre) => pre,
        Err(reason) => {
            say(&format!("SKIPPED: e2e_node: {reason}"));
            return;
        }
    };
    let options = ControlPlaneOptions {
        address: Some(pre.node_ip),
        nodes: true,
        extra_users: vec![node::node_user()],
        ..Default::default()
    };
    let Some(env) = Env::local("node", options).await else {
        return;
    };
    let cp = env.control_plane().expect("a local control plane");
    let api = (cp.address, cp.port);
    let mut node = node::Node::start(&cp, &pre)
        .await
        .unwrap_or_else(|e| panic!("starting the node: {e:#}"));

    // helm install, one replica.
    let Some(_docs) = helm_install(&env, &values(api, 1)).await else {
        say("SKIPPED: e2e_node: python3 module helm_python missing (pip install helm-python-sdk)");
        return;
    };
    let pods = rolled_out(&env, &mut node, 1).await;
    let ip = pod_ip(&pods[0]);
    let (code, body) = http_get((ip, 8080), "/readyz")
        .await
        .unwrap_or_else(|e| panic!("GET /readyz from the pod: {e}"));
    assert_eq!(code, 200, "/readyz: {body}");

    // A request approved and expired, its requester stamped by the webhook in the pod.
    let ns = env.namespace("apps").await;
    let mut pr =
        fixtures::with_approvers(fixtures::pod_reader(&env, "pods", &[&ns]), 1, &["bob"], &[]);
    pr.spec.approval.pending_timeout = fixtures::dur("10m");
    let role = fixtures::create_role(&env, &pr).await.name_any();
    fixtures::create_eligibility(
        &env,
        &fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]),
    )
    .await;
    let first = served_request(&env, &role, &ns, "first", "15s").await;
    wait::phase_within(&env, &first, Phase::Expired, Duration::from_secs(60)).await;
    wait::until(
        &env,
        "the expired grant's binding to go",
        wait::TIMEOUT,
        || async {
            let left = fixtures::role_bindings_of(&env, &first).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} binding(s) left", left.len()))
            }
        },
    )
    .await;

    // Metrics from the pod's port.
    let (code, metrics) = http_get((ip, 8080), "/metrics")
        .await
        .unwrap_or_else(|e| panic!("GET /metrics from the pod: {e}"));
    assert_eq!(code, 200);
    for series in ["kubepim_is_leader", "kubepim_webhook_serving"] {
        assert!(
            metrics.contains(series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }
    say(&format!(
        "e2e_node: pod {} at {ip}: /readyz 200, /metrics {} lines",
        pods[0].name_any(),
        metrics.lines().count()
    ));

    // helm upgrade --set replicas=2 (leader election on), then a rollout restart.
    helm_install(&env, &values(api, 2)).await;
    rolled_out(&env, &mut node, 2).await;
    let restarted = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": chrono::Utc::now().to_rfc3339(),
    }}}}});
    Api::<Deployment>::namespaced(env.admin(), RELEASE_NAMESPACE)
        .patch(
            DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Merge(&restarted),
        )
        .await
        .expect("rollout restart");
    let after = rolled_out(&env, &mut node, 2).await;
    let names: Vec<String> = after.iter().map(|p| p.name_any()).collect();
    assert!(
        pods.iter().all(|old| !names.contains(&old.name_any())),
        "the restart replaced the pods"
    );
    let leases: Api<Lease> = Api::namespaced(env.admin(), RELEASE_NAMESPACE);
    let holder = wait::until(&env, "a leader among the new pods", POD_TIMEOUT, || async {
        let list = leases
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let holders: Vec<String> = list
            .items
            .iter()
            .filter_map(|l| l.spec.as_ref()?.holder_identity.clone())
            .collect();
        holders
            .iter()
            .find(|h| names.iter().any(|n| h.contains(n.as_str())))
            .cloned()
            .ok_or_else(|| format!("lease holders {holders:?}, pods {names:?}"))
    })
    .await;
    let second = served_request(&env, &role, &ns, "second", "10m").await;
    say(&format!(
        "e2e_node: after the rollout restart pods {names:?}, leader {holder}; request {second} Active"
    ));
    fixtures::cancel(&env, "alice", &second).await;
    drop(node);
}
