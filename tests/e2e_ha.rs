//! End-to-end: high availability. Two in-process operator replicas with leader election against
//! one real API server, a stream of short grants (some approved by a person), and the leader
//! taken away mid-stream:
//!
//! - **killed** (its task aborted: no release of the lease, like SIGKILL): the other replica takes
//!   over within the lease duration (+ a second); no request ever has two bindings in one
//!   namespace; no approval is lost; every revocation is late by at most the lease duration + 5 s;
//! - **stopped gracefully** (its shutdown future resolved, like SIGTERM: it stops its controllers
//!   and releases the lease): the other takes over at once and nothing is late by more than 1 s.
//!
//! Plus: `/metrics` serves every metric name the chart's alerts and dashboard use, and `/readyz`
//! turns ready once the caches have synced.
//!
//! Lateness is measured by the test itself (a watch on the managed RoleBindings: time of the
//! deletion event − the request's `status.expiresAt`), not taken from the operator's metrics.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_ha`
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta};
use kube::client::ClientBuilder;
use kube::runtime::{WatchStreamExt, watcher};
use kubepim::api::labels::{MANAGED_SELECTOR, REQUEST};
use kubepim::api::{ActivationRequest, Decision, Phase, SubjectRef};
use kubepim::metrics::Metrics;
use kubepim::policy::lifecycle::binding_name;
use kubepim::runtime::LeaderSettings;
use kubepim::runtime::OperatorSettings;
use kubepim::time::from_k8s;
use support::Env;
use support::fixtures::{self, submit};
use support::wait::{describe, until};

/// Short, so the killed-leader test does not take long; the bound scales with it.
const LEASE: Duration = Duration::from_secs(5);
const REQUESTS: usize = 20;
/// Time between two submissions.
const PACE: Duration = Duration::from_millis(500);
/// The leader goes after this many submissions: the first grants expire during the take-over.
const TAKE_AWAY_AFTER: usize = 16;

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One operator replica, as `kubepim run --leader-election` runs it.
struct Replica {
    identity: String,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), kubepim::runtime::Error>>,
}

impl Replica {
    fn start(env: &Env, identity: &str, lease_ns: &str, health: Option<SocketAddr>) -> Self {
        let mut config = env.config("operator");
        config.default_retry = false;
        let metrics = Arc::new(Metrics::new());
        let client = ClientBuilder::try_from(config)
            .expect("client")
            .with_layer(metrics.api_calls())
            .build();
        let settings = OperatorSettings {
            sweep_interval: Duration::from_secs(30),
            concurrency: 4,
            health,
            leader_election: Some(LeaderSettings {
                lease_name: env.name("lease"),
                namespace: lease_ns.into(),
                identity: identity.into(),
                duration: LEASE,
            }),
            metrics: metrics.clone(),
            ..OperatorSettings::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kubepim::runtime::run_operator(
            client,
            settings,
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            identity: identity.into(),
            metrics,
            stop: Some(tx),
            task,
        }
    }

    fn leads(&self) -> bool {
        self.metrics.is_leader()
    }

    /// Like SIGKILL: everything it runs goes at once; the lease is not released.
    fn kill(self) {
        self.task.abort();
    }

    /// Like SIGTERM: stops its controllers, releases the lease, returns.
    async fn stop(mut self) -> String {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(30), &mut self.task).await {
            Ok(Ok(result)) => format!("{result:?}"),
            Ok(Err(e)) => panic!("replica {} panicked: {e}", self.identity),
            Err(_) => panic!("replica {} did not stop within 30s", self.identity),
        }
    }
}

/// Lets the `operator` user take part in leader election in `namespace` (as the chart's Role).
async fn lease_rbac(env: &Env, namespace: &str) {
    let role = Role {
        metadata: ObjectMeta {
            name: Some("kubepim-leader-election".into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".into()]),
            resources: Some(vec!["leases".into()]),
            verbs: ["get", "list", "watch", "create", "update", "patch"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        }]),
    };
    fixtures::create(&Api::namespaced(env.admin(), namespace), &role).await;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("kubepim-leader-election".into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "kubepim-leader-election".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: "operator".into(),
            namespace: None,
        }]),
    };
    fixtures::create(&Api::namespaced(env.admin(), namespace), &binding).await;
}

/// When each managed RoleBinding in `namespace` was first seen gone.
#[derive(Default)]
struct Deletions(BTreeMap<String, SystemTime>);

