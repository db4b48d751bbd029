//! Prometheus metrics, served as OpenMetrics text on `/metrics` (see [`crate::health`]).
//!
//! Every label is bounded: `kind` is one of the three kinds, `category` one of
//! [`crate::controller::Error::category`]'s values, `role` one per PrivilegedRole, `sink` one per
//! configured notification sink, and the API-call labels are bounded by [`api_requests`].
//! Request names, users and namespaces never become labels.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `kubepim_reconcile_total{kind}` | counter | reconciles run |
//! | `kubepim_reconcile_errors_total{kind,category}` | counter | reconciles that failed |
//! | `kubepim_reconcile_duration_seconds{kind}` | histogram | time per reconcile |
//! | `kubepim_approval_to_binding_seconds` | histogram | approving write → binding created |
//! | `kubepim_revocation_lateness_seconds` | histogram | binding deleted − `expiresAt` (negative: early) |
//! | `kubepim_active_grants` | gauge | requests in phase Active (request cache) |
//! | `kubepim_pending_requests` | gauge | requests waiting for approval (request cache) |
//! | `kubepim_unmanaged_privileged_bindings{role}` | gauge | standing bindings per PrivilegedRole (its `status.unmanagedBindings.count`) |
//! | `kubepim_is_leader` | gauge | 1 when this replica reconciles (always 1 without leader election) |
//! | `kubepim_api_requests_total{verb,resource,code}` | counter | calls to the API server |
//! | `kubepim_notifications_delivered_total{sink}` | counter | notifications a sink accepted |
//! | `kubepim_notifications_failed_total{sink,reason}` | counter | notifications lost: `reason="delivery"` after the last attempt, `"dropped"` for a full queue or shutdown |
//!
//! The gauges are computed on each scrape from the caches every replica keeps (no API call),
//! and are absent until those caches have synced. Timestamps Kubernetes persists have whole-second
//! precision, so `kubepim_approval_to_binding_seconds` (approval `time` and binding
//! `creationTimestamp`, both from the API server's side) has a resolution of one second.
pub mod api_requests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use self::api_requests::ApiCallCounter;
use crate::api::{ActivationRequest, Decision, Phase, PrivilegedRole};
use crate::notify::Notifier;
use crate::time::from_k8s;

/// `Content-Type` of the `/metrics` answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Values of the `kind` label.
pub mod kind {
    pub const REQUEST: &str = "ActivationRequest";
    pub const ROLE: &str = "PrivilegedRole";
    pub const ELIGIBILITY: &str = "Eligibility";
    pub const ALL: [&str; 3] = [REQUEST, ROLE, ELIGIBILITY];
}

const RECONCILE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const APPROVAL_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Negative buckets too: a revocation must never be early by more than a second.
const LATENESS_BUCKETS: [f64; 17] = [
    -5.0, -1.0, -0.5, -0.1, 0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// A managed-labelled binding the sweeper or the binding guard deleted: why (a bounded set, see
/// [`crate::policy::legitimacy::Illegitimate::reason`]), and whether it was the leftover of an
/// expired grant or a binding kubepim never granted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemovedLabels {
    reason: &'static str,
    class: &'static str,
}

