//! The operator: reconcilers for the three kinds, the binding sweeper and their wiring.
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

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
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<kube::core::Duration>().map(Into::into).map_err(|e| e.to_string())
}

/// Settings of an in-process operator (what `kubepim run` builds from its flags; tests build it
/// directly).
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    pub sweep_interval: Duration,
    pub concurrency: u16,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        Self { sweep_interval: Duration::from_secs(30), concurrency: 16 }
    }
}

/// Runs all controllers until `shutdown` resolves. Placeholder until the controller lands.
pub async fn run_operator(
    _client: kube::Client,
    _settings: OperatorSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), kube::Error> {
    shutdown.await;
    Ok(())
}

pub fn run_blocking(_args: RunArgs) -> ExitCode {
    ExitCode::FAILURE
}
