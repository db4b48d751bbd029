//! Attribution lag on a real control plane (`KUBEBUILDER_ASSETS`): from the audit endpoint
//! receiving an event to the request's `status.activity` counting it, as a watch on the API
//! server sees it.
//!
//!     KUBEBUILDER_ASSETS=/path/to/assets cargo bench --bench attribution
//!     KUBEPIM_ATTRIBUTION_ROUNDS=40          (batches posted; default 40)
//!     KUBEPIM_ATTRIBUTION_FLUSH_MS=2000      (the aggregator's flush interval; default 2000, the chart's)
//!
//! The in-process operator serves the audit endpoint over HTTPS (the control plane's serving
//! certificate), as the API server's webhook backend reaches it. Each of the four test people
//! holds one Active grant. Each round posts one batch with one event by each of them, then
//! waits until the watch shows each request's `status.activity.requests` has grown. The API
//! server's own batching (`--audit-webhook-batch-max-wait`) is before the endpoint and not
//! counted. Rounds are 700 ms apart, so they fall at every phase of the flush interval.
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/stats.rs"]
mod stats;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kubepim::api::{ActivationRequest, Phase, SubjectRef};
use kubepim::ingest::IngestSettings;
use kubepim::runtime::OperatorSettings;
use serde_json::json;
use support::Env;
use support::envtest::{ControlPlaneOptions, PEOPLE};
use support::fixtures::{self, submit};
use support::wait;

const TOKEN: &str = "kubepim-bench-attribution-token-7d41c0a9e3";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One batch: an event by each of `users` in `ns`, received now.
fn batch(round: u64, users: &[&str], ns: &str) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339();
    let items: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("00000000-0000-0000-{round:04}-{i:012}"),
                "stage": "ResponseComplete",
                "requestURI": format!("/api/v1/namespaces/{ns}/pods"),
                "verb": "list",
                "user": {"username": user, "groups": ["system:authenticated"]},
                "objectRef": {"resource": "pods", "namespace": ns, "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 200},
                "requestReceivedTimestamp": now, "stageTimestamp": now,
            })
        })
        .collect();
    serde_json::to_vec(
        &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}),
    )
    .expect("a batch")
}

/// `p` as a fraction (0.99).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    stats::percentile(sorted, p * 100.0).unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = env_u64("KUBEPIM_ATTRIBUTION_ROUNDS", 40);
    let flush = Duration::from_millis(env_u64("KUBEPIM_ATTRIBUTION_FLUSH_MS", 2000));
    let Some(env) = Env::local("attribution", ControlPlaneOptions::default()).await else {
        eprintln!("KUBEBUILDER_ASSETS is not set: nothing measured");
        return;
    };
    let ns = env.namespace("payments").await;
    let port = free_port();
    let mut ingest = IngestSettings::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), TOKEN);
    ingest.flush_interval = flush;
    ingest.tls_files = env.control_plane().map(|cp| cp.serving_cert_files());
    env.start_operator(OperatorSettings {
        concurrency: 4,
        ingest: Some(ingest),
        ..OperatorSettings::default()
    });

    let role = fixtures::create_role(&env, &fixtures::pod_reader(&env, "reader", &[&ns]))
        .await
        .name_any();
    let subjects = PEOPLE.iter().map(|p| SubjectRef::user(*p)).collect();
    fixtures::create_eligibility(
        &env,
        &fixtures::eligibility(&env, "people", &role, subjects),
    )
    .await;
    let mut names = HashMap::new();
    for person in PEOPLE {
        let request = fixtures::request(&env, person, person, &role, &[&ns], "30m");
        let name = submit(&env, person, &request).await.name_any();
        wait::phase(&env, &name, Phase::Active).await;
        names.insert(name, *person);
    }

    // What the API server says each request's activity counts, as its watch delivers it.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = names.clone();
    tokio::spawn(
        watcher(
            Api::<ActivationRequest>::all(env.admin()),
            watcher::Config::default(),
        )
        .applied_objects()
        .for_each(move |request| {
            if let Ok(request) = request
                && watched.contains_key(&request.name_any())
            {
                let counted = request
                    .status
                    .as_ref()
                    .and_then(|s| s.activity.as_ref())
                    .map_or(0, |a| a.requests);
                let _ = seen_tx.send((request.name_any(), counted, Instant::now()));
            }
            std::future::ready(())
        }),
    );

    let mut config = env.config("admin");
    config.cluster_url = format!("https://127.0.0.1:{port}").parse().expect("url");
    config.auth_info = Default::default();
    let endpoint = kube::Client::try_from(config).expect("a client of the audit endpoint");
    let users: Vec<&str> = PEOPLE.to_vec();
    let mut counted: HashMap<String, i64> = HashMap::new();
    let mut lags = Vec::new();
    for round in 1..=rounds {
        let body = batch(round, &users, &ns);
        let posted = Instant::now();
        let request = http::Request::post("/audit")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(kube::client::Body::from(body))
            .expect("a request");
        let status = endpoint
            .send(request)
            .await
            .map(|r| r.status().as_u16())
            .expect("an answer from the audit endpoint");
        assert_eq!(status, 200, "the endpoint took the batch");
        let mut waiting: Vec<String> = names.keys().cloned().collect();
        let deadline = posted + flush * 3 + Duration::from_secs(10);
        while !waiting.is_empty() {
            let Ok(Some((name, n, at))) =
                tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await
            else {
                panic!("round {round}: not counted in time: {waiting:?}");
            };
            counted.insert(name.clone(), n);
            if n >= round as i64 && waiting.contains(&name) {
                waiting.retain(|w| *w != name);
                lags.push(at.saturating_duration_since(posted));
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    lags.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "attribution lag, endpoint received → status.activity on the API server: {} samples ({rounds} rounds × {} grants), flush interval {} ms",
        lags.len(),
        names.len(),
        flush.as_millis()
    );
    println!(
        "  p50 {:.0} ms   p90 {:.0} ms   p99 {:.0} ms   max {:.0} ms",
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.9)),
        ms(percentile(&lags, 0.99)),
        ms(percentile(&lags, 1.0)),
    );
    println!(
        "  (bounded by the flush interval plus one status write: ≤ {} ms expected)",
        flush.as_millis() + 250
    );
    env.stop_operator().await;
}
