//! What an in-process operator is started with.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::controller::retention::RetentionSettings;
use crate::controller::separation::SeparationSettings;
use crate::controller::standing_scan::ScanSettings;

use super::leader::LeaderSettings;

/// Settings of an in-process operator (what `kubepim run` builds from its flags; tests build it
/// directly).
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    pub sweep_interval: Duration,
    /// How long ended requests are kept (history retention).
    pub retention: RetentionSettings,
    /// The separation-of-duties analysis of the kept history.
    pub separation: SeparationSettings,
    pub concurrency: u16,
    /// The admission webhook, served alongside the controllers (`None`: not served).
    pub webhook: Option<crate::admission::WebhookSettings>,
    /// The standing-privilege scan.
    pub standing: ScanSettings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`None`: not served).
    pub health: Option<SocketAddr>,
    /// Leader election (`None`: this process always runs the controllers).
    pub leader_election: Option<LeaderSettings>,
    /// Notification sinks and routes (`None`: nobody is notified).
    pub notifications: Option<crate::notify::NotifyConfig>,
    /// kubepim's own namespace (`POD_NAMESPACE`, else the pod's ServiceAccount namespace; `None`
    /// outside a cluster): its ServiceAccount tokens count as a risk in roles that reach them.
    pub operator_namespace: Option<String>,
    /// The audit webhook endpoint (`None`: not served; the activity record is unavailable).
    pub ingest: Option<crate::ingest::IngestSettings>,
    /// Everything counted; its [`crate::metrics::Metrics::api_calls`] layer belongs on the client.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(30),
            retention: RetentionSettings::default(),
            separation: SeparationSettings::default(),
            concurrency: 16,
            webhook: None,
            standing: ScanSettings::default(),
            health: None,
            leader_election: None,
            notifications: None,
            operator_namespace: None,
            ingest: None,
            metrics: Arc::default(),
        }
    }
}
