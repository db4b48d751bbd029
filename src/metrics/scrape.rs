//! What is computed on each scrape rather than recorded as it happens: the gauges from the
//! caches, and the counts owned elsewhere (API calls, webhook reviews, notifications), read from
//! where they are kept rather than mirrored here, so that the two cannot disagree.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::watch;

use super::api_requests::ApiCallCounter;
use crate::api::{ActivationRequest, Phase, PrivilegedRole};
use crate::notify::Notifier;

pub(super) struct Caches {
    pub(super) requests: Store<ActivationRequest>,
    pub(super) roles: Store<PrivilegedRole>,
    pub(super) synced: watch::Receiver<bool>,
}

/// What the scrape-time collector reads: caches and counters owned elsewhere.
#[derive(Default)]
pub(super) struct Sources {
    /// The caches, and whether they have synced.
    pub(super) caches: RwLock<Option<Caches>>,
    pub(super) notifier: RwLock<Option<Notifier>>,
    pub(super) webhook: RwLock<Option<crate::admission::WebhookTelemetry>>,
    pub(super) api_calls: ApiCallCounter,
    /// Failed reconciles by kind and error category (described even while there are none).
    pub(super) reconcile_errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
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

/// Computes the cache gauges and reads the counters owned elsewhere, on each scrape.
pub(super) struct ScrapeTime(pub(super) Arc<Sources>);

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
