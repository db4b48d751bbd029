//! The handle the controller holds, and one delivery task per sink behind it.
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::client;
use super::config::NotifyConfig;
use super::error::NotifyError;
use super::event::{EventKind, Notification};
use super::retry::RetryPolicy;
use super::worker::{FailureCallback, LOG_TARGET, SinkCounters, SinkTask, report, run};

/// How often a sink's queue overflow is logged at most (the count is kept exactly).
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Turns a stream of drops into at most one log line per interval.
pub(super) struct DropLog {
    interval: Duration,
    /// When the last line was written, and the drops since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl DropLog {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts a drop; returns the number to report when a line is due.
    pub(super) fn record(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += 1;
        let due = state
            .0
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if due {
            state.0 = Some(now);
            Some(std::mem::take(&mut state.1))
        } else {
            None
        }
    }

    /// Drops not reported yet (written at shutdown).
    pub(super) fn take_unreported(&self) -> u64 {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).1)
    }
}

struct SinkHandle {
    name: String,
    tx: mpsc::Sender<Arc<Notification>>,
    counters: Arc<SinkCounters>,
    drops: DropLog,
}

struct Inner {
    routes: [Vec<usize>; EventKind::ALL.len()],
    sinks: Vec<SinkHandle>,
    on_failure: Option<FailureCallback>,
    stop: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// Counts of one sink, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    pub name: String,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Waiting or in flight right now.
    pub queued: u64,
}

/// Sends notifications to the configured sinks. Cheap to clone; every clone feeds the same
/// queues and counters.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

/// Options of a [`Notifier`] beyond its config.
pub struct NotifierBuilder {
    config: NotifyConfig,
    policy: RetryPolicy,
    on_failure: Option<FailureCallback>,
}

impl NotifierBuilder {
    /// Attempts, backoff and time-out (default: [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Told about every notification that did not reach its sink.
    pub fn on_failure(mut self, callback: FailureCallback) -> Self {
        self.on_failure = Some(callback);
        self
    }

    /// Builds the HTTP client and starts one delivery task per sink. Must run inside a Tokio
    /// runtime. Fails only when a sink uses `https` and no CA certificate can be loaded.
    pub fn start(self) -> Result<Notifier, NotifyError> {
        let NotifierBuilder {
            config,
            policy,
            on_failure,
        } = self;
        let (stop, _) = watch::channel(false);
        let mut routes: [Vec<usize>; EventKind::ALL.len()] = Default::default();
        for kind in EventKind::ALL {
            routes[kind.index()] = config.route_indexes(kind).to_vec();
        }
        let mut sinks = Vec::new();
        let mut workers = Vec::new();
        if !config.sinks.is_empty() {
            let need_tls = config.sinks.iter().any(|s| s.url.is_https());
            let client = client::build(need_tls, policy.timeout)?;
            for sink in &config.sinks {
                let (tx, rx) = mpsc::channel(config.queue_size.max(1));
                let counters = Arc::new(SinkCounters::default());
                let task = SinkTask {
                    config: sink.clone(),
                    cluster: config.cluster.clone(),
                    client: client.clone(),
                    policy,
                    counters: counters.clone(),
                    on_failure: on_failure.clone(),
                };
                workers.push(tokio::spawn(run(task, rx, stop.subscribe())));
                let routed: Vec<&str> = EventKind::ALL
                    .into_iter()
                    .filter(|k| {
                        config
                            .route_indexes(*k)
                            .iter()
                            .any(|&i| config.sinks[i].name == sink.name)
                    })
                    .map(EventKind::as_str)
                    .collect();
                tracing::info!(
                    target: LOG_TARGET,
                    sink = %sink.name, kind = ?sink.kind, url = %sink.url, events = %routed.join(","),
                    "notification sink ready"
                );
                if !sink.url.is_https() {
                    tracing::warn!(
                        target: LOG_TARGET,
                        sink = %sink.name, url = %sink.url,
                        "notification sink uses plain http: its URL and payloads travel unencrypted"
                    );
                }
                sinks.push(SinkHandle {
                    name: sink.name.clone(),
                    tx,
                    counters,
                    drops: DropLog::new(DROP_LOG_INTERVAL),
                });
            }
            for name in config.unused_sinks() {
                tracing::warn!(target: LOG_TARGET, sink = %name, "no event is routed to this notification sink");
            }
        }
        Ok(Notifier {
            inner: Arc::new(Inner {
                routes,
                sinks,
                on_failure,
                stop,
                workers: Mutex::new(workers),
            }),
        })
    }
}

impl Notifier {
    /// Configure a notifier (retry policy, failure callback), then [`NotifierBuilder::start`].
    pub fn builder(config: NotifyConfig) -> NotifierBuilder {
        NotifierBuilder {
            config,
            policy: RetryPolicy::default(),
            on_failure: None,
        }
    }

