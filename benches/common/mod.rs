//! What the out-of-process benchmarks share: the release `kubepim` binary started and stopped as
//! users run it, and what /proc and its `/metrics` say about it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kubepim::api::ActivationRequest;

use crate::support::Env;

/// The test's requests by name, listed page by page.
pub async fn requests_now(env: &Env) -> HashMap<String, ActivationRequest> {
    let api: Api<ActivationRequest> = Api::all(env.admin());
    let mut out = HashMap::new();
    let mut params = ListParams::default()
        .labels(&format!(
            "{}={}",
            crate::support::envtest::TEST_LABEL,
            env.labels()[crate::support::envtest::TEST_LABEL]
        ))
        .limit(500);
    loop {
        let page = api.list(&params).await.expect("list requests");
        out.extend(page.items.into_iter().map(|r| (r.name_any(), r)));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return out,
        }
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User plus system CPU time of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// One plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// `kubepim_reconcile_total{kind="ActivationRequest"}` as the operator reports it.
pub fn request_reconciles(port: u16) -> f64 {
    http_get(port, "/metrics")
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with("kubepim_reconcile_total{kind=\"ActivationRequest\"}"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Operator {
    child: Child,
    pub port: u16,
    pub started: Instant,
}

impl Operator {
    pub fn start(env: &Env, log: &Path) -> Self {
        Self::start_as(env, log, "operator", &[], &[])
    }

    /// The operator as `user` (a kubeconfig of the control plane), with extra flags and
    /// environment.
    pub fn start_as(
        env: &Env,
        log: &Path,
        user: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let kubeconfig = env.kubeconfig(user).expect("a local control plane");
        let out = std::fs::File::create(log).expect("operator log");
        // KUBEPIM_BENCH_BINARY runs another build of the operator (an A/B of two commits).
        let binary = std::env::var_os("KUBEPIM_BENCH_BINARY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_kubepim").into());
        let child = Command::new(binary)
            .args(["run", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--metrics-port", &port.to_string(), "--log-format", "json"])
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the kubepim binary");
        Self {
            child,
            port,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Seconds from start until `/readyz` answers 200 (the caches are synced).
    pub async fn ready(&mut self) -> f64 {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited: {status}");
            }
            if matches!(http_get(self.port, "/readyz"), Some((200, _))) {
                return self.started.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Seconds from start until every one of `n` requests was reconciled at least once.
    pub async fn reconciled(&self, n: usize) -> f64 {
        while request_reconciles(self.port) < n as f64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.started.elapsed().as_secs_f64()
    }

    /// SIGTERM, and wait for the process to go.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL: the process dies without releasing its lease or finishing anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
