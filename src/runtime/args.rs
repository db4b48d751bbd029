//! The flags of `kubepim run`, and the settings they resolve to (once, at start-up).
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::controller::retention::RetentionSettings;
use crate::controller::separation::SeparationSettings;
use crate::controller::standing_scan::ScanSettings;
use crate::metrics::Metrics;
use crate::notify::NotifyConfig;
use crate::policy::separation::Thresholds;
use crate::policy::standing::BreakGlass;

use super::Error;
use super::leader::LeaderArgs;
use super::namespace;
use super::settings::OperatorSettings;

/// Arguments of `kubepim run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Path to a kubeconfig; default: in-cluster config, then $KUBECONFIG / ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// How often the sweeper looks for managed bindings whose request is gone, terminal or expired.
    #[arg(long, default_value = "30s", value_parser = crate::time::parse_duration)]
    pub sweep_interval: Duration,
    /// How long ended requests are kept before they are deleted, each after its whole record
    /// went to the audit stream (`decision=history-exported`). `0s` keeps them forever. Budgets
    /// and reviews see back this far. Default 90 days.
    #[arg(long, default_value = "2160h", value_parser = crate::time::parse_duration)]
    pub history_retention: Duration,
    /// How often ended requests are looked at for deletion (see --history-retention).
    #[arg(long, default_value = "1h", value_parser = crate::time::parse_duration)]
    pub history_prune_interval: Duration,
    /// How often the kept history is analysed for separation-of-duties findings (reciprocal
    /// approvals, one approver covering a role, approvers who request it, break-glass use,
    /// approvals too fast to have been read). `0s` switches the analysis off.
    #[arg(long, default_value = "5m", value_parser = crate::time::parse_duration)]
    pub separation_interval: Duration,
    /// How far back the separation-of-duties analysis looks (within what history retention keeps).
    #[arg(long, default_value = "720h", value_parser = crate::time::parse_duration)]
    pub separation_window: Duration,
    /// An approval sooner than this after its request was made is reported as too fast to have
    /// been read.
    #[arg(long, default_value = "5s", value_parser = crate::time::parse_duration)]
    pub separation_fast_approval: Duration,
    /// One approver's share of a role's approved activations that is reported (0 to 1)…
    #[arg(long, default_value_t = 0.8)]
    pub separation_concentration: f64,
    /// …once the role has at least this many approved activations in the window.
    #[arg(long, default_value_t = 10)]
    pub separation_concentration_min: usize,
    /// Requests of a role by one of its approvers that are reported.
    #[arg(long, default_value_t = 3)]
    pub separation_approver_requests: usize,
    /// Break-glass activations per person in the window that are reported.
    #[arg(long, default_value_t = 3)]
    pub separation_break_glass_uses: usize,
    /// Requests reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// How often all RoleBindings and ClusterRoleBindings are scanned for standing privilege
    /// (bindings to a PrivilegedRole's role made outside kubepim).
    #[arg(long, default_value = "30s", value_parser = crate::time::parse_duration)]
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
    pub leader: LeaderArgs,
    #[command(flatten)]
    pub ingest: crate::ingest::IngestArgs,
    /// Notification sinks, audiences and routes (YAML; see the chart README). Read once at
    /// start-up; an invalid file stops the operator with the reason.
    #[arg(long, value_name = "PATH")]
    pub notifications_config: Option<std::path::PathBuf>,
}

impl RunArgs {
    /// Everything the flags say, checked and resolved before the operator talks to the cluster:
    /// a bad notification file or lease setting stops it here with the reason.
    pub fn settings(&self, metrics: Arc<Metrics>) -> Result<OperatorSettings, Error> {
        let notifications = match &self.notifications_config {
            Some(path) => Some(NotifyConfig::load(path)?),
            None => None,
        };
        let operator_namespace = namespace::resolve(self.webhook.namespace.as_deref());
        let leader_election = self
            .leader
            .settings(operator_namespace.as_deref())
            .map_err(Error::LeaderElection)?;
        Ok(OperatorSettings {
            sweep_interval: self.sweep_interval,
            retention: RetentionSettings {
                keep_for: (!self.history_retention.is_zero()).then_some(self.history_retention),
                interval: self.history_prune_interval,
            },
            separation: SeparationSettings {
                interval: (!self.separation_interval.is_zero()).then_some(self.separation_interval),
                thresholds: Thresholds {
                    window: chrono::Duration::from_std(self.separation_window)
                        .unwrap_or(chrono::Duration::days(30)),
                    fast_approval: chrono::Duration::from_std(self.separation_fast_approval)
                        .unwrap_or(chrono::Duration::seconds(5)),
                    concentration: self.separation_concentration.clamp(0.0, 1.0),
                    concentration_min: self.separation_concentration_min.max(1),
                    approver_requests: self.separation_approver_requests.max(1),
                    break_glass_uses: self.separation_break_glass_uses.max(1),
                },
            },
            concurrency: self.concurrency,
            webhook: self.webhook.settings(operator_namespace.as_deref())?,
            standing: ScanSettings {
                interval: self.standing_privilege_scan_interval,
                break_glass: BreakGlass {
                    users: self.break_glass_users.iter().cloned().collect(),
                    groups: self.break_glass_groups.iter().cloned().collect(),
                },
            },
            health: (self.metrics_port != 0)
                .then(|| SocketAddr::new(self.metrics_bind_address, self.metrics_port)),
            leader_election,
            notifications,
            operator_namespace,
            ingest: self.ingest.settings()?,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn settings(args: &[&str]) -> Result<OperatorSettings, Error> {
        let cli = Cli::try_parse_from(std::iter::once("kubepim").chain(args.iter().copied()))
            .expect("valid flags");
        cli.run.settings(Arc::default())
    }

    #[test]
    fn one_namespace_serves_the_webhook_the_lease_and_the_risk_assessment() {
        let s = settings(&[
            "--namespace",
            "pim",
            "--leader-election",
            "--webhook-port",
            "9443",
        ])
        .expect("settings");
        assert_eq!(s.operator_namespace.as_deref(), Some("pim"));
        assert_eq!(s.webhook.expect("webhook on").namespace, "pim");
        assert_eq!(
            s.leader_election.expect("leader election on").namespace,
            "pim"
        );
        let s = settings(&[
            "--namespace",
            "pim",
            "--leader-election",
            "--lease-namespace",
            "locks",
        ])
        .expect("settings");
        assert_eq!(s.leader_election.expect("on").namespace, "locks");
    }

    #[test]
    fn flags_resolve_to_settings() {
        let s = settings(&[
            "--namespace",
            "pim",
            "--sweep-interval",
            "5s",
            "--metrics-port",
            "0",
            "--webhook-port",
            "0",
            "--break-glass-user",
            "root",
        ])
        .expect("settings");
        assert_eq!(s.sweep_interval, Duration::from_secs(5));
        assert!(s.health.is_none() && s.webhook.is_none() && s.leader_election.is_none());
        assert!(s.standing.break_glass.users.contains("root"));
    }
}
