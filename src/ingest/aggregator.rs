//! From parsed audit events to `status.activity`, in bounded memory.
//!
//! - [`Aggregator::ingest`] runs in the HTTP handler: it matches each event against an index of
//!   requester → grant windows built from the request cache (rebuilt at most every
//!   [`INDEX_TTL`]; only Active grants and those ended less than [`LATE_GRACE`] ago), drops
//!   events of nobody at the cost of one hash lookup, and queues the attributed ones on a bounded
//!   channel (full: dropped and counted, the handler never waits).
//! - [`Aggregator::run`] drains the queue: one audit line per attributed event, and the event
//!   added to that request's pending summary (a delta, bounded by [`Limits`]). Every flush
//!   interval each pending delta is added to the stored `status.activity` in one status patch
//!   conditional on the cached resourceVersion; on any failure it is kept for the next interval.
//! - At a grant's end the reconciler [`Aggregator::take`]s the delta into its own final status
//!   write (and [`Aggregator::restore`]s it if that write fails).
//!
//! Memory: the index and the deltas are O(grants in their window), the queue is capped; nothing
//! grows with the event rate.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use crate::api::{ActivationRequest, Activity, Phase};
use crate::controller::calls;
use crate::metrics::Metrics;
use crate::policy::activity::{self, AuditEvent, GrantWindow, Limits, Use};
use crate::time::{Clock, from_k8s};

/// The index of grant windows is rebuilt from the cache at most this often.
pub const INDEX_TTL: Duration = Duration::from_millis(500);
/// Events of a grant that has ended are still accepted this long after its end: the API server
/// batches them, and an event received before the end may arrive after it.
pub const LATE_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// One event attributed to one grant, on its way to the aggregator.
#[derive(Debug, Clone)]
pub struct Attributed {
    pub request: String,
    pub requester: String,
    pub role: String,
    pub used: Use,
}

/// How a batch's events were counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub attributed: u64,
    pub unattributed: u64,
    pub skipped: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct Window {
    grant: GrantWindow,
    role: String,
}

struct Index {
    built: Option<Instant>,
    by_user: HashMap<String, Vec<Window>>,
}

/// The aggregator (shared by the listener, its own task and the request reconciler).
pub struct Aggregator {
    requests: Store<ActivationRequest>,
    metrics: Arc<Metrics>,
    limits: Limits,
    clock: Clock,
    flush_interval: Duration,
    index: RwLock<Index>,
    pending: Mutex<HashMap<String, Activity>>,
    tx: mpsc::Sender<Attributed>,
    rx: Mutex<Option<mpsc::Receiver<Attributed>>>,
}

