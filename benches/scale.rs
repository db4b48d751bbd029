//! Scale benchmark against a real control plane (`KUBEBUILDER_ASSETS`): the operator as users run
//! it (the release `kubepim` binary, out of process, its own memory) with many policy objects and
//! active grants. Prints the scale rows of docs/targets.md.
//!
//!     KUBEBUILDER_ASSETS=/path/to/assets cargo bench --bench scale
//!     KUBEPIM_SCALE_GRANTS=1000 ...   (active grants; default 10000)
//!     KUBEPIM_SCALE_ROLES=500 KUBEPIM_SCALE_ELIGIBILITIES=5000   (the defaults)
//!     KUBEPIM_SCALE_SETTLE_SECS=15   (wait after the last activation before the idle sample)
//!
//! What it does: creates the PrivilegedRoles and Eligibilities, starts the operator, creates the
//! grants (auto-approved, cluster-wide: one ClusterRoleBinding each) and waits until all are
//! Active; then measures resident memory and CPU while idle, restarts the operator and measures
//! the time until it is ready and has reconciled every request once, and the memory peak of that
//! re-list. Memory is the process's own (`VmRSS`, `VmHWM` from /proc).
#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{Operator, cpu_seconds, env_usize, memory_mib, requests_now};
use futures::{StreamExt, TryStreamExt, stream};
use kube::ResourceExt;
use kube::api::Api;
use kubepim::api::{ActivationRequest, Phase, SubjectRef};
use support::Env;
use support::fixtures::{
    create_eligibility, create_role, dur, eligibility, namespace_reader, request,
};

/// Resident memory sampled every 500 ms for `window`: (max VmRSS, last VmRSS, VmHWM) in MiB, and
/// the CPU share used meanwhile (1.0 = one core).
async fn sample(pid: u32, window: Duration) -> (f64, f64, f64, f64) {
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut max_rss: f64 = 0.0;
    let mut last = (f64::NAN, f64::NAN);
    while started.elapsed() < window {
        last = memory_mib(pid);
        max_rss = max_rss.max(last.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = (cpu_seconds(pid) - cpu_before) / started.elapsed().as_secs_f64();
    (max_rss, last.0, last.1, cpu)
}

/// How many of the test's requests are Active.
async fn active_count(env: &Env) -> usize {
    requests_now(env)
        .await
        .values()
        .filter(|r| r.phase() == Some(Phase::Active))
        .count()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let Some(env) = Env::isolated("scale").await else {
        return;
    };
    let grants = env_usize("KUBEPIM_SCALE_GRANTS", 10_000);
    let roles = env_usize("KUBEPIM_SCALE_ROLES", 500).max(1);
    let eligibilities = env_usize("KUBEPIM_SCALE_ELIGIBILITIES", 5_000).max(roles);
    let log_dir = std::env::temp_dir().join(format!("kubepim-scale-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    println!(
        "scale: {roles} PrivilegedRoles, {eligibilities} Eligibilities, {grants} cluster-wide grants; operator = release binary, out of process; logs in {}",
        log_dir.display()
    );

    // Policy: the roles, and the eligibilities spread over them (alice in one per role).
    let role_names: Vec<String> = stream::iter(0..roles)
        .map(|i| {
            let env = &env;
            async move {
                let mut pr = namespace_reader(env, &format!("r{i}"));
                pr.spec.max_duration = dur("2h");
                create_role(env, &pr).await.name_any()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    stream::iter(0..eligibilities)
        .for_each_concurrent(16, |j| {
            let env = &env;
            let role = &role_names[j % roles];
            async move {
                let subjects = if j < roles {
                    vec![SubjectRef::user("alice")]
                } else {
                    vec![SubjectRef::user(format!("user-{j}"))]
                };
                create_eligibility(env, &eligibility(env, &format!("e{j}"), role, subjects)).await;
            }
        })
        .await;

    let mut operator = Operator::start(&env, &log_dir.join("operator-1.log"));
    let ready_policy = operator.ready().await;
    let (_, rss_policy, _, _) = sample(operator.pid(), Duration::from_secs(5)).await;
    println!("ready with the policy objects only: {ready_policy:.1} s, RSS {rss_policy:.1} MiB");

    // The grants: auto-approved, created as fast as the API server takes them.
    let alice = Api::<ActivationRequest>::all(env.client("alice"));
    let created = Instant::now();
    stream::iter(0..grants)
        .map(|k| {
            let env = &env;
            let alice = &alice;
            let role = &role_names[k % roles];
            async move {
                let ar = request(env, &format!("g{k}"), "alice", role, &[], "1h");
                alice.create(&Default::default(), &ar).await.map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("creating the grants");
    let creation_s = created.elapsed().as_secs_f64();
    loop {
        let active = active_count(&env).await;
        if active >= grants {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let all_active_s = created.elapsed().as_secs_f64();
    println!(
        "{grants} grants: created in {creation_s:.1} s, all Active after {all_active_s:.1} s ({:.0}/s)",
        grants as f64 / all_active_s
    );

    // Steady state: settle, then 30 s of idle sampling.
    let settle = env_usize("KUBEPIM_SCALE_SETTLE_SECS", 15) as u64;
    println!(
        "settling {settle} s, then sampling operator pid {} for 30 s",
        operator.pid()
    );
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let (steady_max, steady_last, hwm_first, idle_cpu) =
        sample(operator.pid(), Duration::from_secs(30)).await;
    operator.stop();

    // Restart with everything in place: ready (caches synced), first full pass, re-list peak.
    let mut restarted = Operator::start(&env, &log_dir.join("operator-2.log"));
    let ready_s = restarted.ready().await;
    let pass_s = restarted.reconciled(grants).await;
    let (_, after_rss, peak_hwm, _) = sample(restarted.pid(), Duration::from_secs(20)).await;
    restarted.stop();

    println!();
    println!("| figure | measured | target |");
    println!("|---|---|---|");
    println!("| RSS, policy objects only | {rss_policy:.1} MiB | — |");
    println!(
        "| RSS steady with {grants} active grants (max / last over 30 s idle) | {steady_max:.1} / {steady_last:.1} MiB | ≤ 64 MiB |"
    );
    println!("| VmHWM of the first run (activation backlog included) | {hwm_first:.1} MiB | — |");
    println!(
        "| CPU while idle | {:.2} % of a core | ≈ 0 |",
        idle_cpu * 100.0
    );
    println!("| restart: ready (caches synced) | {ready_s:.1} s | — |");
    println!("| restart: every request reconciled once | {pass_s:.1} s | ≤ 10 s |");
    println!("| restart: peak RSS (VmHWM) during the re-list | {peak_hwm:.1} MiB | ≤ 128 MiB |");
    println!("| restart: RSS 20 s later | {after_rss:.1} MiB | — |");
    println!(
        "| backlog: {grants} requests → Active | {all_active_s:.1} s ({:.0}/s) | — |",
        grants as f64 / all_active_s
    );
}
