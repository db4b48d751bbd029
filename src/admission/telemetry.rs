//! What the webhook tells `/metrics`: reviews answered by endpoint and outcome, whether it is
//! serving, and when its serving certificate expires. A refusal that reads `failed calling
//! webhook` is an outage, not a policy: these are the figures that tell the two apart.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::tls::Resolver;

/// Reviews answered, by (endpoint, result).
#[derive(Debug, Default)]
pub struct ReviewCounts(Mutex<BTreeMap<(&'static str, &'static str), u64>>);

impl ReviewCounts {
    /// One review on `endpoint` (`mutate`, `validate`) ending in `result` (`allowed`, `refused`,
    /// `error`: a body that was not a review).
    pub fn count(&self, endpoint: &'static str, result: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((endpoint, result)).or_insert(0) += 1;
    }

    pub(super) fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((e, r), n)| (*e, *r, *n))
            .collect()
    }
}

/// A read-only view of one webhook, for the metrics exporter.
#[derive(Clone)]
pub struct WebhookTelemetry {
    pub(super) reviews: Arc<ReviewCounts>,
    pub(super) resolver: Arc<Resolver>,
    pub(super) ready: watch::Receiver<bool>,
}

impl std::fmt::Debug for WebhookTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTelemetry")
            .field("serving", &self.serving())
            .finish_non_exhaustive()
    }
}

impl WebhookTelemetry {
    /// `(endpoint, result, count)`, every pair seen so far.
    pub fn reviews(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.reviews.snapshot()
    }

    /// Has a serving certificate and answers reviews.
    pub fn serving(&self) -> bool {
        *self.ready.borrow()
    }

    /// `notAfter` of the certificate being served.
    pub fn certificate_expiry(&self) -> Option<DateTime<Utc>> {
        self.resolver.not_after()
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
