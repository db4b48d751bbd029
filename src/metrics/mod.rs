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
//! | `kubepim_separation_findings{kind}` | gauge | separation-of-duties findings of the latest analysis |
//! | `kubepim_unmanaged_privileged_bindings{role}` | gauge | standing bindings per PrivilegedRole (its `status.unmanagedBindings.count`) |
//! | `kubepim_is_leader` | gauge | 1 when this replica reconciles (always 1 without leader election) |
//! | `kubepim_api_requests_total{verb,resource,code}` | counter | calls to the API server |
//! | `kubepim_notifications_delivered_total{sink}` | counter | notifications a sink accepted |
//! | `kubepim_audit_batches_total{result}` | counter | audit webhook posts: `accepted`, `unauthorized`, `too_large`, `malformed`, `wrong_method` |
//! | `kubepim_audit_events_total{result}` | counter | audit events: `attributed`, `unattributed`, `skipped` (stage not counted), `dropped` (queue full) |
//! | `kubepim_notifications_failed_total{sink,reason}` | counter | notifications lost: `reason="delivery"` after the last attempt, `"dropped"` for a full queue or shutdown |
//!
//! The gauges are computed on each scrape from the caches every replica keeps (no API call),
//! and are absent until those caches have synced. Timestamps Kubernetes persists have whole-second
//! precision, so `kubepim_approval_to_binding_seconds` (approval `time` and binding
//! `creationTimestamp`, both from the API server's side) has a resolution of one second.
pub mod api_requests;
mod scrape;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use self::api_requests::ApiCallCounter;
use crate::api::{ActivationRequest, PrivilegedRole};
use crate::notify::Notifier;

use self::scrape::{Caches, ScrapeTime, Sources};
pub use self::scrape::{grant_counts, unmanaged_by_role};

/// `Content-Type` of the `/metrics` answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Values of the `kind` label.
pub mod kind {
    pub const REQUEST: &str = "ActivationRequest";
    pub const ROLE: &str = "PrivilegedRole";
    pub const ELIGIBILITY: &str = "Eligibility";
    pub const ACCESS_REVIEW: &str = "AccessReview";
    pub const ALL: [&str; 4] = [REQUEST, ROLE, ELIGIBILITY, ACCESS_REVIEW];
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

/// A foothold found at a grant's end, by kind of object (bounded: five kinds).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FootholdLabels {
    kind: &'static str,
}

/// Separation-of-duties findings of the latest analysis, by kind (bounded: five kinds).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeparationLabels {
    kind: &'static str,
}

/// An audit webhook post or event, by outcome (bounded: a handful of values).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The operator's metrics; one per process, shared (`Arc`) by everything that records.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    reconcile_duration: HistogramFamily,
    approval_to_binding: Histogram,
    revocation_lateness: Histogram,
    bindings_removed: Family<RemovedLabels, Counter>,
    footholds: Family<FootholdLabels, Counter>,
    history_deleted: Counter,
    separation_findings: Family<SeparationLabels, Gauge>,
    audit_batches: Family<ResultLabels, Counter>,
    audit_events: Family<ResultLabels, Counter>,
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
        let footholds = Family::<FootholdLabels, Counter>::default();
        let history_deleted = Counter::default();
        let separation_findings = Family::<SeparationLabels, Gauge>::default();
        for kind in crate::policy::separation::FindingKind::ALL {
            let _ = separation_findings.get_or_create(&SeparationLabels {
                kind: kind.as_str(),
            });
        }
        let audit_batches = Family::<ResultLabels, Counter>::default();
        let audit_events = Family::<ResultLabels, Counter>::default();
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
            "kubepim_footholds_found",
            "Objects made while a grant ran that keep giving access after it (RBAC bindings to \
             the requester, their groups or new ServiceAccounts; new ServiceAccounts and Roles), \
             found at the grant's end, by kind",
            footholds.clone(),
        );
        registry.register(
            "kubepim_history_deleted",
            "Ended requests deleted by history retention, each after its record was exported to \
             the audit stream",
            history_deleted.clone(),
        );
        registry.register(
            "kubepim_separation_findings",
            "Separation-of-duties findings of the latest analysis of the kept history, by kind",
            separation_findings.clone(),
        );
        registry.register(
            "kubepim_audit_batches",
            "Posts to the audit webhook endpoint, by result (accepted, unauthorized, too_large, \
             malformed, wrong_method)",
            audit_batches.clone(),
        );
        registry.register(
            "kubepim_audit_events",
            "Audit events received, by result (attributed to a grant, unattributed, skipped: a \
             stage that is not counted, dropped: the queue to the aggregator was full)",
            audit_events.clone(),
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
            footholds,
            history_deleted,
            separation_findings,
            audit_batches,
            audit_events,
            is_leader,
            sources,
        }
    }

    /// One post to the audit webhook endpoint and its outcome.
    pub fn observe_audit_batch(&self, result: &'static str) {
        self.audit_batches
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// `n` audit events with this outcome.
    pub fn observe_audit_events(&self, result: &'static str, n: u64) {
        if n > 0 {
            self.audit_events
                .get_or_create(&ResultLabels { result })
                .inc_by(n);
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

    pub fn observe_foothold(&self, kind: &'static str) {
        self.footholds.get_or_create(&FootholdLabels { kind }).inc();
    }

    pub fn observe_history_deleted(&self) {
        self.history_deleted.inc();
    }

    /// The latest analysis found `count` findings of `kind`.
    pub fn set_separation_findings(&self, kind: &'static str, count: usize) {
        self.separation_findings
            .get_or_create(&SeparationLabels { kind })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
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

    /// The webhook this replica serves: its reviews, readiness and certificate expiry.
    pub fn attach_webhook(&self, webhook: crate::admission::WebhookTelemetry) {
        *self
            .sources
            .webhook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(webhook);
    }

    /// The notifier whose counts are exported (replaces an earlier one).
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

#[cfg(test)]
mod tests;