impl Aggregator {
    pub fn new(
        requests: Store<ActivationRequest>,
        metrics: Arc<Metrics>,
        flush_interval: Duration,
        queue: usize,
        clock: Clock,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        Arc::new(Self {
            requests,
            metrics,
            limits: Limits::default(),
            clock,
            flush_interval,
            index: RwLock::new(Index {
                built: None,
                by_user: HashMap::new(),
            }),
            pending: Mutex::new(HashMap::new()),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// Matches a batch's events against the grants and queues the attributed ones. Never waits.
    pub fn ingest(&self, events: &[AuditEvent]) -> Counts {
        self.refresh_index();
        let mut counts = Counts::default();
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        for event in events {
            let Some(used) = activity::use_of(event) else {
                counts.skipped += 1;
                continue;
            };
            let mut matched = false;
            for user in activity::identities(event) {
                let Some(windows) = index.by_user.get(user) else {
                    continue;
                };
                for w in windows.iter().filter(|w| w.grant.covers(used.at)) {
                    matched = true;
                    let item = Attributed {
                        request: w.grant.request.clone(),
                        requester: user.to_string(),
                        role: w.role.clone(),
                        used: used.clone(),
                    };
                    match self.tx.try_send(item) {
                        Ok(()) => counts.attributed += 1,
                        Err(_) => counts.dropped += 1,
                    }
                }
            }
            if !matched {
                counts.unattributed += 1;
            }
        }
        drop(index);
        self.metrics
            .observe_audit_events("attributed", counts.attributed);
        self.metrics
            .observe_audit_events("unattributed", counts.unattributed);
        self.metrics.observe_audit_events("skipped", counts.skipped);
        self.metrics.observe_audit_events("dropped", counts.dropped);
        counts
    }

    fn refresh_index(&self) {
        let fresh = |index: &Index| index.built.is_some_and(|b| b.elapsed() < INDEX_TTL);
        if fresh(&self.index.read().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        if fresh(&index) {
            return;
        }
        index.by_user = windows_by_user(&self.requests.state(), self.clock.now());
        index.built = Some(Instant::now());
    }

    /// Adds one attributed event to its request's pending summary and writes its audit line.
    pub fn record(&self, item: &Attributed) {
        crate::audit::activity(&crate::audit::ActivityRecord {
            request: &item.request,
            requester: &item.requester,
            role: &item.role,
            used: &item.used,
        });
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let delta = pending
            .entry(item.request.clone())
            .or_insert_with(activity::empty);
        activity::record(delta, &item.used, self.limits);
    }

    /// Records everything queued, when [`Aggregator::run`] is not draining the queue (tests and
    /// benchmarks). Returns how many were recorded.
    pub fn drain(&self) -> usize {
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rx) = rx.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while let Ok(item) = rx.try_recv() {
            self.record(&item);
            n += 1;
        }
        n
    }

    /// What is counted for `request` and not yet written (for the reconciler's final write).
    pub fn take(&self, request: &str) -> Option<Activity> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(request)
    }

    /// Puts back a delta whose write failed, adding what arrived meanwhile.
    pub fn restore(&self, request: &str, delta: Activity) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.remove(request) {
            Some(newer) => {
                let mut merged = delta;
                activity::merge(&mut merged, &newer, self.limits);
                pending.insert(request.to_string(), merged);
            }
            None => {
                pending.insert(request.to_string(), delta);
            }
        }
    }

    /// Requests counted so far for `request` and not yet written (benchmarks and tests).
    pub fn pending_requests(&self, request: &str) -> i64 {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(request)
            .map_or(0, |a| a.requests)
    }

    /// The summary limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Drains the queue and writes the summaries until `shutdown` resolves (then writes what is
    /// pending once more).
    pub async fn run(
        self: Arc<Self>,
        client: Client,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            tracing::error!("audit aggregator started twice");
            return;
        };
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => self.record(&item),
                    None => break,
                },
                _ = tick.tick() => self.flush(&client).await,
                _ = &mut shutdown => break,
            }
        }
        while let Ok(item) = rx.try_recv() {
            self.record(&item);
        }
        self.flush(&client).await;
    }

    /// Writes every pending delta on top of the stored summary (one patch per request).
    pub async fn flush(&self, client: &Client) {
        let names: Vec<String> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            let Some(delta) = self.take(&name) else {
                continue;
            };
            let Some(request) = self.requests.get(&ObjectRef::new(&name)) else {
                // Deleted: nothing to write the summary to (its audit lines were written).
                continue;
            };
            let mut stored = request
                .status
                .as_ref()
                .and_then(|s| s.activity.clone())
                .unwrap_or_else(activity::empty);
            activity::merge(&mut stored, &delta, self.limits);
            let body = serde_json::json!({ "activity": stored });
            let written: Result<ActivationRequest, _> = calls::patch_status_at(
                client,
                &name,
                request.resource_version(),
                body,
                "write activity",
            )
            .await;
            if let Err(error) = written {
                tracing::debug!(%error, request = %name, "activity not written; kept for the next flush");
                self.restore(&name, delta);
            }
        }
    }
}

/// Requester → the windows of their grants that can still receive events at `now`.
fn windows_by_user(
    requests: &[Arc<ActivationRequest>],
    now: DateTime<Utc>,
) -> HashMap<String, Vec<Window>> {
    let mut by_user: HashMap<String, Vec<Window>> = HashMap::new();
    for request in requests {
        if let Some(window) = window_of(request, now) {
            by_user
                .entry(request.requester_name().to_string())
                .or_default()
                .push(window);
        }
    }
    by_user
}

fn window_of(request: &ActivationRequest, now: DateTime<Utc>) -> Option<Window> {
    let status = request.status.as_ref()?;
    if request.requester_name().is_empty() {
        return None;
    }
    let activated_at = from_k8s(status.activated_at.as_ref()?);
    let ended_at = status.ended_at.as_ref().map(from_k8s);
    let live = match status.phase? {
        Phase::Active => true,
        p if p.is_terminal() => ended_at.is_some_and(|e| now < e + LATE_GRACE),
        _ => false,
    };
    live.then(|| Window {
        grant: GrantWindow {
            request: request.name_any(),
            activated_at,
            ended_at: ended_at.filter(|_| status.phase != Some(Phase::Active)),
        },
        role: request.spec.role.clone(),
    })
}

// Tested against a scripted API server in `crate::controller::tests::activity`.
