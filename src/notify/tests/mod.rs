//! Tests of the notifications module. Delivery tests talk HTTP to a local receiver on loopback
//! with a fast retry policy, so the whole suite takes a couple of seconds.
mod config_tests;
mod delivery_tests;
mod payload_tests;
mod receiver;
mod retry_tests;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tracing_subscriber::fmt::MakeWriter;

use super::{EventKind, Notification, NotifyConfig, NotifyError, RetryPolicy};

/// Where test configs pretend to live (relative `file:` paths resolve against its directory).
const CONFIG_PATH: &str = "/etc/kubepim/notifications.yaml";

/// Parses `yaml` with `env` as the environment.
fn parse(yaml: &str, env: &[(&str, &str)]) -> Result<NotifyConfig, NotifyError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    NotifyConfig::parse(yaml, Path::new(CONFIG_PATH), &|name| env.get(name).cloned())
}

/// The problems of an invalid config.
fn problems(yaml: &str, env: &[(&str, &str)]) -> Vec<String> {
    match parse(yaml, env) {
        Err(NotifyError::Invalid { problems, .. }) => problems,
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

/// Fast retries for tests: 5 attempts, 5 ms doubling to 40 ms, 2 s per attempt.
fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        timeout: Duration::from_secs(2),
    }
}

fn notification(kind: EventKind) -> Notification {
    Notification {
        kind,
        request: "alice-payments-x7k2p".into(),
        requester: "alice".into(),
        role: "payments-admin".into(),
        namespaces: vec!["payments".into()],
        until: Some(Utc.with_ymd_and_hms(2025, 5, 1, 10, 30, 0).unwrap()),
        approvers: vec!["bob".into()],
        reason: "Approved".into(),
        message: "approved by bob".into(),
        break_glass: kind == EventKind::BreakGlass,
        time: Utc.with_ymd_and_hms(2025, 5, 1, 10, 0, 0).unwrap(),
    }
}

/// Polls `cond` every 5 ms for at most 5 s.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Everything logged on this thread while the guard lives (every level, every target).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
