//! In-process HTTPS round trips: a generated certificate, a client that trusts only its CA.
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use super::*;
use crate::admission::certs::{self, Material};
use crate::admission::fixtures::*;
use crate::admission::{CertMode, WebhookSettings};
use crate::api::{Eligibility, PrivilegedRole};

fn material() -> Material {
    let names = certs::serving_names("kubepim-webhook", "kubepim-system", None);
    certs::renew(None, &names, Utc::now()).unwrap().unwrap()
}

struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(material: &Material, handler: Handler) -> Running {
    let resolver = Arc::new(tls::Resolver::default());
    resolver.set(&material.serving).unwrap();
    let config = tls::server_config(resolver).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, Arc::new(handler), async move {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 exchange over TLS, as the API server makes it; returns (status, body).
async fn exchange(
    addr: SocketAddr,
    ca_pem: &str,
    host: &str,
    head: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut tls = connector(ca_pem).connect(name, stream).await?;
    let request = format!(
        "{head}\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    tls.write_all(body).await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Ok((status, response[split + 4..].to_vec()))
}

async fn post(addr: SocketAddr, ca_pem: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, body) = exchange(
        addr,
        ca_pem,
        "127.0.0.1",
        &format!("POST {path} HTTP/1.1"),
        &serde_json::to_vec(body).unwrap(),
    )
    .await
    .expect("exchange");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn create_review(user: Value) -> Value {
    let spec = json!({"role": "payments-admin", "namespaces": ["payments"], "duration": "1h", "justification": "INC-1"});
    review_json("CREATE", None, user, request_object(spec, None, None), None)
}

fn patch_of(review: &Value) -> Vec<Value> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(review.clone()).unwrap();
    let patch = review.response.unwrap().patch.expect("a patch");
    serde_json::from_slice(&patch).unwrap()
}

#[tokio::test]
async fn mutate_round_trip_over_https() {
    let m = material();
    let server = start(&m, Handler::default()).await;
    let (status, review) = post(server.addr, &m.bundle, "/mutate", &create_review(alice())).await;
    assert_eq!(status, 200);
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        review["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(review["response"]["allowed"], true);
    let ops = patch_of(&review);
    assert_eq!(ops[0]["path"], "/spec/requester");
    assert_eq!(ops[0]["value"]["username"], "alice");
    assert_eq!(ops[1]["path"], "/metadata/finalizers");
    // The certificate is also good for the Service name.
    let (status, _) = exchange(
        server.addr,
        &m.bundle,
        "kubepim-webhook.kubepim-system.svc",
        "POST /mutate HTTP/1.1",
        &serde_json::to_vec(&create_review(alice())).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let _ = server.stop.send(());
    tokio::time::timeout(SHUTDOWN_GRACE, server.task)
        .await
        .expect("stops")
        .unwrap();
}

#[tokio::test]
async fn validate_round_trip_refuses_with_the_policy_message() {
    let m = material();
    let (roles, mut roles_writer) = reflector::store::<PrivilegedRole>();
    let (eligibilities, mut eligibilities_writer) = reflector::store::<Eligibility>();
    let role: PrivilegedRole = serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1", "kind": "PrivilegedRole", "metadata": {"name": "payments-admin"},
        "spec": {"roleRef": {"kind": "ClusterRole", "name": "admin"}, "scope": {"namespaces": ["payments"]}}
    }))
    .unwrap();
    let eligibility: Eligibility = serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1", "kind": "Eligibility", "metadata": {"name": "oncall"},
        "spec": {"role": "payments-admin", "subjects": [{"kind": "Group", "name": "payments-oncall"}]}
    }))
    .unwrap();
    roles_writer.apply_watcher_event(&watcher::Event::Apply(role));
    eligibilities_writer.apply_watcher_event(&watcher::Event::Apply(eligibility));
    let handler = Handler::new(
        Some(Snapshots {
            roles,
            eligibilities,
            requests: reflector::store().0,
        }),
        None,
    );
    let reviews = handler.reviews.clone();
    let server = start(&m, handler).await;

    let (status, review) = post(server.addr, &m.bundle, "/validate", &create_review(alice())).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["allowed"], true, "{review}");

    let bob = json!({"username": "bob", "groups": ["sre-leads"]});
    let (status, review) = post(server.addr, &m.bundle, "/validate", &create_review(bob)).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 403);
    assert_eq!(
        review["response"]["status"]["message"],
        "NotEligible: bob is not eligible for role payments-admin: no Eligibility names the user or any of their groups"
    );
    let (status, _) = post(
        server.addr,
        &m.bundle,
        "/validate",
        &json!({"not": "a review"}),
    )
    .await;
    assert_eq!(status, 400);
    // What /metrics reports: one allowed, one refused, one error, on the validate endpoint.
    assert_eq!(
        reviews.snapshot(),
        [
            ("validate", "allowed", 1),
            ("validate", "error", 1),
            ("validate", "refused", 1)
        ]
    );
    let _ = server.stop.send(());
}

