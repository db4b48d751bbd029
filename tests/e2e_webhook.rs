//! End-to-end: the operator-served admission webhook against a real API server.
//!
//! The chart's `webhook.yaml` is rendered with real Helm (helm-python-sdk, through `python3`) for
//! an operator outside the cluster (`admission.webhook.url: https://127.0.0.1:<port>`), and its
//! two webhook configurations and RBAC rules are applied (bound to the harness's `operator` user).
//! Without helm_python (or when the chart does not render) the same objects are built here. The in-process operator then serves the
//! webhook with self-managed certificates: it creates the TLS Secret, injects the CA bundle, and
//! from then on the API server calls it for every request and approval.
//!
//! Checked: a request created without `requester` is stamped with the caller (username, uid,
//! groups) and gets the finalizer; a forged requester is overwritten; an approval appended with
//! only decision and reason gets the approver, groups and time of the caller, a forged approver is
//! overwritten and earlier approvals are untouched; fast feedback refuses an ineligible request,
//! and one over the role's maximum duration, at create with the controller's wording; with the
//! webhook down, approvals fail closed while the controller's own status writes still go through.
//!
//! Needs a local control plane (`KUBEBUILDER_ASSETS`): the API server must reach 127.0.0.1.
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_webhook`
mod support;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubepim::admission::{WebhookSettings, tls::keys};
use kubepim::api::{
    ActivationRequest, Eligibility, FINALIZER, Phase, PrivilegedRole, Requester, SubjectRef,
};
use kubepim::runtime::OperatorSettings;
use serde_json::{Value, json};

use support::Env;
use support::envtest::groups_of;
use support::{fixtures, wait};

const NOT_LOCAL: &str = "SKIPPED: e2e_webhook: the API server must call the in-process webhook on 127.0.0.1; \
     run with KUBEBUILDER_ASSETS (a local control plane), not KUBEPIM_E2E_KUBECONFIG";

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A free loopback port (released again before the operator binds it).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const RENDER: &str = r#"
import json, sys
try:
    from helm_python import Chart
except ImportError:
    print("NO_HELM_PYTHON")
    sys.exit(0)
out = Chart.load(sys.argv[1]).render(json.loads(sys.argv[2]), name="kubepim", namespace=sys.argv[3])
print(json.dumps({k: v for k, v in out.items() if k.endswith("/webhook.yaml")}))
"#;

/// The chart's webhook.yaml for an out-of-cluster operator at `url`; `None` (said why) without
/// helm_python or when the chart does not render.
fn render(namespace: &str, url: &str) -> Option<Vec<Value>> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/kubepim");
    let values = json!({"admission": {"webhook": {"url": url}}, "deployment": {"enabled": false}});
    let output = Command::new("python3")
        .arg("-c")
        .arg(RENDER)
        .arg(&chart)
        .arg(values.to_string())
        .arg(namespace)
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The chart's own tests report a broken chart; this test is about the webhook.
        let stderr = String::from_utf8_lossy(&output.stderr);
        say(&format!(
            "e2e_webhook: rendering the chart FAILED, using equivalent objects: {}",
            stderr.trim().lines().last().unwrap_or_default()
        ));
        return None;
    }
    if stdout.trim() == "NO_HELM_PYTHON" {
        say(
            "e2e_webhook: helm_python missing; using objects equivalent to the chart's webhook.yaml",
        );
        return None;
    }
    let files: serde_json::Map<String, Value> =
        serde_json::from_str(&stdout).expect("render output");
    let mut docs = Vec::new();
    for text in files.values() {
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(text.as_str().unwrap()).expect("rendered YAML");
        docs.extend(parsed.into_iter().filter(Value::is_object));
    }
    Some(docs)
}

/// What the chart renders, for a machine without helm_python.
fn built_here(namespace: &str, url: &str) -> Vec<Value> {
    let webhook = |name: &str, path: &str, rules: Value| {
        json!({
            "name": name,
            "clientConfig": {"url": format!("{url}{path}")},
            "rules": rules,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
        })
    };
    let rule = |op: &str, resource: &str| json!({"apiGroups": ["kubepim.io"], "apiVersions": ["*"], "operations": [op], "resources": [resource], "scope": "Cluster"});
    let mut mutating = webhook(
        "identity.kubepim.io",
        "/mutate",
        json!([
            rule("CREATE", "activationrequests"),
            rule("UPDATE", "activationrequests/status")
        ]),
    );
    mutating["reinvocationPolicy"] = json!("IfNeeded");
    mutating["matchConditions"] = json!([{
        "name": "people-not-the-controller-on-status",
        "expression": "!has(request.subResource) || request.subResource != \"status\" || !authorizer.group(\"kubepim.io\").resource(\"activationrequests\").check(\"manage\").allowed()",
    }]);
    let mut reviews = webhook(
        "review-identity.kubepim.io",
        "/mutate",
        json!([rule("UPDATE", "accessreviews/status")]),
    );
    reviews["reinvocationPolicy"] = json!("IfNeeded");
    reviews["matchConditions"] = json!([{
        "name": "people-not-the-controller",
        "expression": "!authorizer.group(\"kubepim.io\").resource(\"accessreviews\").check(\"manage\").allowed()",
    }]);
    vec![
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
               "metadata": {"name": "kubepim"}, "webhooks": [mutating, reviews]}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "kubepim"},
               "webhooks": [webhook("request.kubepim.io", "/validate", json!([rule("CREATE", "activationrequests")]))]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "kubepim-webhook-tls", "namespace": namespace},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kubepim-webhook-tls"], "verbs": ["get", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "kubepim-webhook-configurations"},
               "rules": [{"apiGroups": ["admissionregistration.k8s.io"],
                          "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                          "resourceNames": ["kubepim"], "verbs": ["get", "patch"]}]}),
    ]
}

async fn create<K>(api: Api<K>, doc: &Value) -> K
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {doc}: {e}"))
}

/// The webhook configurations and the webhook's RBAC, bound to the harness's `operator` user (who
/// runs the in-process operator) instead of the chart's ServiceAccount.
async fn install(env: &Env, namespace: &str, url: &str) {
    let docs = match render(namespace, url) {
        Some(docs) if !docs.is_empty() => docs,
        Some(_) => {
            say("e2e_webhook: the chart has no webhook.yaml; using equivalent objects");
            built_here(namespace, url)
        }
        None => built_here(namespace, url),
    };
    let admin = env.admin();
    let operator =
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "operator"}]);
    let mut kinds = Vec::new();
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "MutatingWebhookConfiguration" => {
                let config: MutatingWebhookConfiguration =
                    create(Api::all(admin.clone()), doc).await;
                let client_config = &config.webhooks.unwrap()[0].client_config;
                assert_eq!(
                    client_config.url.as_deref(),
                    Some(format!("{url}/mutate").as_str())
                );
                assert!(
                    client_config.ca_bundle.is_none(),
                    "the operator injects the bundle"
                );
            }
            "ValidatingWebhookConfiguration" => {
                let _: ValidatingWebhookConfiguration = create(Api::all(admin.clone()), doc).await;
            }
            "Role" => {
                let role: Role = create(Api::namespaced(admin.clone(), namespace), doc).await;
                let binding = json!({"metadata": {"name": role.name_any()},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.name_any()},
                    "subjects": operator});
                let _: RoleBinding =
                    create(Api::namespaced(admin.clone(), namespace), &binding).await;
            }
            "ClusterRole" => {
                let role: ClusterRole = create(Api::all(admin.clone()), doc).await;
                let binding = json!({"metadata": {"name": role.name_any()},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role.name_any()},
                    "subjects": operator});
                let _: ClusterRoleBinding = create(Api::all(admin.clone()), &binding).await;
            }
            // The bindings to the chart's ServiceAccount: the operator here is a user.
            "RoleBinding" | "ClusterRoleBinding" => continue,
            other => panic!("unexpected {other} in webhook.yaml for an out-of-cluster operator"),
        }
        kinds.push(kind);
    }
    // What the chart's rbac.yaml grants the operator: the verb that makes it "the controller".
    let manage = json!({"metadata": {"name": "kubepim-e2e-webhook-manage"},
        "rules": [{"apiGroups": ["kubepim.io"], "resources": ["activationrequests"], "verbs": ["manage"]}]});
    let _: ClusterRole = create(Api::all(admin.clone()), &manage).await;
    let binding = json!({"metadata": {"name": "kubepim-e2e-webhook-manage"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubepim-e2e-webhook-manage"},
        "subjects": operator});
    let _: ClusterRoleBinding = create(Api::all(admin.clone()), &binding).await;
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "MutatingWebhookConfiguration",
            "Role",
            "ValidatingWebhookConfiguration"
        ]
    );
}

/// Until the operator has created its TLS Secret, injected the bundle into both configurations
/// and the API server admits a (dry-run) request through the webhook.
async fn wait_until_serving(env: &Env, namespace: &str) -> String {
    let admin = env.admin();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let bundle = wait::until(env, "the webhook's TLS Secret", wait::TIMEOUT, || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets
                .get_opt("kubepim-webhook-tls")
                .await
                .map_err(|e| e.to_string())?;
            let secret = secret.ok_or("no Secret yet")?;
            assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
            let data = secret.data.unwrap_or_default();
            for key in [keys::TLS_CRT, keys::TLS_KEY, keys::CA_CRT, keys::CA_KEY] {
                assert!(data.contains_key(key), "{key} missing from the Secret");
            }
            let bundle = data.get(keys::CA_BUNDLE).ok_or("no bundle")?;
            Ok(String::from_utf8(bundle.0.clone()).unwrap())
        }
    })
    .await;
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(admin.clone());
    wait::until(
        env,
        "the CA bundle in both webhook configurations",
        wait::TIMEOUT,
        || {
            let (mutating, validating, bundle) =
                (mutating.clone(), validating.clone(), bundle.clone());
            async move {
                let m = mutating.get("kubepim").await.map_err(|e| e.to_string())?;
                let v = validating.get("kubepim").await.map_err(|e| e.to_string())?;
                let bundles: Vec<_> = m
                    .webhooks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| w.client_config.ca_bundle)
                    .chain(
                        v.webhooks
                            .unwrap_or_default()
                            .into_iter()
                            .map(|w| w.client_config.ca_bundle),
                    )
                    .collect();
                match bundles
                    .iter()
                    .all(|b| b.as_ref().is_some_and(|b| b.0 == bundle.as_bytes()))
                {
                    true => Ok(()),
                    false => Err(format!(
                        "{} webhooks, bundles injected: {:?}",
                        bundles.len(),
                        bundles.iter().map(Option::is_some).collect::<Vec<_>>()
                    )),
                }
            }
        },
    )
    .await;
    // The API server caches webhook clients; a dry run proves it calls ours and trusts it.
    let probe = ActivationRequest::new(
        &env.name("probe"),
        serde_json::from_value(json!({"role": env.name("no-such-role"), "justification": "probe"}))
            .unwrap(),
    );
    let requests: Api<ActivationRequest> = Api::all(admin.clone());
    wait::until(
        env,
        "the API server to admit through the webhook",
        wait::TIMEOUT,
        || {
            let (requests, probe) = (requests.clone(), probe.clone());
            async move {
                let pp = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                let created = requests
                    .create(&pp, &probe)
                    .await
                    .map_err(|e| e.to_string())?;
                match created.spec.requester {
                    Some(r) if r.username == "admin" => Ok(()),
                    other => Err(format!("not stamped: {other:?}")),
                }
            }
        },
    )
    .await;
    bundle
}

/// `user` appends `entry` to `status.approvals` of request `name` (JSON patch on /status, as
/// `kubectl patch --subresource=status --type=json` does), creating the list on the first one.
async fn append(
    env: &Env,
    user: &str,
    name: &str,
    entry: Value,
) -> Result<ActivationRequest, kube::Error> {
    let api: Api<ActivationRequest> = Api::all(env.client(user));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ar = api.get(name).await?;
        let rv = ar.metadata.resource_version.clone().unwrap_or_default();
        let patch = match &ar.status {
            Some(s) if !s.approvals.is_empty() => {
                json!([{"op": "add", "path": "/status/approvals/-", "value": entry}])
            }
            Some(_) => json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "add", "path": "/status/approvals", "value": [entry]},
            ]),
            None => json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "add", "path": "/status", "value": {"approvals": [entry]}},
            ]),
        };
        match fixtures::json_patch_status(env, user, name, &patch).await {
            // A failed `test` (the controller wrote in between): read again.
            Err(kube::Error::Api(e))
                if attempt < 10
                    && (e.code == 422 || e.code == 409)
                    && e.message.contains("test") =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_stamps_identities_and_gives_fast_feedback() {
    let Some(env) = Env::isolated("webhook").await else {
        return;
    };
    if env.startup().is_none() {
        say(NOT_LOCAL);
        return;
    }
    let system = env.namespace("system").await;
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    install(&env, &system, &url).await;
    env.start_operator(OperatorSettings {
        webhook: Some(WebhookSettings {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            namespace: system.clone(),
            url: Some(url.clone()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let bundle = wait_until_serving(&env, &system).await;
    assert!(bundle.contains("BEGIN CERTIFICATE"));

    let apps = env.namespace("apps").await;
    let role = fixtures::with_approvers(
        fixtures::pod_reader(&env, "reader", &[&apps]),
        2,
        &[],
        &["sre-leads"],
    );
    let role = fixtures::create_role(&env, &role).await;
    let role_name = role.name_any();
    let alice_may =
        fixtures::eligibility(&env, "alice", &role_name, vec![SubjectRef::user("alice")]);
    let alice_may = fixtures::create_eligibility(&env, &alice_may).await;

    // Created without a requester: stamped with alice as the API server authenticated her.
    let mut plain = fixtures::request(&env, "plain", "alice", &role_name, &[&apps], "10m");
    plain.spec.requester = None;
    let plain = fixtures::submit(&env, "alice", &plain).await;
    assert_eq!(plain.spec.requester, Some(env.requester("alice")));
    assert_eq!(
        plain.spec.requester.as_ref().unwrap().groups,
        groups_of("alice")
    );
    assert_eq!(
        plain.finalizers(),
        [FINALIZER],
        "finalizer added once, at creation"
    );

    // A forged requester (another user, more groups, made-up extra attributes): alice all the same.
    let mut forged = fixtures::request(&env, "forged", "alice", &role_name, &[&apps], "10m");
    forged.spec.requester = Some(Requester {
        username: "bob".into(),
        uid: Some("uid-bob".into()),
        groups: vec!["system:masters".into(), "sre-leads".into()],
        extra: [("amr".to_string(), vec!["hwk".to_string()])]
            .into_iter()
            .collect(),
    });
    let forged = fixtures::submit(&env, "alice", &forged).await;
    assert_eq!(forged.spec.requester, Some(env.requester("alice")));

    // bob approves writing only decision and reason: approver, groups and time are his.
    let name = plain.name_any();
    wait::phase(&env, &name, Phase::Pending).await;
    let before = Utc::now() - chrono::Duration::seconds(5);
    let after_bob = append(
        &env,
        "bob",
        &name,
        json!({"decision": "Approved", "reason": "ok"}),
    )
    .await
    .unwrap_or_else(|e| panic!("bob appending an approval with only decision and reason: {e}"));
    let approvals = after_bob
        .status
        .as_ref()
        .map(|s| s.approvals.clone())
        .unwrap_or_default();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0].approver, "bob");
    assert_eq!(approvals[0].groups, groups_of("bob"));
    assert_eq!(approvals[0].reason.as_deref(), Some("ok"));
    let time = kubepim::time::from_k8s(approvals[0].time.as_ref().expect("time stamped"));
    assert!(
        time >= before && time <= Utc::now() + chrono::Duration::seconds(5),
        "time {time}"
    );

    // carol writes someone else's name, groups and an old time: recorded as carol, now; bob's
    // approval is untouched.
    let forged_entry = json!({"approver": "mallory", "groups": ["system:masters"], "decision": "Approved",
                              "reason": "fine", "time": "2001-01-01T00:00:00Z"});
    let after_carol = append(&env, "carol", &name, forged_entry)
        .await
        .unwrap_or_else(|e| panic!("carol appending an approval: {e}"));
    let approvals = after_carol
        .status
        .as_ref()
        .map(|s| s.approvals.clone())
        .unwrap_or_default();
    assert_eq!(approvals.len(), 2, "{approvals:?}");
    assert_eq!(
        approvals[0],
        after_bob.status.unwrap().approvals[0],
        "bob's approval untouched"
    );
    assert_eq!(approvals[1].approver, "carol");
    assert_eq!(approvals[1].groups, groups_of("carol"));
    assert!(kubepim::time::from_k8s(approvals[1].time.as_ref().unwrap()) >= before);
    // Two approvals from sre-leads: the grant goes through.
    wait::phase(&env, &name, Phase::Active).await;

    // Fast feedback: mallory is not eligible; refused at create, in the controller's words.
    let live_role: PrivilegedRole = Api::all(env.admin()).get(&role_name).await.unwrap();
    let live_eligibility: Eligibility = Api::all(env.admin())
        .get(&alice_may.name_any())
        .await
        .unwrap();
    let expect_refusal = |user: &str, ar: &ActivationRequest| {
        kubepim::policy::validate(
            &ar.spec,
            &env.requester(user),
            &live_role,
            &[&live_eligibility],
            Utc::now(),
        )
        .expect_err("the policy refuses it")
    };
    let requests: Api<ActivationRequest> = Api::all(env.client("mallory"));
    let mut ineligible = fixtures::request(&env, "mallory", "mallory", &role_name, &[&apps], "10m");
    ineligible.spec.requester = None;
    let refusal = expect_refusal("mallory", &ineligible);
    assert_eq!(refusal.reason, "NotEligible");
    let err = requests
        .create(&PostParams::default(), &ineligible)
        .await
        .expect_err("refused at create");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status
            .message
            .contains(&format!("{}: {}", refusal.reason, refusal.message)),
        "the policy's words {refusal:?} in {:?}",
        status.message
    );
    assert!(
        status.message.contains("request.kubepim.io"),
        "{:?}",
        status.message
    );
    assert!(
        Api::<ActivationRequest>::all(env.admin())
            .get_opt(&ineligible.name_any())
            .await
            .unwrap()
            .is_none()
    );

    // alice, eligible, asks for longer than the role's maximum.
    let too_long = fixtures::request(&env, "too-long", "alice", &role_name, &[&apps], "2h");
    let refusal = expect_refusal("alice", &too_long);
    assert_eq!(refusal.reason, "DurationTooLong");
    let err = Api::<ActivationRequest>::all(env.client("alice"))
        .create(&PostParams::default(), &too_long)
        .await
        .expect_err("refused at create");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status.message.contains(&refusal.message),
        "{:?}",
        status.message
    );

    // A namespace the role allows but that does not exist: refused at create, naming it (the
    // attack report's `ghost`: admitted, then silent for good).
    let ghost = env.name("ghost");
    let anywhere = fixtures::create_role(
        &env,
        &fixtures::pod_reader(&env, "ghost-reader", &[&apps, &ghost]),
    )
    .await;
    fixtures::create_eligibility(
        &env,
        &fixtures::eligibility(
            &env,
            "alice-ghost",
            &anywhere.name_any(),
            vec![SubjectRef::user("alice")],
        ),
    )
    .await;
    let haunted = fixtures::request(
        &env,
        "ghost",
        "alice",
        &anywhere.name_any(),
        &[&ghost],
        "10m",
    );
    let err = Api::<ActivationRequest>::all(env.client("alice"))
        .create(&PostParams::default(), &haunted)
        .await
        .expect_err("refused at create: the namespace does not exist");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status.message.contains(&format!(
            "NamespaceNotFound: namespace {ghost} does not exist"
        )),
        "{:?}",
        status.message
    );
    // The same request for a namespace that exists is admitted.
    let fine = fixtures::request(
        &env,
        "not-ghost",
        "alice",
        &anywhere.name_any(),
        &[&apps],
        "10m",
    );
    Api::<ActivationRequest>::all(env.client("alice"))
        .create(&PostParams::default(), &fine)
        .await
        .expect("admitted: the namespace exists");

    // An extension of nothing is refused at create, with the controller's reason.
    let mut orphan = fixtures::request(
        &env,
        "orphan",
        "alice",
        &anywhere.name_any(),
        &[&apps],
        "10m",
    );
    orphan.spec.extends = Some(env.name("never-was"));
    let err = Api::<ActivationRequest>::all(env.client("alice"))
        .create(&PostParams::default(), &orphan)
        .await
        .expect_err("refused at create: nothing to extend");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status.message.contains("NothingToExtend") && status.message.contains("does not exist"),
        "{:?}",
        status.message
    );
    // An access review decision written with only item and decision: reviewer, groups and time
    // are bob's, stamped by the webhook (the operator fills the review first).
    let reviewer = json!({"metadata": {"name": env.name("reviewer")},
        "rules": [{"apiGroups": ["kubepim.io"], "resources": ["accessreviews/status"], "verbs": ["get", "patch"]},
                  {"apiGroups": ["kubepim.io"], "resources": ["accessreviews"], "verbs": ["get"]}]});
    let reviewer: ClusterRole = create(Api::all(env.admin()), &reviewer).await;
    let binding = json!({"metadata": {"name": reviewer.name_any()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reviewer.name_any()},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]});
    let _: ClusterRoleBinding = create(Api::all(env.admin()), &binding).await;
    let review_name = env.name("review");
    let review = json!({"apiVersion": "kubepim.io/v1alpha1", "kind": "AccessReview",
        "metadata": {"name": review_name},
        "spec": {"selector": {"roles": [role_name]}, "reviewers": {"users": ["bob"]}, "duration": "1h"}});
    let reviews: Api<kubepim::api::AccessReview> = Api::all(env.admin());
    let _ = create(reviews.clone(), &review).await;
    wait::until(&env, "the review to open", wait::TIMEOUT, || {
        let reviews = reviews.clone();
        let review_name = review_name.clone();
        async move {
            let r = reviews.get(&review_name).await.map_err(|e| e.to_string())?;
            match r.phase() {
                Some(kubepim::api::ReviewPhase::Open) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let item = format!("{}/User/alice", alice_may.name_any());
    let decide = json!([{"op": "add", "path": "/status/decisions", "value": [{"item": item, "decision": "Remove"}]}]);
    let decided = Api::<kubepim::api::AccessReview>::all(env.client("bob"))
        .patch_status(
            &review_name,
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(decide).expect("a JSON patch")),
        )
        .await
        .unwrap_or_else(|e| panic!("bob deciding with only item and decision: {e}"));
    let decisions = decided.status.expect("status").decisions;
    assert_eq!(decisions.len(), 1);
    assert_eq!(
        (decisions[0].reviewer.as_str(), decisions[0].groups.clone()),
        ("bob", groups_of("bob"))
    );
    assert!(decisions[0].at.is_some(), "the webhook stamps the time");

    env.check_operator();
    let outcome = env.stop_operator().await;
    assert!(outcome.starts_with("Ok"), "{outcome}");

    // Webhook down (failurePolicy Fail): people cannot approve, but the controller's status writes
    // are not sent to the webhook (matchConditions: whoever may `manage`), so revocation and
    // expiry never wait for it.
    let forged = forged.name_any();
    let err = append(&env, "bob", &forged, json!({"decision": "Approved"}))
        .await
        .expect_err("no webhook, no approval");
    assert!(err.to_string().contains("identity.kubepim.io"), "{err}");
    let controller_write = json!([{"op": "add", "path": "/status/message", "value": "written while the webhook is down"}]);
    fixtures::json_patch_status(&env, "operator", &forged, &controller_write)
        .await
        .unwrap_or_else(|e| panic!("the controller's status write must not need the webhook: {e}"));
}
