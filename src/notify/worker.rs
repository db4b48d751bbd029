//! One sink's delivery task: takes notifications off its queue in order and POSTs each,
//! retrying as [`super::retry`] says, then counts and reports the outcome.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hyper::body::Bytes;
use tokio::sync::{mpsc, watch};

use super::client::{self, HttpClient};
use super::config::SinkConfig;
use super::event::Notification;
use super::payload;
use super::retry::{self, RetryPolicy, Verdict};

/// Target of the module's log lines.
pub(super) const LOG_TARGET: &str = "kubepim::notify";

/// Called once for every notification a sink did not get: after the last failed attempt, or
/// when it was dropped (queue full, notifier shut down). The text names the sink and the cause,
/// never a URL. It runs on the delivery task, or inside
/// [`Notifier::notify`](super::Notifier::notify) for drops, so it must return at once (spawn any
/// async work, such as publishing a Warning Event).
pub type FailureCallback = Arc<dyn Fn(&Notification, &str) + Send + Sync>;

/// One sink's outcomes, shared by its queue's sender (the notifier) and its delivery task.
#[derive(Default)]
pub(super) struct SinkCounters {
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dropped: AtomicU64,
    /// Accepted and not yet finished (waiting or in flight).
    pub(super) queued: AtomicU64,
}

/// What a delivery task needs.
pub(super) struct SinkTask {
    pub(super) config: SinkConfig,
    pub(super) cluster: Option<String>,
    pub(super) client: HttpClient,
    pub(super) policy: RetryPolicy,
    pub(super) counters: Arc<SinkCounters>,
    pub(super) on_failure: Option<FailureCallback>,
}

/// Calls the failure callback, keeping a panic in it from taking a delivery task down.
pub(super) fn report(callback: Option<&FailureCallback>, n: &Notification, why: &str) {
    if let Some(cb) = callback {
        let call = std::panic::AssertUnwindSafe(|| cb(n, why));
        if std::panic::catch_unwind(call).is_err() {
            tracing::error!(target: LOG_TARGET, "the notification failure callback panicked");
        }
    }
}

/// One sink's delivery task: one notification at a time, in order, until the queue is closed
/// (shutdown) or every [`Notifier`] is gone, and then drained.
pub(super) async fn run(
    task: SinkTask,
    mut rx: mpsc::Receiver<Arc<Notification>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut stopping = false;
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s), if !stopping => {
                rx.close();
                stopping = true;
                continue;
            }
            next = rx.recv() => next,
        };
        let Some(n) = next else { break };
        deliver(&task, &n).await;
        task.counters.queued.fetch_sub(1, Relaxed);
    }
}

async fn deliver(task: &SinkTask, n: &Notification) {
    let sink = &task.config;
    let body = Bytes::from(payload::body(sink.kind, n, task.cluster.as_deref()));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (verdict, detail) =
            client::attempt(&task.client, sink, body.clone(), task.policy.timeout).await;
        match verdict {
            Verdict::Delivered => {
                task.counters.delivered.fetch_add(1, Relaxed);
                tracing::debug!(
                    target: LOG_TARGET,
                    sink = %sink.name, event = %n.kind, request = %n.request, attempt,
                    "notification delivered"
                );
                return;
            }
            Verdict::Retry { after } if attempt < task.policy.attempts => {
                let wait = retry::delay(&task.policy, attempt, after, retry::random_jitter());
                tracing::debug!(
                    target: LOG_TARGET,
                    sink = %sink.name, event = %n.kind, request = %n.request, attempt,
                    error = %detail, retry_in = ?wait,
                    "notification not delivered; will retry"
                );
                tokio::time::sleep(wait).await;
            }
            Verdict::Retry { .. } | Verdict::GiveUp => {
                task.counters.failed.fetch_add(1, Relaxed);
                let why = format!(
                    "notification to sink {:?} failed after {attempt} attempt(s): {detail}",
                    sink.name
                );
                tracing::warn!(
                    target: LOG_TARGET,
                    sink = %sink.name, event = %n.kind, request = %n.request, attempt,
                    error = %detail, "notification not delivered"
                );
                report(task.on_failure.as_ref(), n, &why);
                return;
            }
        }
    }
}