#[tokio::test]
async fn anything_but_a_review_posted_to_our_two_paths_is_refused() {
    let m = material();
    let server = start(&m, Handler::default()).await;
    let (status, _) = exchange(
        server.addr,
        &m.bundle,
        "127.0.0.1",
        "GET /healthz HTTP/1.1",
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 404);
    let (status, _) = exchange(
        server.addr,
        &m.bundle,
        "127.0.0.1",
        "GET /mutate HTTP/1.1",
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 405);
    let (status, body) = exchange(
        server.addr,
        &m.bundle,
        "127.0.0.1",
        "POST /validate HTTP/1.1",
        b"{\"x\":1",
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = exchange(
        server.addr,
        &m.bundle,
        "127.0.0.1",
        "POST /mutate HTTP/1.1",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}",
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    // Bounded body: refused from the declared length, before reading it.
    let head = format!(
        "POST /mutate HTTP/1.1\r\nX-Pad: 1\r\nContent-Length: {}",
        MAX_BODY + 1
    );
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector(&m.bundle)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), stream)
        .await
        .unwrap();
    tls.write_all(format!("{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    assert!(
        String::from_utf8_lossy(&response).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let _ = server.stop.send(());
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_cannot_connect() {
    let m = material();
    let server = start(&m, Handler::default()).await;
    let stranger = material();
    let result = exchange(
        server.addr,
        &stranger.bundle,
        "127.0.0.1",
        "POST /mutate HTTP/1.1",
        b"{}",
    )
    .await;
    assert!(result.is_err());
    // Nor with a name the certificate does not cover.
    let result = exchange(
        server.addr,
        &m.bundle,
        "example.com",
        "POST /mutate HTTP/1.1",
        b"{}",
    )
    .await;
    assert!(result.is_err());
    let _ = server.stop.send(());
}

#[tokio::test]
async fn files_mode_serves_the_mounted_certificate_and_becomes_ready() {
    let m = material();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &m.serving.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &m.serving.key_pem).unwrap();
    let settings = WebhookSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_mode: CertMode::Files,
        cert_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let webhook = Webhook::bind(None, settings, None).await.unwrap();
    let addr = webhook.local_addr().unwrap();
    let mut ready = webhook.ready();
    assert!(!*ready.borrow());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(webhook.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(std::time::Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    let (status, review) = post(addr, &m.bundle, "/mutate", &create_review(alice())).await;
    assert_eq!(
        (status, &review["response"]["allowed"]),
        (200, &json!(true))
    );
    let _ = stop.send(());
    tokio::time::timeout(SHUTDOWN_GRACE * 2, task)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert!(!*ready.borrow(), "not ready once stopped");
}

#[tokio::test]
async fn binding_a_taken_port_fails_fast() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = WebhookSettings {
        listen: taken.local_addr().unwrap(),
        cert_mode: CertMode::Files,
        cert_dir: Some("/nonexistent".into()),
        ..Default::default()
    };
    let err = Webhook::bind(None, settings, None)
        .await
        .err()
        .expect("port taken");
    assert!(matches!(err, Error::Bind { .. }), "{err}");
}

/// The webhook counts the requester's grants from the operator's request cache: alice held the
/// role for its whole daily budget an hour ago, so another hour is refused at apply time.
#[tokio::test]
async fn validate_counts_the_cached_requests_against_a_budget() {
    let (roles, mut roles_writer) = reflector::store::<PrivilegedRole>();
    let (eligibilities, mut eligibilities_writer) = reflector::store::<Eligibility>();
    let (requests, mut requests_writer) = reflector::store::<crate::api::ActivationRequest>();
    let role: PrivilegedRole = serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1", "kind": "PrivilegedRole", "metadata": {"name": "payments-admin"},
        "spec": {"roleRef": {"kind": "ClusterRole", "name": "admin"}, "scope": {"namespaces": ["payments"]},
                 "budget": {"maxElevated": "1h", "per": "24h"}}
    }))
    .unwrap();
    let eligibility: Eligibility = serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1", "kind": "Eligibility", "metadata": {"name": "oncall"},
        "spec": {"role": "payments-admin", "subjects": [{"kind": "Group", "name": "payments-oncall"}]}
    }))
    .unwrap();
    // The handler reads the real clock: the grant is placed relative to it.
    let now = crate::time::truncate_to_second(Utc::now());
    let from = crate::time::to_k8s(now - chrono::Duration::hours(2));
    let to = crate::time::to_k8s(now - chrono::Duration::hours(1));
    let earlier: crate::api::ActivationRequest = serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1", "kind": "ActivationRequest", "metadata": {"name": "r0"},
        "spec": {"role": "payments-admin", "namespaces": ["payments"], "requester": {"username": "alice"}},
        "status": {"phase": "Expired", "activatedAt": from, "expiresAt": to, "endedAt": to}
    }))
    .unwrap();
    roles_writer.apply_watcher_event(&watcher::Event::Apply(role));
    eligibilities_writer.apply_watcher_event(&watcher::Event::Apply(eligibility));
    requests_writer.apply_watcher_event(&watcher::Event::Apply(earlier));
    let handler = Handler::new(
        Some(Snapshots {
            roles,
            eligibilities,
            requests,
        }),
        None,
    );
    let body = serde_json::to_vec(&create_review(alice())).unwrap();
    let review = handler.review("/validate", &body).await.expect("a review");
    let response = review.response.expect("a response");
    assert!(!response.allowed);
    assert_eq!(
        response.result.message,
        "BudgetExceeded: alice used 1h of 1h in the last 1d on role payments-admin; this request \
         asks for 1h (budget: spec.budget of PrivilegedRole payments-admin)"
    );
}
