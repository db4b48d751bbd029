//! `kubepim`: the operator (`run`), its CRDs (`crds`) and the offline policy check (`check`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubepim",
    version,
    about = "Privileged Identity Management for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the current cluster (in-cluster config, or kubeconfig).
    Run(Box<kubepim::runtime::RunArgs>),
    /// Print all CustomResourceDefinitions as YAML.
    Crds,
    /// Validate PrivilegedRole, Eligibility and ActivationRequest YAML offline.
    ///
    /// Exit code 0: clean; 1: findings with severity error; 2: unreadable or unparsable input.
    Check {
        /// Files or directories (searched recursively for *.yaml / *.yml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Evaluate time windows and requests at this instant (RFC 3339) instead of now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Output: text (one line per finding), json (one document; see the README), github
        /// (workflow annotations on the files and lines).
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: kubepim::check::Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => match kubepim::crdgen::all_crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Check { paths, now, output } => {
            kubepim::check::run(&paths, now.unwrap_or_else(chrono::Utc::now), output)
        }
        Command::Run(args) => kubepim::runtime::run_blocking(*args),
    }
}
