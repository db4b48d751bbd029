//! Recovery benchmark against a real control plane (`KUBEBUILDER_ASSETS`): the release `kubepim`
//! binary, out of process, taken away the two ways docs/targets.md names.
//!
//!     KUBEBUILDER_ASSETS=/path/to/assets cargo bench --bench recovery
//!     KUBEPIM_RECOVERY_GRANTS=1000 ...        (grants; default 1000)
//!     KUBEPIM_RECOVERY_SCENARIO=down|leader   (default: both)
//!
//! `down`: every grant expires while the operator is down (SIGKILL); it is started again and the
//! figure is how long after its start the last binding was gone, and whether requests created
//! meanwhile were activated only after the revocations (target: 1,000 in ≤ 5 s, 10,000 in ≤ 60 s).
//!
//! `leader`: two replicas with leader election (lease 15 s); the leader is killed (SIGKILL) while
//! grants expire and approvals arrive. Figures: revocation lateness (target ≤ lease + 5 s), any
//! binding created twice for one request (target none), approvals given while nobody led that
//! never became Active (target none).
#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/stats.rs"]
mod stats;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kubepim::api::{ActivationRequest, Decision, Phase, SubjectRef, labels};
use kubepim::policy::lifecycle::binding_name;
use kubepim::time::from_k8s;
use support::Env;
use support::fixtures::{
    approval_entry, create_eligibility, create_role, dur, eligibility, json_patch_status,
    namespace_reader, request, with_approvers,
};

use common::{Operator, env_usize, requests_now};

/// What the binding watch saw, by binding name.
#[derive(Default)]
struct Seen {
    added: HashMap<String, SystemTime>,
    deleted: HashMap<String, SystemTime>,
    /// Seen again after its deletion: a grant given twice.
    recreated: HashSet<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    stats::percentile(sorted, p).unwrap_or(f64::NAN)
}

fn ms_since(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

/// Watches kubepim's ClusterRoleBindings into `seen` (in the background, for the whole run).
fn watch_bindings(env: &Env, seen: Arc<Mutex<Seen>>) {
    let api: Api<ClusterRoleBinding> = Api::all(env.admin());
    let config = watcher::Config::default().labels(labels::MANAGED_SELECTOR);
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let now = SystemTime::now();
            let mut seen = seen.lock().expect("lock");
            match event {
                Ok(watcher::Event::Apply(b)) | Ok(watcher::Event::InitApply(b)) => {
                    let name = b.name_any();
                    if seen.deleted.contains_key(&name) {
                        seen.recreated.insert(name.clone());
                    }
                    seen.added.entry(name).or_insert(now);
                }
                Ok(watcher::Event::Delete(b)) => {
                    seen.deleted.insert(b.name_any(), now);
                }
                _ => {}
            }
        }
    });
}