/// The operator's metrics; one per process, shared (`Arc`) by everything that records.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    reconcile_duration: HistogramFamily,
    approval_to_binding: Histogram,
    revocation_lateness: Histogram,
    bindings_removed: Family<RemovedLabels, Counter>,
    is_leader: Gauge,
    sources: Arc<Sources>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("is_leader", &self.is_leader.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

struct Caches {
    requests: Store<ActivationRequest>,
    roles: Store<PrivilegedRole>,
    synced: watch::Receiver<bool>,
}

/// What the scrape-time collector reads: caches and counters owned elsewhere.
#[derive(Default)]
struct Sources {
    /// The caches, and whether they have synced.
    caches: RwLock<Option<Caches>>,
    notifier: RwLock<Option<Notifier>>,
    webhook: RwLock<Option<crate::admission::WebhookTelemetry>>,
    api_calls: ApiCallCounter,
    /// Failed reconciles by kind and error category (described even while there are none).
    reconcile_errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<KindLabels, Counter>::default();
        let reconcile_duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(RECONCILE_BUCKETS));
        let approval_to_binding = Histogram::new(APPROVAL_BUCKETS);
        let revocation_lateness = Histogram::new(LATENESS_BUCKETS);
        let is_leader = Gauge::default();
        let bindings_removed = Family::<RemovedLabels, Counter>::default();
        // Every kind from the start, so rates are defined before the first reconcile.
        for kind in kind::ALL {
            let _ = reconciles.get_or_create(&KindLabels { kind });
            let _ = reconcile_duration.get_or_create(&KindLabels { kind });
        }
        registry.register(
            "kubepim_reconcile",
            "Reconciles run, by kind",
            reconciles.clone(),
        );
        registry.register_with_unit(
            "kubepim_reconcile_duration",
            "Time per reconcile, by kind",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register_with_unit(
            "kubepim_approval_to_binding",
            "From the approving write (approval time, API server clock) to the binding's creation \
             (creationTimestamp); whole-second resolution",
            Unit::Seconds,
            approval_to_binding.clone(),
        );
        registry.register_with_unit(
            "kubepim_revocation_lateness",
            "Deletion of an expired grant's binding minus its expiresAt (negative: early)",
            Unit::Seconds,
            revocation_lateness.clone(),
        );
        registry.register(
            "kubepim_managed_bindings_removed",
            "Bindings carrying kubepim's managed label that the sweeper or the binding guard \
             deleted, by reason and class (leftover of an expired grant, or illegitimate: never \
             granted by kubepim)",
            bindings_removed.clone(),
        );
        registry.register(
            "kubepim_is_leader",
            "1 when this replica runs the controllers (always 1 without leader election)",
            is_leader.clone(),
        );
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(ScrapeTime(sources.clone())));
        Self {
            registry,
            reconciles,
            reconcile_duration,
            approval_to_binding,
            revocation_lateness,
            bindings_removed,
            is_leader,
            sources,
        }
    }

    /// The counting layer to put on the operator's kube client (`ClientBuilder::with_layer`);
    /// what it counts is exported as `kubepim_api_requests_total`.
    pub fn api_calls(&self) -> &ApiCallCounter {
        &self.sources.api_calls
    }

    /// One reconcile of `kind` (one of [`kind::ALL`]) that took `elapsed` and failed with
    /// `error_category` if it failed.
    pub fn observe_reconcile(
        &self,
        kind: &'static str,
        elapsed: Duration,
        error_category: Option<&'static str>,
    ) {
        let labels = KindLabels { kind };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(category) = error_category {
            *self
                .sources
                .reconcile_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((kind, category))
                .or_insert(0) += 1;
        }
    }

    /// Approving write → binding creation, in seconds.
    pub fn observe_approval_to_binding(&self, seconds: f64) {
        self.approval_to_binding.observe(seconds);
    }

    /// Binding deletion − `expiresAt`, in seconds (negative when early).
    pub fn observe_revocation_lateness(&self, seconds: f64) {
        self.revocation_lateness.observe(seconds);
    }

    /// A managed-labelled binding deleted by the sweeper or the binding guard.
    pub fn observe_binding_removed(&self, reason: &'static str, leftover: bool) {
        let class = if leftover { "leftover" } else { "illegitimate" };
        self.bindings_removed
            .get_or_create(&RemovedLabels { reason, class })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.is_leader.set(i64::from(leading));
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.get() == 1
    }

    /// The caches the gauges are computed from, and a flag that turns true once they have
    /// synced (replaces earlier ones). The stores' own readiness future is not polled here: it
    /// wakes only its last poller, and a scrape must not steal that from the operator.
    pub fn attach_caches(
        &self,
        requests: Store<ActivationRequest>,
        roles: Store<PrivilegedRole>,
        synced: watch::Receiver<bool>,
    ) {
        *self
            .sources
            .caches
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Caches {
            requests,
            roles,
            synced,
        });
    }

    /// The notifier whose counts are exported (replaces an earlier one).
    /// The webhook this replica serves: its reviews, readiness and certificate expiry.
    pub fn attach_webhook(&self, webhook: crate::admission::WebhookTelemetry) {
        *self
            .sources
            .webhook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(webhook);
    }

    pub fn attach_notifier(&self, notifier: Notifier) {
        *self
            .sources
            .notifier
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(notifier);
    }

    /// The OpenMetrics text exposition, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "could not encode the metrics");
        }
        out
    }
}

/// The caches' contents once they have synced; `None` before (an empty cache proves nothing).
fn synced(caches: &RwLock<Option<Caches>>) -> Option<CacheState> {
    let guard = caches.read().unwrap_or_else(|e| e.into_inner());
    let caches = guard.as_ref()?;
    if !*caches.synced.borrow() {
        return None;
    }
    Some((caches.requests.state(), caches.roles.state()))
}

type CacheState = (Vec<Arc<ActivationRequest>>, Vec<Arc<PrivilegedRole>>);

/// `(active, pending)`: requests in phase Active, and waiting for approval.
pub fn grant_counts<'a>(requests: impl IntoIterator<Item = &'a ActivationRequest>) -> (u64, u64) {
    let (mut active, mut pending) = (0, 0);
    for request in requests {
        match request.phase() {
            Some(Phase::Active) => active += 1,
            Some(Phase::Pending) => pending += 1,
            _ => {}
        }
    }
    (active, pending)
}

/// Per PrivilegedRole, the standing bindings its status reports (`status.unmanagedBindings.count`,
/// written by the standing-privilege scan); 0 for a role the scan has not reported on.
pub fn unmanaged_by_role<'a>(
    roles: impl IntoIterator<Item = &'a PrivilegedRole>,
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = roles
        .into_iter()
        .map(|role| {
            let count = role
                .status
                .as_ref()
                .and_then(|s| s.unmanaged_bindings.as_ref())
                .map_or(0, |u| u64::from(u.count));
            (role.metadata.name.clone().unwrap_or_default(), count)
        })
        .collect();
    out.sort();
    out
}