    /// Starts a notifier with the default retry policy. Must run inside a Tokio runtime.
    pub fn start(
        config: NotifyConfig,
        on_failure: Option<FailureCallback>,
    ) -> Result<Self, NotifyError> {
        let builder = Self::builder(config);
        match on_failure {
            Some(f) => builder.on_failure(f),
            None => builder,
        }
        .start()
    }

    /// A notifier without sinks (no `--notifications-config`): `notify` does nothing.
    pub fn disabled() -> Self {
        let (stop, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                routes: Default::default(),
                sinks: Vec::new(),
                on_failure: None,
                stop,
                workers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Queues `n` for every sink its event is routed to, and returns at once: it never waits
    /// for a sink, a lock held across I/O, or a full queue. A notification that finds a queue
    /// full is dropped, counted ([`Notifier::dropped`]), logged (at most once per interval per
    /// sink, with the count) and reported to the failure callback.
    pub fn notify(&self, n: Notification) {
        let routes = &self.inner.routes[n.kind.index()];
        if routes.is_empty() {
            return;
        }
        let n = Arc::new(n);
        for &i in routes {
            let sink = &self.inner.sinks[i];
            sink.counters.queued.fetch_add(1, Relaxed);
            let Err(e) = sink.tx.try_send(n.clone()) else {
                continue;
            };
            sink.counters.queued.fetch_sub(1, Relaxed);
            sink.counters.dropped.fetch_add(1, Relaxed);
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "its queue is full",
                mpsc::error::TrySendError::Closed(_) => "notifications are shut down",
            };
            if let Some(count) = sink.drops.record(Instant::now()) {
                tracing::warn!(
                    target: LOG_TARGET,
                    sink = %sink.name, dropped = count,
                    total_dropped = sink.counters.dropped.load(Relaxed),
                    event = %n.kind, request = %n.request,
                    "notifications dropped because {why} (reported at most every {}s)",
                    DROP_LOG_INTERVAL.as_secs()
                );
            }
            report(
                self.inner.on_failure.as_ref(),
                &n,
                &format!("notification to sink {:?} dropped: {why}", sink.name),
            );
        }
    }

    /// Notifications delivered (a 2xx answer), over all sinks.
    pub fn delivered(&self) -> u64 {
        self.sum(|c| &c.delivered)
    }

    /// Notifications given up on after their last attempt, over all sinks.
    pub fn failures(&self) -> u64 {
        self.sum(|c| &c.failed)
    }

    /// Notifications never delivered for want of room or time: queue full, sent after shutdown,
    /// or still queued when the shutdown grace ran out.
    pub fn dropped(&self) -> u64 {
        self.sum(|c| &c.dropped)
    }

    /// Per-sink counts (sink names are from the config, so a bounded label set).
    pub fn stats(&self) -> Vec<SinkStats> {
        self.inner
            .sinks
            .iter()
            .map(|s| SinkStats {
                name: s.name.clone(),
                delivered: s.counters.delivered.load(Relaxed),
                failed: s.counters.failed.load(Relaxed),
                dropped: s.counters.dropped.load(Relaxed),
                queued: s.counters.queued.load(Relaxed),
            })
            .collect()
    }

    fn sum(&self, field: impl Fn(&SinkCounters) -> &AtomicU64) -> u64 {
        self.inner
            .sinks
            .iter()
            .map(|s| field(&s.counters).load(Relaxed))
            .sum()
    }

    /// Stops taking notifications and lets the delivery tasks finish what is queued (retries
    /// included) for at most `grace`; what is left then is counted as dropped and logged.
    /// Safe to call more than once, from any clone.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stop.send_replace(true);
        let workers =
            std::mem::take(&mut *self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = tokio::time::Instant::now() + grace;
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
                // Wait for the cancellation so the counters below are final.
                let _ = worker.await;
            }
        }
        for sink in &self.inner.sinks {
            let lost = sink.counters.queued.swap(0, Relaxed);
            let unreported = sink.drops.take_unreported();
            if lost > 0 {
                sink.counters.dropped.fetch_add(lost, Relaxed);
                tracing::warn!(
                    target: LOG_TARGET,
                    sink = %sink.name, dropped = lost,
                    "notifications still queued when the shutdown grace of {grace:?} ran out were dropped"
                );
            }
            if unreported > 0 {
                tracing::warn!(
                    target: LOG_TARGET,
                    sink = %sink.name, dropped = unreported,
                    "notifications dropped because the queue was full (not yet reported)"
                );
            }
        }
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "sinks",
                &self.inner.sinks.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}