/// Creates `names` as alice's auto-approved, cluster-wide requests of `role` for `duration`.
async fn create_grants(env: &Env, role: &str, names: &[String], duration: &str) {
    let alice = Api::<ActivationRequest>::all(env.client("alice"));
    stream::iter(names)
        .map(|base| {
            let alice = &alice;
            async move {
                let ar = request(env, base, "alice", role, &[], duration);
                alice.create(&Default::default(), &ar).await.map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("creating the grants");
}

async fn wait_until_active(env: &Env, names: &[String], timeout: Duration) {
    let started = Instant::now();
    loop {
        let now = requests_now(env).await;
        let active = names
            .iter()
            .filter(|n| now.get(&env.name(n)).and_then(|r| r.phase()) == Some(Phase::Active))
            .count();
        if active == names.len() {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "benchmark: only {active} of {} grants Active after {timeout:?}",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn expires_at(r: &ActivationRequest) -> SystemTime {
    SystemTime::from(from_k8s(
        r.status
            .as_ref()
            .and_then(|s| s.expires_at.as_ref())
            .expect("an Active request has expiresAt"),
    ))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let scenario = std::env::var("KUBEPIM_RECOVERY_SCENARIO").unwrap_or_default();
        let grants = env_usize("KUBEPIM_RECOVERY_GRANTS", 1_000);
        if scenario.is_empty() || scenario == "down" {
            down_across_expiry(grants).await;
        }
        if scenario.is_empty() || scenario == "leader" {
            leader_killed(grants).await;
        }
    });
}

/// Every grant expires while the operator is down; then it comes back.
async fn down_across_expiry(grants: usize) {
    let Some(env) = Env::isolated("recovery-down").await else {
        return;
    };
    let logs = std::env::temp_dir().join(format!("kubepim-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut pr = namespace_reader(&env, "down");
    pr.spec.max_duration = dur("2h");
    let role = create_role(&env, &pr).await.name_any();
    create_eligibility(
        &env,
        &eligibility(&env, "down", &role, vec![SubjectRef::user("alice")]),
    )
    .await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    watch_bindings(&env, seen.clone());

    let operator = Operator::start(&env, &logs.join("down-1.log"));
    // Long enough for every grant to be Active before the first expires (about 40 grants/s
    // are activated here), short enough to keep the run brief.
    let duration_s = 30 + grants / 20;
    let names: Vec<String> = (0..grants).map(|k| format!("g{k}")).collect();
    let created = Instant::now();
    create_grants(&env, &role, &names, &format!("{duration_s}s")).await;
    wait_until_active(&env, &names, Duration::from_secs(duration_s as u64 - 5)).await;
    println!(
        "down: {grants} grants of {duration_s} s Active after {:.1} s; operator killed",
        created.elapsed().as_secs_f64()
    );
    operator.kill();

    // While it is down: every grant expires, and new requests arrive.
    let latecomers: Vec<String> = (0..50).map(|k| format!("late{k}")).collect();
    create_grants(&env, &role, &latecomers, "1h").await;
    let last_expiry = requests_now(&env)
        .await
        .values()
        .filter(|r| names.iter().any(|n| env.name(n) == r.name_any()))
        .map(expires_at)
        .max()
        .expect("grants");
    while SystemTime::now() < last_expiry + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let started_at = SystemTime::now();
    let mut back = Operator::start(&env, &logs.join("down-2.log"));
    let ready_s = back.ready().await;
    let bindings: Vec<String> = names.iter().map(|n| binding_name(&env.name(n))).collect();
    let late_bindings: Vec<String> = latecomers
        .iter()
        .map(|n| binding_name(&env.name(n)))
        .collect();
    let waited = Instant::now();
    loop {
        let done = {
            let seen = seen.lock().expect("lock");
            bindings.iter().all(|b| seen.deleted.contains_key(b))
                && late_bindings.iter().all(|b| seen.added.contains_key(b))
        };
        if done {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(300),
            "benchmark: revocations or activations missing 300 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    back.stop();

    let seen = seen.lock().expect("lock");
    let last_revoked = bindings
        .iter()
        .map(|b| seen.deleted[b])
        .max()
        .expect("bindings");
    let first_late = late_bindings
        .iter()
        .filter_map(|b| seen.added.get(b).copied())
        .min()
        .expect("latecomers");
    let revoked_after_first_activation = bindings
        .iter()
        .filter(|b| seen.deleted[*b] > first_late)
        .count();
    let target = if grants <= 1_000 { 5.0 } else { 60.0 };
    println!();
    println!("| figure (operator down across {grants} expiries) | measured | target |");
    println!("|---|---|---|");
    println!("| restart → ready (caches synced) | {ready_s:.1} s | — |");
    println!(
        "| restart → last expired binding gone | {:.2} s | ≤ {target:.0} s |",
        ms_since(started_at, last_revoked) / 1000.0
    );
    println!(
        "| restart → first of 50 new requests activated | {:.2} s | after the revocations |",
        ms_since(started_at, first_late) / 1000.0
    );
    println!(
        "| revocations that came after that first activation | {revoked_after_first_activation} of {grants} | 0 |"
    );
}

/// Two replicas; the leader is killed while grants expire and approvals arrive.
async fn leader_killed(grants: usize) {
    let Some(env) = Env::isolated("recovery-leader").await else {
        return;
    };
    let logs = std::env::temp_dir().join(format!("kubepim-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let lease_ns = env.namespace("lease").await;
    let mut pr = namespace_reader(&env, "leader");
    pr.spec.max_duration = dur("2h");
    let role = create_role(&env, &pr).await.name_any();
    let approved = create_role(
        &env,
        &with_approvers(namespace_reader(&env, "approved"), 1, &["bob"], &[]),
    )
    .await
    .name_any();
    for r in [&role, &approved] {
        create_eligibility(
            &env,
            &eligibility(&env, r, r, vec![SubjectRef::user("alice")]),
        )
        .await;
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    watch_bindings(&env, seen.clone());

    let lease_s = 15;
    let replica = |name: &str| {
        Operator::start_as(
            &env,
            &logs.join(format!("{name}.log")),
            "admin",
            &[
                "--leader-election",
                "--lease-namespace",
                &lease_ns,
                "--lease-duration",
                &format!("{lease_s}s"),
            ],
            &[("POD_NAME", name)],
        )
    };
    let mut replicas = vec![("replica-a", replica("replica-a"))];
    tokio::time::sleep(Duration::from_secs(2)).await;
    replicas.push(("replica-b", replica("replica-b")));
    for (_, r) in replicas.iter_mut() {
        r.ready().await;
    }

    // Grants whose expiries spread over the 40 s after the kill (and a few before it).
    let per_second = (grants / 40).max(1);
    let names: Vec<String> = (0..grants).map(|k| format!("g{k}")).collect();
    let base_s = 30 + grants / 30;
    let created = Instant::now();
    for (batch, chunk) in names.chunks(per_second).enumerate() {
        create_grants(&env, &role, chunk, &format!("{}s", base_s + batch)).await;
    }
    wait_until_active(&env, &names, Duration::from_secs(base_s as u64)).await;
    // Requests waiting for bob, approved while nobody leads.
    let waiting: Vec<String> = (0..20).map(|k| format!("w{k}")).collect();
    let alice = Api::<ActivationRequest>::all(env.client("alice"));
    for base in &waiting {
        let ar = request(&env, base, "alice", &approved, &[], "30s");
        alice
            .create(&Default::default(), &ar)
            .await
            .expect("a waiting request");
    }
    let all = requests_now(&env).await;
    let first_expiry = names
        .iter()
        .map(|n| expires_at(&all[&env.name(n)]))
        .min()
        .expect("grants");
    println!(
        "leader: {grants} grants Active after {:.1} s; killing the leader 3 s after the first expiry",
        created.elapsed().as_secs_f64()
    );
    while SystemTime::now() < first_expiry + Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leases: Api<Lease> = Api::namespaced(env.admin(), &lease_ns);
    let holder = leases
        .get("kubepim")
        .await
        .ok()
        .and_then(|l| l.spec.and_then(|s| s.holder_identity))
        .expect("a lease holder");
    let leader = replicas
        .iter()
        .position(|(name, _)| holder.starts_with(name))
        .expect("the holder is one of the replicas");
    let (leader_name, killed) = replicas.remove(leader);
    let killed_at = SystemTime::now();
    killed.kill();
    println!("killed {leader_name} (lease holder {holder})");
    for base in &waiting {
        let patch = serde_json::json!([{"op": "add", "path": "/status/approvals/-",
            "value": approval_entry("bob", Decision::Approved, "recovery bench")}]);
        json_patch_status(&env, "bob", &env.name(base), &patch)
            .await
            .expect("bob approves while nobody leads");
    }

    // Every grant revoked, every approved request activated (and later revoked).
    let bindings: Vec<String> = names.iter().map(|n| binding_name(&env.name(n))).collect();
    let waiting_bindings: Vec<String> =
        waiting.iter().map(|n| binding_name(&env.name(n))).collect();
    let waited = Instant::now();
    loop {
        let done = {
            let seen = seen.lock().expect("lock");
            bindings.iter().all(|b| seen.deleted.contains_key(b))
                && waiting_bindings.iter().all(|b| seen.added.contains_key(b))
        };
        if done || waited.elapsed() > Duration::from_secs(180) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, r) in replicas {
        r.stop();
    }

    let seen = seen.lock().expect("lock");
    let mut lateness: Vec<f64> = Vec::new();
    let mut after_kill: Vec<f64> = Vec::new();
    let mut missing = 0;
    for (name, binding) in names.iter().zip(&bindings) {
        match seen.deleted.get(binding) {
            Some(at) => {
                let expiry = expires_at(&all[&env.name(name)]);
                let late = ms_since(expiry, *at);
                lateness.push(late);
                if expiry >= killed_at {
                    after_kill.push(late);
                }
            }
            None => missing += 1,
        }
    }
    lateness.sort_by(f64::total_cmp);
    after_kill.sort_by(f64::total_cmp);
    let created_twice = bindings
        .iter()
        .chain(&waiting_bindings)
        .filter(|b| seen.recreated.contains(*b))
        .count();
    let lost = waiting_bindings
        .iter()
        .filter(|b| !seen.added.contains_key(*b))
        .count();
    println!();
    println!(
        "| figure (leader SIGKILL, two replicas, lease {lease_s} s, {grants} grants) | measured | target |"
    );
    println!("|---|---|---|");
    println!(
        "| revocation lateness, all grants: p50 / p99 / max | {:.0} / {:.0} / {:.0} ms | max ≤ {} s |",
        percentile(&lateness, 50.0),
        percentile(&lateness, 99.0),
        lateness.last().copied().unwrap_or(f64::NAN),
        lease_s + 5
    );
    println!(
        "| lateness of the {} grants expiring after the kill: p50 / max | {:.0} / {:.0} ms | — |",
        after_kill.len(),
        percentile(&after_kill, 50.0),
        after_kill.last().copied().unwrap_or(f64::NAN)
    );
    println!("| grants never revoked (within 180 s) | {missing} | 0 |");
    println!("| bindings created again after their deletion | {created_twice} | 0 |");
    println!("| approvals given while nobody led, never activated | {lost} of 20 | 0 |");
}