fn watch_deletions(env: &Env, namespace: &str) -> Arc<Mutex<Deletions>> {
    let seen = Arc::new(Mutex::new(Deletions::default()));
    let api: Api<RoleBinding> = Api::namespaced(env.admin(), namespace);
    let stream =
        watcher(api, watcher::Config::default().labels(MANAGED_SELECTOR)).default_backoff();
    let record = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Delete(rb)) = event {
                let now = SystemTime::now();
                record.lock().unwrap().0.entry(rb.name_any()).or_insert(now);
            }
        }
    });
    seen
}

/// Lists the managed bindings every 100 ms; records any request with two bindings in one
/// namespace.
fn watch_duplicates(env: &Env) -> (Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicU64>) {
    let found = Arc::new(Mutex::new(Vec::new()));
    let lists = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let api: Api<RoleBinding> = Api::all(env.admin());
    let (record, count) = (found.clone(), lists.clone());
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api
                .list(&ListParams::default().labels(MANAGED_SELECTOR))
                .await
            {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut per: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
                for rb in list.items {
                    let request = rb.labels().get(REQUEST).cloned().unwrap_or_default();
                    per.entry((request, rb.namespace().unwrap_or_default()))
                        .or_default()
                        .push(format!(
                            "{} ({})",
                            rb.name_any(),
                            rb.uid().unwrap_or_default()
                        ));
                }
                for ((request, ns), bindings) in per {
                    if bindings.len() > 1 {
                        record
                            .lock()
                            .unwrap()
                            .push(format!("{request} in {ns}: {bindings:?}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (found, lists)
}

/// A free loopback port (released again before the operator binds it: a small race).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream
        .read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {out:?}"))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

enum TakeAway {
    Kill,
    Stop,
}

struct Figures {
    takeover: Duration,
    lateness: Vec<f64>,
    approvals: usize,
    lists: u64,
}

/// The scenario both variants share. Returns what was measured; asserts the invariants that do
/// not depend on the variant.
async fn stream_of_grants(env: &Env, how: TakeAway) -> Figures {
    let apps = env.namespace("apps").await;
    let lease_ns = env.namespace("kubepim").await;
    lease_rbac(env, &lease_ns).await;

    let auto = fixtures::pod_reader(env, "auto", &[&apps]);
    fixtures::create_role(env, &auto).await;
    let gated = fixtures::with_approvers(
        fixtures::pod_reader(env, "gated", &[&apps]),
        1,
        &["bob"],
        &[],
    );
    fixtures::create_role(env, &gated).await;
    for role in [&auto, &gated] {
        let el = fixtures::eligibility(
            env,
            &format!("alice-{}", role.name_any()),
            &role.name_any(),
            vec![SubjectRef::user("alice")],
        );
        fixtures::create_eligibility(env, &el).await;
    }

    let deletions = watch_deletions(env, &apps);
    let (duplicates, lists) = watch_duplicates(env);

    let a = Replica::start(env, "replica-a", &lease_ns, None);
    until(
        env,
        "replica a to lead",
        Duration::from_secs(30),
        || async {
            if a.leads() {
                Ok(())
            } else {
                Err("not leading".to_string())
            }
        },
    )
    .await;
    let b = Replica::start(env, "replica-b", &lease_ns, None);
    // Let b sync its caches and settle as a follower.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.leads() && !b.leads(), "exactly one replica leads");

    let mut names = Vec::new();
    let mut approvals = Vec::new();
    let mut a = Some(a);
    let mut takeover = None;
    for i in 0..REQUESTS {
        if i == TAKE_AWAY_AFTER {
            let leader = a.take().expect("a");
            // b's leadership gauge, sampled every 10 ms from the moment the leader goes.
            let b_metrics = b.metrics.clone();
            let taken_away_at = Instant::now();
            takeover = Some(tokio::spawn(async move {
                while !b_metrics.is_leader() {
                    if taken_away_at.elapsed() > LEASE + Duration::from_secs(30) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(taken_away_at.elapsed())
            }));
            match how {
                TakeAway::Kill => leader.kill(),
                TakeAway::Stop => {
                    let outcome = leader.stop().await;
                    assert_eq!(outcome, "Ok(())", "the stopped replica's result");
                }
            }
        }
        let needs_approval = i % 4 == 1;
        let role = if needs_approval { &gated } else { &auto };
        let duration = format!("{}s", 10 + (i * 7) % 11);
        let ar = fixtures::request(
            env,
            &format!("r{i:02}"),
            "alice",
            &role.name_any(),
            &[&apps],
            &duration,
        );
        let name = submit(env, "alice", &ar).await.name_any();
        if needs_approval {
            // The approver answers a moment later, as a person would.
            let env_name = name.clone();
            approvals.push(env_name.clone());
            tokio::time::sleep(Duration::from_millis(200)).await;
            fixtures::approve(env, "bob", &env_name).await;
        }
        names.push(name);
        tokio::time::sleep(PACE).await;
    }
    let takeover = takeover
        .expect("taken away")
        .await
        .expect("sampler")
        .unwrap_or_else(|| panic!("replica b never took over"));
    assert!(b.leads(), "b leads");

    // Every request runs its course: Active, then Expired.
    let requests: Api<ActivationRequest> = Api::all(env.admin());
    let mut finals = BTreeMap::new();
    for name in &names {
        let done = until(
            env,
            &format!("{name} to expire"),
            Duration::from_secs(60),
            || {
                let requests = requests.clone();
                async move {
                    let ar = requests.get(name).await.map_err(|e| e.to_string())?;
                    match ar.phase() {
                        Some(Phase::Expired) => Ok(ar),
                        Some(p) if p.is_terminal() => panic!("{name} ended {p}: {}", describe(&ar)),
                        _ => Err(describe(&ar)),
                    }
                }
            },
        )
        .await;
        finals.insert(name.clone(), done);
    }

    // No approval lost: every approved request was granted, with bob's approval kept.
    for name in &approvals {
        let ar = &finals[name];
        let status = ar.status.as_ref().expect("status");
        assert!(
            status.activated_at.is_some(),
            "{name} was approved but never activated: {}",
            describe(ar)
        );
        assert!(
            status
                .approvals
                .iter()
                .any(|a| a.approver == "bob" && a.decision == Decision::Approved),
            "{name} lost its approval: {}",
            describe(ar)
        );
    }

    // Lateness of every revocation, from the deletions the test saw.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deleted = deletions.lock().unwrap().0.clone();
    let mut lateness = Vec::new();
    for (name, ar) in &finals {
        let expires_at = from_k8s(
            ar.status
                .as_ref()
                .and_then(|s| s.expires_at.as_ref())
                .unwrap_or_else(|| panic!("{name} has no expiresAt: {}", describe(ar))),
        );
        let binding = binding_name(name);
        let at = deleted
            .get(&binding)
            .unwrap_or_else(|| panic!("the deletion of {binding} was not seen"));
        let at: chrono::DateTime<chrono::Utc> = (*at).into();
        let late = (at - expires_at).num_milliseconds() as f64 / 1000.0;
        lateness.push(late);
    }
    let left: Vec<_> = fixtures_bindings(env, &apps).await;
    assert!(
        left.is_empty(),
        "bindings left after every grant expired: {left:?}"
    );

    let dups = duplicates.lock().unwrap().clone();
    assert!(
        dups.is_empty(),
        "a request had two bindings in one namespace: {dups:?}"
    );
    let lists = lists.load(std::sync::atomic::Ordering::Relaxed);
    assert!(lists > 100, "the duplicate check ran only {lists} times");

    let outcome = b.stop().await;
    assert_eq!(outcome, "Ok(())", "replica b's result");
    Figures {
        takeover,
        lateness,
        approvals: approvals.len(),
        lists,
    }
}

async fn fixtures_bindings(env: &Env, namespace: &str) -> Vec<String> {
    Api::<RoleBinding>::namespaced(env.admin(), namespace)
        .list(&ListParams::default().labels(MANAGED_SELECTOR))
        .await
        .expect("list")
        .items
        .iter()
        .map(|rb| rb.name_any())
        .collect()
}

fn summary(what: &str, f: &Figures) -> String {
    let mut sorted = f.lateness.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!(
        "e2e_ha {what}: take-over {:.2}s after the leader went; {} revocations late by min {:.3}s, \
         p50 {:.3}s, max {:.3}s; {} approvals kept; {} duplicate checks",
        f.takeover.as_secs_f64(),
        sorted.len(),
        sorted[0],
        pick(0.5),
        sorted[sorted.len() - 1],
        f.approvals,
        f.lists
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_within_the_lease_duration() {
    let Some(env) = Env::isolated("ha-kill").await else {
        return;
    };
    let figures = stream_of_grants(&env, TakeAway::Kill).await;
    say(&summary("leader killed", &figures));
    let bound = LEASE + Duration::from_secs(5);
    assert!(
        figures.takeover <= LEASE + Duration::from_secs(2),
        "take-over took {:?} (lease {LEASE:?})",
        figures.takeover
    );
    for late in &figures.lateness {
        assert!(
            *late <= bound.as_secs_f64(),
            "a revocation was {late:.3}s late (bound: lease {LEASE:?} + 5s)"
        );
        assert!(*late >= -1.0, "a revocation was {:.3}s early", -late);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_hands_over_at_once() {
    let Some(env) = Env::isolated("ha-stop").await else {
        return;
    };
    let figures = stream_of_grants(&env, TakeAway::Stop).await;
    say(&summary("leader stopped", &figures));
    for late in &figures.lateness {
        assert!(
            *late <= 1.0,
            "a revocation was {late:.3}s late after a graceful hand-over"
        );
        assert!(*late >= -1.0, "a revocation was {:.3}s early", -late);
    }
}

/// A lease taken away from the leader (another holder written into it, as a partitioned leader
/// would find after its lease ran out) stops its controllers at once; once that holder fails to
/// renew, the replica takes the lease back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_reconciling_at_once() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    let Some(env) = Env::isolated("ha-lost").await else {
        return;
    };
    let lease_ns = env.namespace("kubepim").await;
    lease_rbac(&env, &lease_ns).await;
    let replica = Replica::start(&env, "replica-l", &lease_ns, None);
    until(
        &env,
        "the replica to lead",
        Duration::from_secs(30),
        || async {
            if replica.leads() {
                Ok(())
            } else {
                Err("not leading".to_string())
            }
        },
    )
    .await;

    let leases: Api<Lease> = Api::namespaced(env.admin(), &lease_ns);
    let renew = serde_json::to_value(kubepim::time::to_k8s_micro(chrono::Utc::now())).unwrap();
    let stolen_at = Instant::now();
    leases
        .patch(
            &env.name("lease"),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"holderIdentity": "intruder", "renewTime": renew}
            })),
        )
        .await
        .expect("steal the lease");
    let stopped = until(
        &env,
        "the replica to stop leading",
        Duration::from_secs(10),
        || async {
            if replica.leads() {
                Err("still leading".to_string())
            } else {
                Ok(stolen_at.elapsed())
            }
        },
    )
    .await;
    let back = until(
        &env,
        "the replica to take the abandoned lease back",
        LEASE + Duration::from_secs(30),
        || async {
            if replica.leads() {
                Ok(stolen_at.elapsed())
            } else {
                Err("not leading".to_string())
            }
        },
    )
    .await;
    say(&format!(
        "e2e_ha lease lost: controllers stopped {:.2}s after another holder appeared; lease \
         taken back after {:.2}s (lease {LEASE:?})",
        stopped.as_secs_f64(),
        back.as_secs_f64()
    ));
    assert!(
        stopped <= Duration::from_secs(2),
        "stopped only after {stopped:?}"
    );
    assert!(
        back <= LEASE + Duration::from_secs(3),
        "took the lease back only after {back:?}"
    );
    let outcome = replica.stop().await;
    assert_eq!(outcome, "Ok(())");
}

/// `/metrics` serves every name the chart uses; `/readyz` turns ready once the caches synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_are_served() {
    let Some(env) = Env::isolated("ha-metrics").await else {
        return;
    };
    let lease_ns = env.namespace("kubepim").await;
    lease_rbac(&env, &lease_ns).await;
    let addr = free_port();
    let replica = Replica::start(&env, "replica-m", &lease_ns, Some(addr));
    let body = until(
        &env,
        "/readyz to answer 200",
        Duration::from_secs(30),
        || async {
            match http_get(addr, "/readyz").await {
                Ok((200, body)) => Ok(body),
                Ok((status, body)) => Err(format!("{status}: {body}")),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    assert!(body.contains("[+]caches ok"), "{body}");
    let (status, _) = http_get(addr, "/healthz").await.expect("healthz");
    assert_eq!(status, 200);
    until(
        &env,
        "the replica to lead",
        Duration::from_secs(30),
        || async {
            if replica.leads() {
                Ok(())
            } else {
                Err("not leading".to_string())
            }
        },
    )
    .await;
    let (status, metrics) = http_get(addr, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    let names: BTreeSet<&str> = [
        "kubepim_reconcile_total",
        "kubepim_reconcile_errors_total",
        "kubepim_reconcile_duration_seconds",
        "kubepim_approval_to_binding_seconds",
        "kubepim_revocation_lateness_seconds",
        "kubepim_active_grants",
        "kubepim_pending_requests",
        "kubepim_unmanaged_privileged_bindings",
        "kubepim_is_leader",
        "kubepim_api_requests_total",
        "kubepim_notifications_delivered_total",
        "kubepim_notifications_failed_total",
    ]
    .into();
    for name in names {
        let family = name.trim_end_matches("_total");
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "/metrics lacks {name}:\n{metrics}"
        );
    }
    assert!(metrics.contains("kubepim_is_leader 1"), "{metrics}");
    assert!(
        metrics.contains("kubepim_api_requests_total{verb=\"watch\",resource=\"activationrequests\",code=\"200\"}"),
        "the API calls are counted by verb, resource and code:\n{metrics}"
    );
    let outcome = replica.stop().await;
    assert_eq!(outcome, "Ok(())");
}
