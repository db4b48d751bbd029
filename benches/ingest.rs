//! Audit ingest benchmark, in process: the audit endpoint (`kubepim::ingest`) as `kubepim run`
//! serves it, fed batches of `audit.k8s.io/v1` events at increasing rates. Prints, per rate, the
//! events per second sustained, resident memory before and after, and the attribution lag.
//!
//!     cargo bench --bench ingest
//!     KUBEPIM_INGEST_GRANTS=1000      (Active grants in the request cache; default 1000)
//!     KUBEPIM_INGEST_SECS=5           (seconds per rate step; default 5)
//!
//! What it measures, and what not:
//! - The listener over plain HTTP on loopback (TLS, which the API server needs, is left out:
//!   with keep-alive it costs a record encryption per batch, not a handshake).
//! - Batches of 400 events (the API server's default `--audit-webhook-batch-max-size`), half by
//!   grant holders inside their windows (attributed), half by system identities (dropped at the
//!   index lookup), at Metadata level as the shipped policy sends them, ~600 bytes each.
//! - Every attributed event written as an audit line (JSON, to a sink) and recorded in its
//!   request's pending summary, as the aggregator's task does; the status writes themselves are
//!   not made (no API server): they are one patch per request per flush interval whatever the rate.
//! - Attribution lag: from starting the POST to the batch's last event being in its request's
//!   pending summary (the status then follows within the flush interval, 2 s by default).
//! - One connection, one batch at a time (as one API server's batching backend posts); each
//!   batch is waited for, so the queue to the aggregator never fills (nothing is dropped).
#[path = "common/stats.rs"]
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::runtime::reflector;
use kube::runtime::watcher;
use kubepim::api::{
    ActivationRequest, ActivationRequestSpec, ActivationRequestStatus, Phase, Requester,
};
use kubepim::ingest::{Aggregator, AuditListener, IngestSettings};
use kubepim::metrics::Metrics;
use kubepim::time::{Clock, to_k8s};
use serde_json::json;

const TOKEN: &str = "kubepim-bench-audit-token-000000000000000000";
const BATCH: usize = 400;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn grant(i: usize) -> ActivationRequest {
    let mut r = ActivationRequest::new(
        &format!("grant-{i}"),
        ActivationRequestSpec {
            role: "payments-admin".into(),
            namespaces: vec!["payments".into()],
            duration: None,
            justification: Some("bench".into()),
            ticket: None,
            start_at: None,
            extends: None,
            cancel: false,
            requester: Some(Requester {
                username: format!("user-{i}"),
                ..Default::default()
            }),
        },
    );
    r.metadata.resource_version = Some("1".into());
    r.status = Some(ActivationRequestStatus {
        phase: Some(Phase::Active),
        activated_at: Some(to_k8s(Utc::now() - chrono::Duration::hours(1))),
        expires_at: Some(to_k8s(Utc::now() + chrono::Duration::hours(1))),
        ..Default::default()
    });
    r
}

/// One batch: every other event by a grant holder (cycling through `grants`), the rest by the
/// controller manager.
fn batch(seq: u64, grants: usize) -> Vec<u8> {
    let now = Utc::now().to_rfc3339();
    let items: Vec<_> = (0..BATCH)
        .map(|i| {
            let n = seq as usize * BATCH + i;
            let user = if i % 2 == 0 {
                format!("user-{}", (n / 2) % grants)
            } else {
                "system:kube-controller-manager".to_string()
            };
            let (verb, resource) = match n % 5 {
                0 => ("list", "pods"),
                1 => ("get", "configmaps"),
                2 => ("watch", "deployments"),
                3 => ("create", "rolebindings"),
                _ => ("patch", "secrets"),
            };
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("00000000-0000-0000-0000-{n:012}"),
                "stage": "ResponseComplete",
                "requestURI": format!("/api/v1/namespaces/payments/{resource}/web-{n}"),
                "verb": verb,
                "user": {"username": user, "groups": ["system:authenticated"]},
                "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.32.6 (linux/amd64)",
                "objectRef": {"resource": resource, "namespace": "payments", "name": format!("web-{n}"),
                              "apiGroup": if resource == "rolebindings" { "rbac.authorization.k8s.io" } else { "" },
                              "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 200},
                "requestReceivedTimestamp": now, "stageTimestamp": now,
                "annotations": {"authorization.k8s.io/decision": "allow",
                                "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding"}
            })
        })
        .collect();
    serde_json::to_vec(
        &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}),
    )
    .unwrap()
}

