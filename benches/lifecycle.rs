//! Lifecycle benchmark against a real control plane (`KUBEBUILDER_ASSETS`): prints the figures of
//! docs/targets.md that a single loopback API server can show.
//!
//!     KUBEBUILDER_ASSETS=/path/to/assets cargo bench --bench lifecycle
//!     KUBEPIM_BENCH_N=300 ...   (activations per flow; default 200)
//!     KUBEPIM_BENCH_SAR=20 ...  (grants measured by SubjectAccessReview, one at a time)
//!
//! Times are taken on this machine's clock: the start just before the client sends the request
//! or approval, the end when the benchmark's own watch sees the binding appear or disappear. That
//! includes one watch delivery, so the figures are slightly pessimistic against targets.md's
//! server-side definitions (API server timestamps have one-second resolution, too coarse here).
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/stats.rs"]
mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::client::ClientBuilder;
use kube::runtime::{WatchStreamExt, watcher};
use kubepim::api::{ActivationRequest, Decision, Phase, SubjectRef, labels};
use kubepim::metrics::api_requests::{ApiCallCounter, Verb};
use kubepim::policy::footholds;
use kubepim::policy::lifecycle::binding_name;
use kubepim::runtime::{OperatorSettings, run_operator};
use support::Env;
use support::envtest::POD_READER;
use support::fixtures::{
    approval_entry, can_with, create_eligibility, create_role, eligibility, json_patch_status,
    pod_reader, request, submit, with_approvers,
};

/// What the binding watcher saw, by binding name.
#[derive(Default)]
struct Seen {
    added: HashMap<String, SystemTime>,
    deleted: HashMap<String, SystemTime>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    stats::percentile(sorted, p).unwrap_or(f64::NAN)
}

fn summary(name: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&ms, 50.0), percentile(&ms, 99.0));
    let (min, max) = (
        ms.first().copied().unwrap_or(f64::NAN),
        ms.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "{name:<44} n={:<4} p50={p50:>8.1} ms  p99={p99:>8.1} ms  min={min:>8.1}  max={max:>8.1}",
        ms.len()
    );
    (p50, p99)
}

/// Status refreshes of PrivilegedRoles and Eligibilities so far: their counts follow the grants
/// (throttled per object), off the grant path, so they are reported apart from its writes.
fn status_refreshes(counter: &ApiCallCounter) -> u64 {
    counter
        .calls()
        .iter()
        .filter(|(key, _)| {
            key.verb == Verb::Patch
                && matches!(
                    key.resource.as_str(),
                    "privilegedroles/status" | "eligibilities/status"
                )
        })
        .map(|(_, n)| n)
        .sum()
}

fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, timeout: Duration, done: F) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "benchmark: timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A bare RoleBinding create round trip, the physical floor activation is compared with.
async fn floor(env: &Env, ns: &str, n: usize) -> Vec<f64> {
    let api: Api<RoleBinding> = Api::namespaced(env.admin(), ns);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let rb = RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("floor-{i}")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: POD_READER.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: "alice".into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                namespace: None,
            }]),
        };
        let t0 = Instant::now();
        api.create(&PostParams::default(), &rb)
            .await
            .expect("floor create");
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        api.delete(&format!("floor-{i}"), &DeleteParams::default())
            .await
            .expect("floor delete");
    }
    out
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let Some(env) = Env::isolated("bench").await else {
        return;
    };
    let n: usize = std::env::var("KUBEPIM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ns = env.namespace("bench").await;

    // The operator, in-process, behind the counting layer.
    let counter = ApiCallCounter::new();
    let mut config = env.config("operator");
    config.default_retry = false;
    let client = ClientBuilder::try_from(config)
        .expect("client builder")
        .with_layer(&counter)
        .build();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = OperatorSettings {
        sweep_interval: Duration::from_secs(30),
        concurrency: 16,
        ..Default::default()
    };
    let operator = tokio::spawn(run_operator(client, settings, async move {
        let _ = stop_rx.await;
    }));

    // Watch managed bindings in the namespace, recording when each appears and disappears.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch_cfg = watcher::Config::default().labels(labels::MANAGED_SELECTOR);
    let stream =
        watcher(Api::<RoleBinding>::namespaced(env.admin(), &ns), watch_cfg).default_backoff();
    let recorder = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let now = SystemTime::now();
            let mut seen = recorder.lock().expect("lock");
            match event {
                Ok(watcher::Event::Apply(rb) | watcher::Event::InitApply(rb)) => {
                    seen.added
                        .entry(rb.metadata.name.unwrap_or_default())
                        .or_insert(now);
                }
                Ok(watcher::Event::Delete(rb)) => {
                    seen.deleted
                        .entry(rb.metadata.name.unwrap_or_default())
                        .or_insert(now);
                }
                _ => {}
            }
        }
    });

    let auto = create_role(&env, &pod_reader(&env, "auto", &[&ns])).await;
    let approved = create_role(
        &env,
        &with_approvers(pod_reader(&env, "approved", &[&ns]), 1, &["bob"], &[]),
    )
    .await;
    for role in [&auto, &approved] {
        let role_name = role.metadata.name.clone().expect("name");
        create_eligibility(
            &env,
            &eligibility(
                &env,
                &format!("{role_name}-e"),
                &role_name,
                vec![SubjectRef::user("alice")],
            ),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!("\nkubepim lifecycle benchmark: {n} activations per flow, API server on loopback");
    let floor_ms = floor(&env, &ns, 100).await;

    // 1. Auto-approved: request creation → binding.
    let (writes_before, events_before, refreshes_before) = (
        counter.object_writes(),
        counter.event_writes(),
        status_refreshes(&counter),
    );
    let mut created: Vec<(String, SystemTime)> = Vec::with_capacity(n);
    let auto_name = auto.metadata.name.clone().expect("name");
    for i in 0..n {
        let ar = request(&env, &format!("a{i}"), "alice", &auto_name, &[&ns], "20s");
        let name = ar.metadata.name.clone().expect("name");
        let t0 = SystemTime::now();
        submit(&env, "alice", &ar).await;
        created.push((name, t0));
    }
    wait_for("auto-approved bindings", Duration::from_secs(60), || {
        let seen = seen.lock().expect("lock");
        created
            .iter()
            .all(|(name, _)| seen.added.contains_key(&binding_name(name)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let auto_refreshes = status_refreshes(&counter) - refreshes_before;
    let (auto_writes, auto_events) = (
        counter.object_writes() - writes_before - auto_refreshes,
        counter.event_writes() - events_before,
    );
    let auto_ms: Vec<f64> = {
        let seen = seen.lock().expect("lock");
        created
            .iter()
            .map(|(name, t0)| ms_between(*t0, seen.added[&binding_name(name)]))
            .collect()
    };

    // 2. One approver: approval → binding. Requests first, then approvals one by one.
    let approved_name = approved.metadata.name.clone().expect("name");
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let ar = request(
            &env,
            &format!("p{i}"),
            "alice",
            &approved_name,
            &[&ns],
            "20s",
        );
        pending.push(
            submit(&env, "alice", &ar)
                .await
                .metadata
                .name
                .expect("name"),
        );
    }
    let requests: Api<ActivationRequest> = Api::all(env.admin());
    for name in &pending {
        support::wait::phase(&env, name, Phase::Pending).await;
    }
    let (writes_before_approvals, events_before_approvals, refreshes_before_approvals) = (
        counter.object_writes(),
        counter.event_writes(),
        status_refreshes(&counter),
    );
    let mut approvals = Vec::with_capacity(n);
    for name in &pending {
        let patch = serde_json::json!([{"op": "add", "path": "/status/approvals/-", "value": approval_entry("bob", Decision::Approved, "bench")}]);
        let t0 = SystemTime::now();
        json_patch_status(&env, "bob", name, &patch)
            .await
            .expect("approve");
        approvals.push((name.clone(), t0));
    }
    wait_for("approved bindings", Duration::from_secs(60), || {
        let seen = seen.lock().expect("lock");
        approvals
            .iter()
            .all(|(name, _)| seen.added.contains_key(&binding_name(name)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let approval_refreshes = status_refreshes(&counter) - refreshes_before_approvals;
    let (approval_writes, approval_events) = (
        counter.object_writes() - writes_before_approvals - approval_refreshes,
        counter.event_writes() - events_before_approvals,
    );
    let approval_ms: Vec<f64> = {
        let seen = seen.lock().expect("lock");
        approvals
            .iter()
            .map(|(name, t0)| ms_between(*t0, seen.added[&binding_name(name)]))
            .collect()
    };

    // 3. Expiry: every grant above ends 20 s after activation; lateness = deletion seen − expiresAt.
    let all: Vec<String> = created
        .iter()
        .map(|(n, _)| n.clone())
        .chain(pending.iter().cloned())
        .collect();
    let mut expires: HashMap<String, DateTime<Utc>> = HashMap::new();
    for name in &all {
        let ar = requests.get(name).await.expect("get request");
        let at = ar
            .status
            .and_then(|s| s.expires_at)
            .map(|t| kubepim::time::from_k8s(&t))
            .expect("expiresAt");
        expires.insert(name.clone(), at);
    }
    let (writes_before_expiry, events_before_expiry, refreshes_before_expiry) = (
        counter.object_writes(),
        counter.event_writes(),
        status_refreshes(&counter),
    );
    wait_for("expiry of every grant", Duration::from_secs(90), || {
        let seen = seen.lock().expect("lock");
        all.iter()
            .all(|name| seen.deleted.contains_key(&binding_name(name)))
    })
    .await;
    let last_deleted = Instant::now();
    // The foothold reviews follow the revocations (one scan and one status write each); the
    // idle minute starts once they are done.
    let mut pending = all.len();
    while pending > 0 {
        assert!(
            last_deleted.elapsed() < Duration::from_secs(300),
            "benchmark: timed out waiting for {pending} foothold reviews"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let list = requests
            .list(&Default::default())
            .await
            .expect("list requests");
        pending = list
            .items
            .iter()
            .filter(|r| all.contains(&r.name_any()))
            .filter(|r| r.status.as_ref().is_none_or(footholds::is_pending))
            .count();
    }
    let reviews_drained = last_deleted.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let expiry_refreshes = status_refreshes(&counter) - refreshes_before_expiry;
    let (expiry_writes, expiry_events) = (
        counter.object_writes() - writes_before_expiry - expiry_refreshes,
        counter.event_writes() - events_before_expiry,
    );
    let lateness_ms: Vec<f64> = {
        let seen = seen.lock().expect("lock");
        all.iter()
            .map(|name| {
                ms_between(
                    SystemTime::from(expires[name]),
                    seen.deleted[&binding_name(name)],
                )
            })
            .collect()
    };

    // 4. Idle: nothing changes for a minute (a resync may fire; it must write nothing).
    let idle_secs: u64 = std::env::var("KUBEPIM_BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let (idle_writes_before, idle_calls_before) = (
        counter.writes(),
        Verb::ALL.iter().map(|v| counter.count(*v)).sum::<u64>(),
    );
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_writes = counter.writes() - idle_writes_before;
    let idle_calls = Verb::ALL.iter().map(|v| counter.count(*v)).sum::<u64>() - idle_calls_before;

    // 5. What the requester sees: a SubjectAccessReview polled as alice, one grant at a time (a
    //    second grant would authorise her already).
    let sar_n: usize = std::env::var("KUBEPIM_BENCH_SAR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (authorised_ms, denied_ms) = sar_flow(&env, &ns, &approved_name, sar_n).await;

    println!();
    let (floor_p50, _) = summary("floor: bare RoleBinding create round trip", floor_ms);
    summary("auto-approved request -> binding", auto_ms);
    let (approval_p50, _) = summary("approval -> binding", approval_ms);
    let (late_p50, late_p99) = summary("expiry -> binding gone (lateness)", lateness_ms.clone());
    let earliest = lateness_ms.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{:<44} {:.1} ms (negative = early; must never be below -1000 ms)",
        "earliest deletion relative to expiresAt", earliest
    );
    println!(
        "{:<44} {:.2}x (target <= 5x)",
        "ratio approval->binding p50 / floor p50",
        approval_p50 / floor_p50
    );
    let per = |w: u64, count: usize| w as f64 / count as f64;
    println!(
        "{:<44} {:.2} + {:.2} Events (finalizer + binding + status; target <= 3)",
        "API writes per auto-approved activation",
        per(auto_writes, n),
        per(auto_events, n)
    );
    println!(
        "{:<44} {:.2} + {:.2} Events (target <= 3)",
        "API writes per approval-driven activation",
        per(approval_writes, n),
        per(approval_events, n)
    );
    println!(
        "{:<44} {:.2} + {:.2} Events (binding delete + status, target <= 2; then the \
         foothold review's one status write)",
        "API writes per grant end (revocation + review)",
        per(expiry_writes, all.len()),
        per(expiry_events, all.len())
    );
    println!(
        "{:<44} {:.1} s after the last binding was gone ({} reviews, two at a time)",
        "foothold reviews drained",
        reviews_drained.as_secs_f64(),
        all.len()
    );
    println!(
        "{:<44} {auto_refreshes} / {approval_refreshes} / {expiry_refreshes} \
         (activations / approvals / expiries; off the grant path)",
        "role/eligibility status refreshes"
    );
    println!(
        "{:<44} {idle_writes} writes, {idle_calls} calls in {idle_secs} s (target 0 writes/min)",
        "idle"
    );
    println!(
        "(expiry lateness p50 {late_p50:.1} ms / p99 {late_p99:.1} ms against targets p50 <= 50, p99 <= 250)"
    );
    summary("approval -> requester authorised (SAR)", authorised_ms);
    summary("expiresAt -> requester denied (SAR)", denied_ms);
    println!("(SAR targets: authorised p99 <= 250 ms; denied p99 <= 500 ms)");

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
}

/// Polls "may alice list pods in `ns`?" until the answer is `want`; the time it took.
async fn until_authorised(env: &Env, ns: &str, want: bool, since: SystemTime) -> f64 {
    let admin = env.admin();
    let started = Instant::now();
    while can_with(&admin, "alice", "list", "pods", Some(ns)).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "benchmark: alice's access never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ms_between(since, SystemTime::now())
}

/// `n` grants of `role` (one approver) in turn: approval → alice authorised, and `expiresAt` →
/// alice denied, each by SubjectAccessReview.
async fn sar_flow(env: &Env, ns: &str, role: &str, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut authorised = Vec::with_capacity(n);
    let mut denied = Vec::with_capacity(n);
    for i in 0..n {
        let ar = request(env, &format!("sar{i}"), "alice", role, &[ns], "3s");
        let name = submit(env, "alice", &ar).await.name_any();
        support::wait::phase(env, &name, Phase::Pending).await;
        let patch = serde_json::json!([{"op": "add", "path": "/status/approvals/-",
            "value": approval_entry("bob", Decision::Approved, "bench")}]);
        let t0 = SystemTime::now();
        json_patch_status(env, "bob", &name, &patch)
            .await
            .expect("approve");
        authorised.push(until_authorised(env, ns, true, t0).await);
        let active = support::wait::phase(env, &name, Phase::Active).await;
        let expires = active
            .status
            .and_then(|s| s.expires_at)
            .map(|t| SystemTime::from(kubepim::time::from_k8s(&t)))
            .expect("expiresAt");
        while SystemTime::now() < expires - Duration::from_millis(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        denied.push(until_authorised(env, ns, false, expires).await);
    }
    (authorised, denied)
}
