//! End-to-end: the activity record on a real control plane whose API server's audit webhook
//! posts to the in-process operator (the shipped policy, `charts/kubepim/files/audit-policy.yaml`).
//!
//! Alice, during an approved grant in her namespace, lists pods, creates a RoleBinding and tries
//! to create a ServiceAccount (refused: the role does not allow it). Her request's
//! `status.activity` shows the counts, the namespace, the notable writes and the denial, and at
//! expiry the `Used` condition. Posts without the token, with a wrong one, oversized or garbage
//! are refused (401, 401, 413, 400) and nothing they carry is attributed. A role with an idle
//! timeout ends an unused grant with reason `Idle`, reported as never used.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_activity`
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kubepim::api::conditions::USED;
use kubepim::api::{ActivationRequest, Activity, ActivitySource, Phase, SubjectRef};
use kubepim::ingest::IngestSettings;
use kubepim::policy::reasons;
use kubepim::runtime::OperatorSettings;
use serde_json::json;
use support::Env;
use support::envtest::{AuditWebhook, ControlPlaneOptions, NAMESPACE_ADMIN, POD_READER};
use support::fixtures::{self, dur, submit};
use support::wait::{self, describe};

const TOKEN: &str = "kubepim-e2e-audit-token-5f0c9a7e2b61d4c8";
const POLICY: &str = include_str!("../charts/kubepim/files/audit-policy.yaml");
const MAX_BODY: usize = kubepim::ingest::DEFAULT_MAX_BODY;

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Posts `body` to the audit endpoint over HTTPS (trusting the control plane's CA, which signed
/// the certificate it serves) with this `Authorization` header; the HTTP status of the answer.
async fn post(env: &Env, port: u16, authorization: Option<&str>, body: &[u8]) -> u16 {
    let mut config = env.config("alice");
    config.cluster_url = format!("https://127.0.0.1:{port}").parse().expect("url");
    config.auth_info = Default::default();
    let client = kube::Client::try_from(config).expect("client");
    let mut request = http::Request::post("/audit").header("content-type", "application/json");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let request = request
        .body(kube::client::Body::from(body.to_vec()))
        .expect("request");
    client
        .send(request)
        .await
        .map(|r| r.status().as_u16())
        .expect("an answer from the audit endpoint")
}

/// Declares a body over the cap and sends only the head, as a client that would stream a huge
/// batch: the endpoint answers without reading it. Raw TLS (the control plane's CA), so the
/// answer is read even though the body never comes.
async fn post_oversized(env: &Env, port: u16, authorization: &str) -> u16 {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let cp = env.control_plane().expect("a local control plane");
    let ca = std::fs::read(cp.ca_file()).expect("CA file");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let config = ClientConfig::builder_with_provider(kubepim::admission::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .expect("TLS handshake");
    let head = format!(
        "POST /audit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    tls.write_all(head.as_bytes()).await.expect("write head");
    let mut answer = vec![0u8; 256];
    let n = tls.read(&mut answer).await.expect("read answer");
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

/// An EventList with one event that would be alice's use of her grant: a forger's attempt.
fn forged_batch() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "EventList", "apiVersion": "audit.k8s.io/v1",
        "items": [{
            "auditID": "forged", "stage": "ResponseComplete", "verb": "delete",
            "user": {"username": "alice"},
            "objectRef": {"resource": "forged", "apiGroup": "example.com", "namespace": "x", "name": "y"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": chrono::Utc::now().to_rfc3339(),
        }]
    }))
    .unwrap()
}

fn activity_of(ar: &ActivationRequest) -> Option<Activity> {
    ar.status.as_ref().and_then(|s| s.activity.clone())
}

async fn get(env: &Env, name: &str) -> ActivationRequest {
    Api::<ActivationRequest>::all(env.admin())
        .get(name)
        .await
        .expect("get request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_s_use_is_recorded_and_forged_posts_are_refused() {
    let port = free_port();
    let options = ControlPlaneOptions {
        audit_webhook: Some(AuditWebhook {
            url: format!("https://127.0.0.1:{port}/audit"),
            token: TOKEN.into(),
            policy: POLICY.into(),
        }),
        ..Default::default()
    };
    let Some(env) = Env::local("activity", options).await else {
        return;
    };
    let ns = env.namespace("payments").await;
    let mut ingest = IngestSettings::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), TOKEN);
    ingest.flush_interval = Duration::from_secs(1);
    ingest.tls_files = env.control_plane().map(|cp| cp.serving_cert_files());
    env.start_operator(OperatorSettings {
        concurrency: 4,
        ingest: Some(ingest),
        ..OperatorSettings::default()
    });

    // An admin grant in payments, approved by bob.
    let mut pr = fixtures::pod_reader(&env, "admin", &[&ns]);
    pr.spec.role_ref.name = NAMESPACE_ADMIN.into();
    let pr = fixtures::with_approvers(pr, 1, &["bob"], &[]);
    let role = fixtures::create_role(&env, &pr).await.name_any();
    let el = fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;
    let ar = fixtures::request(&env, "work", "alice", &role, &[&ns], "20s");
    let name = submit(&env, "alice", &ar).await.name_any();
    fixtures::approve(&env, "bob", &name).await;
    let active = wait::phase(&env, &name, Phase::Active).await;
    assert_eq!(
        activity_of(&active).map(|a| a.source),
        Some(ActivitySource::AuditWebhook),
        "{}",
        describe(&active)
    );

    // Forged posts while the grant runs: refused, and nothing they carry is counted.
    let forged = forged_batch();
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    assert_eq!(post(&env, port, None, &forged).await, 401, "no token");
    assert_eq!(
        post(&env, port, Some(&wrong), &forged).await,
        401,
        "wrong token"
    );
    assert_eq!(
        post(&env, port, Some("Basic YWxpY2U6YWxpY2U="), &forged).await,
        401,
        "not a bearer token"
    );
    assert_eq!(post_oversized(&env, port, &bearer).await, 413, "oversized");
    assert_eq!(
        post(&env, port, Some(&bearer), b"{\"kind\":").await,
        400,
        "garbage"
    );
    let wrong_kind = br#"{"kind":"PodList","apiVersion":"v1","items":[]}"#;
    assert_eq!(
        post(&env, port, Some(&bearer), wrong_kind).await,
        400,
        "not an EventList"
    );

    // Alice uses the grant.
    let alice = env.client("alice");
    Api::<Pod>::namespaced(alice.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("alice lists pods");
    let rb = RoleBinding {
        metadata: ObjectMeta {
            name: Some(env.name("carol-reads")),
            labels: Some(env.labels()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: POD_READER.into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "carol".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        }]),
    };
    let rb_name = Api::<RoleBinding>::namespaced(alice.clone(), &ns)
        .create(&PostParams::default(), &rb)
        .await
        .expect("alice creates a RoleBinding")
        .name_any();
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("deployer".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let refused = Api::<ServiceAccount>::namespaced(alice.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "the role does not allow ServiceAccounts: {refused:?}"
    );

    // The record, while the grant runs (flushed within seconds).
    let rb_key = "create rolebindings.rbac.authorization.k8s.io";
    let seen = wait::until(
        &env,
        "the activity record",
        Duration::from_secs(30),
        || async {
            let ar = get(&env, &name).await;
            match activity_of(&ar) {
                Some(a)
                    if a.counts.contains_key("list pods")
                        && a.counts.contains_key(rb_key)
                        && a.denied >= 1 =>
                {
                    Ok(a)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(seen.namespaces, std::slice::from_ref(&ns), "{seen:?}");
    assert!(
        seen.first_use.is_some() && seen.last_use.is_some(),
        "{seen:?}"
    );
    let notable: Vec<_> = seen
        .notable_writes
        .iter()
        .map(|w| {
            (
                w.verb.as_str(),
                w.resource.as_str(),
                w.name.as_deref(),
                w.code,
            )
        })
        .collect();
    assert!(
        notable.contains(&(
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            Some(rb_name.as_str()),
            Some(201)
        )),
        "{notable:?}"
    );
    // Refused before the object was read: the API server's event names no object.
    assert!(
        notable.contains(&("create", "serviceaccounts", None, Some(403))),
        "{notable:?}"
    );
    assert!(
        !seen.counts.keys().any(|k| k.contains("forged")),
        "a forged post was attributed: {seen:?}"
    );

    // At expiry: the counts stay, the end says the grant was used.
    let ended = wait::phase_within(&env, &name, Phase::Expired, Duration::from_secs(60)).await;
    let status = ended.status.clone().expect("status");
    let activity = status.activity.clone().expect("status.activity at the end");
    assert!(activity.requests >= 3, "{activity:?}");
    assert!(
        activity.counts.get("list pods").is_some_and(|n| *n >= 1),
        "{activity:?}"
    );
    assert_eq!(activity.counts.get(rb_key), Some(&1), "{activity:?}");
    assert!(
        !activity.counts.keys().any(|k| k.contains("forged")),
        "{activity:?}"
    );
    let used = status.conditions.iter().find(|c| c.type_ == USED);
    assert_eq!(
        used.map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", reasons::USED)),
        "{}",
        describe(&ended)
    );

    // A role with an idle timeout: an unused grant ends Idle, reported as never used.
    let mut idle = fixtures::pod_reader(&env, "idle", &[&ns]);
    idle.spec.idle_timeout = Some(dur("4s"));
    let idle_role = fixtures::create_role(&env, &idle).await.name_any();
    let el = fixtures::eligibility(
        &env,
        "alice-idle",
        &idle_role,
        vec![SubjectRef::user("alice")],
    );
    fixtures::create_eligibility(&env, &el).await;
    let ar = fixtures::request(&env, "unused", "alice", &idle_role, &[&ns], "10m");
    let unused = submit(&env, "alice", &ar).await.name_any();
    wait::phase(&env, &unused, Phase::Active).await;
    let ended = wait::phase_within(&env, &unused, Phase::Expired, Duration::from_secs(30)).await;
    let status = ended.status.clone().expect("status");
    assert_eq!(
        status.reason.as_deref(),
        Some(reasons::IDLE),
        "{}",
        describe(&ended)
    );
    let used = status.conditions.iter().find(|c| c.type_ == USED);
    assert_eq!(
        used.map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("False", reasons::NEVER_USED)),
        "{}",
        describe(&ended)
    );
    assert!(fixtures::role_bindings_of(&env, &unused).await.is_empty());
    env.stop_operator().await;
}

/// Without the audit endpoint the record says it is unavailable, and an idle timeout is not
/// enforced (the grant runs to its expiry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_endpoint_the_record_is_unavailable_and_idleness_is_not_enforced() {
    let Some(env) = Env::shared("activity-off").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(OperatorSettings {
        concurrency: 4,
        ..OperatorSettings::default()
    });
    let mut pr = fixtures::pod_reader(&env, "idle", &[&ns]);
    pr.spec.idle_timeout = Some(dur("2s"));
    let role = fixtures::create_role(&env, &pr).await.name_any();
    let el = fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;
    let ar = fixtures::request(&env, "kept", "alice", &role, &[&ns], "8s");
    let name = submit(&env, "alice", &ar).await.name_any();
    let active = wait::phase(&env, &name, Phase::Active).await;
    assert_eq!(
        activity_of(&active).map(|a| a.source),
        Some(ActivitySource::Unavailable),
        "{}",
        describe(&active)
    );
    let ended = wait::phase(&env, &name, Phase::Expired).await;
    let status = ended.status.clone().expect("status");
    assert_eq!(
        status.reason.as_deref(),
        Some(reasons::DURATION_ELAPSED),
        "{}",
        describe(&ended)
    );
    let used = status.conditions.iter().find(|c| c.type_ == USED);
    assert_eq!(
        used.map(|c| c.reason.as_str()),
        Some(reasons::ACTIVITY_UNAVAILABLE),
        "{}",
        describe(&ended)
    );
    env.stop_operator().await;
}
