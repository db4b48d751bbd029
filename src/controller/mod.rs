//! The operator: reconcilers for the three kinds, the binding sweeper and their wiring.

pub mod bindings;
pub mod calls;
pub mod context;
pub mod eligibility;
pub mod feeds;
#[cfg(test)]
mod fixtures;
pub mod leader;
pub mod request;
pub mod role;
pub mod role_checks;
pub mod standing;
pub mod sweeper;
#[cfg(test)]
mod tests;
mod wiring;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
pub use wiring::{run_blocking, run_operator};

/// Arguments of `kubepim run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Path to a kubeconfig; default: in-cluster config, then $KUBECONFIG / ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// How often the sweeper looks for managed bindings whose request is gone, terminal or expired.
    #[arg(long, default_value = "30s", value_parser = humantime_duration)]
    pub sweep_interval: Duration,
    /// Requests reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// How often all RoleBindings and ClusterRoleBindings are scanned for standing privilege
    /// (bindings to a PrivilegedRole's role made outside kubepim).
    #[arg(long, default_value = "30s", value_parser = humantime_duration)]
    pub standing_privilege_scan_interval: Duration,
    /// A break-glass user: bindings whose subjects are all break-glass identities are reported
    /// apart from other standing bindings. Repeatable.
    #[arg(long = "break-glass-user", value_name = "USER")]
    pub break_glass_users: Vec<String>,
    /// A break-glass group (see --break-glass-user). Repeatable.
    #[arg(long = "break-glass-group", value_name = "GROUP")]
    pub break_glass_groups: Vec<String>,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,
    #[command(flatten)]
    pub webhook: crate::admission::WebhookArgs,
    /// Port of the plain-HTTP listener for /metrics, /healthz and /readyz; 0 disables it.
    #[arg(long, default_value_t = 8080)]
    pub metrics_port: u16,
    /// Address the metrics and health listener binds.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub metrics_bind_address: IpAddr,
    #[command(flatten)]
    pub leader: leader::LeaderArgs,
    /// Notification sinks, audiences and routes (YAML; see the chart README). Read once at
    /// start-up; an invalid file stops the operator with the reason.
    #[arg(long, value_name = "PATH")]
    pub notifications_config: Option<std::path::PathBuf>,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<kube::core::Duration>()
        .map(Into::into)
        .map_err(|e| e.to_string())
}

/// Settings of an in-process operator (what `kubepim run` builds from its flags; tests build it
/// directly).
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    pub sweep_interval: Duration,
    pub concurrency: u16,
    /// The admission webhook, served alongside the controllers (`None`: not served).
    pub webhook: Option<crate::admission::WebhookSettings>,
    /// The standing-privilege scan.
    pub standing: standing::ScanSettings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`None`: not served).
    pub health: Option<SocketAddr>,
    /// Leader election (`None`: this process always runs the controllers).
    pub leader_election: Option<leader::LeaderSettings>,
    /// Notification sinks and routes (`None`: nobody is notified).
    pub notifications: Option<crate::notify::NotifyConfig>,
    /// Everything counted; its [`crate::metrics::Metrics::api_calls`] layer belongs on the client.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(30),
            concurrency: 16,
            webhook: None,
            standing: standing::ScanSettings::default(),
            health: None,
            leader_election: None,
            notifications: None,
            metrics: Arc::default(),
        }
    }
}

/// Errors of the controller layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: no answer within the per-call limit")]
    Timeout { what: &'static str },
    #[error("serialising a patch: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error(
        "the CustomResourceDefinitions are not installed ({0}); apply crds/ first: kubectl apply -f crds/"
    )]
    CrdsMissing(String),
    #[error("could not load a Kubernetes client configuration: {0}")]
    Config(String),
    #[error("internal invariant broken: {0}")]
    Invariant(&'static str),
    #[error(
        "{kind} {namespace:?}/{name} already exists and was not made by kubepim for this request; delete or rename it"
    )]
    NameTaken {
        kind: &'static str,
        namespace: Option<String>,
        name: String,
    },
    #[error(transparent)]
    Webhook(#[from] crate::admission::Error),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error(transparent)]
    Health(#[from] crate::health::BindError),
    #[error("leader election: {0}")]
    LeaderElection(String),
}

impl Error {
    /// A short, bounded label for metrics and Event reasons.
    /// Why a reconcile that failed this way will keep failing until someone acts (a binding name
    /// taken, a refusal by the API server): the request must show it. `None` for what a retry
    /// cures (timeouts, 5xx, 429, conflicts).
    pub fn persistent_reason(&self) -> Option<&'static str> {
        match self {
            Error::NameTaken { .. } => Some("BindingNameTaken"),
            Error::Invariant(_) => Some("Invariant"),
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => match status.code {
                403 => Some("Forbidden"),
                422 => Some("Invalid"),
                400 => Some("BadRequest"),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "ApiError",
            Error::Timeout { .. } => "Timeout",
            Error::Serialize(_) => "Serialize",
            Error::CrdsMissing(_) => "CrdsMissing",
            Error::Config(_) => "Config",
            Error::Invariant(_) => "Invariant",
            Error::NameTaken { .. } => "BindingNameTaken",
            Error::Webhook(_) => "Webhook",
            Error::Notify(_) => "Notify",
            Error::Health(_) => "Health",
            Error::LeaderElection(_) => "LeaderElection",
        }
    }
}
