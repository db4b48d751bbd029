//! `kubectl pim`: the kubectl plugin for kubepim. Installed as `kubectl-pim` on PATH, kubectl
//! runs it for `kubectl pim ...`. See `kubectl pim --help` and the README.
mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, Parser};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kubepim::ops::OpsError;

use cli::{Cli, Command, exit};

/// The cluster as kubectl would reach it: `--kubeconfig`, else `$KUBECONFIG` or `~/.kube/config`,
/// else the in-cluster service account; `--context` picks a context in either file.
async fn client(cli: &Cli) -> Result<Client> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("loading context {context} from the kubeconfig"))?,
        (None, None) => Config::infer()
            .await
            .context("no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not in a cluster")?,
    };
    Client::try_from(config).context("setting up the API client")
}

fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<OpsError>() {
        Some(OpsError::Refused(_)) => exit::REFUSED,
        Some(OpsError::TimedOut { .. }) => exit::TIMED_OUT,
        Some(OpsError::Invalid { .. }) => exit::USAGE,
        _ => exit::ERROR,
    }
}

async fn run(cli: Cli) -> Result<u8> {
    if let Command::Completion { shell } = cli.command {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "kubectl-pim", &mut std::io::stdout());
        return Ok(exit::OK);
    }
    let client = client(&cli).await?;
    commands::run(cli.command, client).await
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version exit 0, usage errors 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // OpsError's text, and kube's, already include their causes: printing the whole
            // chain would repeat them, so only our context and the first cause are shown.
            match e.downcast_ref::<OpsError>() {
                Some(ops) => eprintln!("error: {ops}"),
                None => {
                    let chain: Vec<String> = e.chain().take(2).map(|c| c.to_string()).collect();
                    eprintln!("error: {}", chain.join(": "));
                }
            }
            ExitCode::from(exit_code(&e))
        }
    }
}
