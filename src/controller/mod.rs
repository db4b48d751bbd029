//! The operator: reconcilers for the three kinds, the binding sweeper and their wiring.
use std::process::ExitCode;

/// Arguments of `kubepim run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Path to a kubeconfig; default: in-cluster config, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

pub fn run_blocking(_args: RunArgs) -> ExitCode {
    ExitCode::FAILURE
}