/// When the approving write happened, by the API server's clock: the newest approval's `time`
/// (stamped at admission), else the newest write to the request's status by anyone but
/// `controller_manager` (from managedFields, where the object still carries them: the operator's
/// caches drop them, so without the webhook's stamp nothing is observed). `None` when nobody
/// approved.
pub fn approving_write_at(
    request: &ActivationRequest,
    controller_manager: &str,
) -> Option<DateTime<Utc>> {
    let approvals: Vec<_> = request
        .status
        .iter()
        .flat_map(|s| s.approvals.iter())
        .filter(|a| a.decision == Decision::Approved)
        .collect();
    if approvals.is_empty() {
        return None;
    }
    if let Some(at) = approvals
        .iter()
        .filter_map(|a| a.time.as_ref().map(from_k8s))
        .max()
    {
        return Some(at);
    }
    request
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.subresource.as_deref() == Some("status"))
        .filter(|f| f.manager.as_deref() != Some(controller_manager))
        .filter_map(|f| f.time.as_ref().map(from_k8s))
        .max()
}

/// Computes the cache gauges and reads the counters owned elsewhere, on each scrape.
struct ScrapeTime(Arc<Sources>);

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeTime")
    }
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = &self.0;
        let errors: Vec<_> = sources
            .reconcile_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        let mut metric = encoder.encode_descriptor(
            "kubepim_reconcile_errors",
            "Reconciles that failed, by kind and error category",
            None,
            MetricType::Counter,
        )?;
        for ((kind, category), count) in errors {
            let labels = [("kind", kind), ("category", category)];
            ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
        }
        if let Some((requests, roles)) = synced(&sources.caches) {
            let (active, pending) = grant_counts(requests.iter().map(AsRef::as_ref));
            gauge(
                &mut encoder,
                "kubepim_active_grants",
                "Requests in phase Active (from the request cache)",
                active,
            )?;
            gauge(
                &mut encoder,
                "kubepim_pending_requests",
                "Requests waiting for approval (from the request cache)",
                pending,
            )?;
            let mut metric = encoder.encode_descriptor(
                "kubepim_unmanaged_privileged_bindings",
                "Bindings that grant a PrivilegedRole's role outside kubepim, break-glass ones not \
                 included (status.unmanagedBindings.count)",
                None,
                MetricType::Gauge,
            )?;
            for (role, count) in unmanaged_by_role(roles.iter().map(AsRef::as_ref)) {
                let labels = [("role", role)];
                ConstGauge::new(count as i64).encode(metric.encode_family(&labels)?)?;
            }
        }

        let mut api = encoder.encode_descriptor(
            "kubepim_api_requests",
            "Calls to the Kubernetes API server, by verb, resource and status code",
            None,
            MetricType::Counter,
        )?;
        for (key, count) in sources.api_calls.calls() {
            let labels = [
                ("verb", key.verb.as_str().to_string()),
                ("resource", key.resource),
                ("code", key.code.label()),
            ];
            ConstCounter::new(count).encode(api.encode_family(&labels)?)?;
        }

        let webhook = sources
            .webhook
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(webhook) = webhook {
            let mut reviews = encoder.encode_descriptor(
                "kubepim_webhook_reviews",
                "Admission reviews the webhook answered, by endpoint (mutate, validate) and result \
                 (allowed, refused, error)",
                None,
                MetricType::Counter,
            )?;
            for (endpoint, result, count) in webhook.reviews() {
                let labels = [("endpoint", endpoint), ("result", result)];
                ConstCounter::new(count).encode(reviews.encode_family(&labels)?)?;
            }
            gauge(
                &mut encoder,
                "kubepim_webhook_serving",
                "1 when this replica's webhook has a serving certificate and answers reviews",
                u64::from(webhook.serving()),
            )?;
            if let Some(at) = webhook.certificate_expiry() {
                gauge(
                    &mut encoder,
                    "kubepim_webhook_certificate_expiry_timestamp_seconds",
                    "notAfter of the webhook's serving certificate, in seconds since the epoch",
                    u64::try_from(at.timestamp()).unwrap_or_default(),
                )?;
            }
        }

        let stats = sources
            .notifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Notifier::stats)
            .unwrap_or_default();
        let mut delivered = encoder.encode_descriptor(
            "kubepim_notifications_delivered",
            "Notifications a sink accepted (2xx)",
            None,
            MetricType::Counter,
        )?;
        for s in &stats {
            let labels = [("sink", s.name.clone())];
            ConstCounter::new(s.delivered).encode(delivered.encode_family(&labels)?)?;
        }
        let mut failed = encoder.encode_descriptor(
            "kubepim_notifications_failed",
            "Notifications that never reached their sink: after the last attempt (delivery) or \
             for want of queue room or time (dropped)",
            None,
            MetricType::Counter,
        )?;
        for s in &stats {
            for (reason, count) in [("delivery", s.failed), ("dropped", s.dropped)] {
                let labels = [("sink", s.name.clone()), ("reason", reason.to_string())];
                ConstCounter::new(count).encode(failed.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value as i64).encode(metric)
}

#[cfg(test)]
mod tests;