/// `p` as a fraction (0.99).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    stats::percentile(sorted, p * 100.0).unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Audit lines as in production (JSON), written to a sink.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("kubepim::audit=info"))
        .with_writer(std::io::sink)
        .init();
    let grants = env_or("KUBEPIM_INGEST_GRANTS", 1000) as usize;
    let secs = env_or("KUBEPIM_INGEST_SECS", 5);

    let (store, mut writer) = reflector::store::<ActivationRequest>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..grants {
        writer.apply_watcher_event(&watcher::Event::InitApply(grant(i)));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);

    let metrics = Arc::new(Metrics::new());
    let aggregator = Aggregator::new(
        store,
        metrics.clone(),
        Duration::from_secs(2),
        65_536,
        Clock::system(),
    );
    let settings = IngestSettings::new(([127, 0, 0, 1], 0).into(), TOKEN);
    let listener = AuditListener::bind(&settings, aggregator.clone(), metrics, None)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(listener.run(std::future::pending::<()>()));
    // The aggregator's task, without the status writes: drain and record.
    let recorded = Arc::new(AtomicU64::new(0));
    {
        let aggregator = aggregator.clone();
        let recorded = recorded.clone();
        tokio::spawn(async move {
            loop {
                let n = aggregator.drain();
                recorded.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            }
        });
    }

    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{addr}/audit");
    println!(
        "audit ingest, in process: {grants} Active grants, batches of {BATCH} events (half attributed), {secs}s per step"
    );
    println!(
        "{:>12} {:>14} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "target ev/s", "sustained ev/s", "RSS start", "RSS end", "RSS Δ", "lag p50", "lag p99"
    );
    let mut seq = 0u64;
    let rss_baseline = rss_mib();
    for target in [1_000u64, 2_000, 5_000, 10_000, 20_000, 0] {
        let rss_start = rss_mib();
        let started = Instant::now();
        let mut sent = 0u64;
        let mut lags = Vec::new();
        while started.elapsed() < Duration::from_secs(secs) {
            if target > 0 {
                // Pace: the next batch is due when the rate says so.
                let due = Duration::from_secs_f64(sent as f64 / target as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let body = batch(seq, grants);
            seq += 1;
            let expected = recorded.load(Ordering::Relaxed) + (BATCH / 2) as u64;
            let posted = Instant::now();
            let request = http::Request::post(&url)
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = client.request(request).await.expect("post");
            assert_eq!(response.status(), 200);
            let _ = response.into_body().collect().await;
            while recorded.load(Ordering::Relaxed) < expected {
                tokio::task::yield_now().await;
            }
            lags.push(posted.elapsed());
            sent += BATCH as u64;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let rss_end = rss_mib();
        lags.sort();
        let label = if target == 0 {
            "max".to_string()
        } else {
            target.to_string()
        };
        println!(
            "{:>12} {:>14.0} {:>8.1}Mi {:>8.1}Mi {:>+8.1}Mi {:>12.2?} {:>12.2?}",
            label,
            sent as f64 / elapsed,
            rss_start,
            rss_end,
            rss_end - rss_start,
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
        );
    }
    println!(
        "RSS over the whole run: {rss_baseline:.1} MiB -> {:.1} MiB; pending summaries: {} requests (bounded by the grants)",
        rss_mib(),
        (0..grants)
            .filter(|i| aggregator.pending_requests(&format!("grant-{i}")) > 0)
            .count()
    );
}
