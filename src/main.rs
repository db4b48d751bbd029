//! `kubepim`: the operator (`run`), its CRDs (`crds`), the offline policy check (`check`) and the
//! reports for auditors (`review report`, `separation report`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc, tuned at build time (.cargo/config.toml): glibc malloc kept about as much freed
/// memory as the live heap at 10,000 grants (issue 11).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Run the foothold remover: deletes the RBAC bindings and ServiceAccount token Secrets a
    /// grant's foothold review found, for roles with `onFootholds: Remove`. Runs as an identity of
    /// its own (the chart's `footholds.removal`), never as the operator.
    RemoveFootholds(kubepim::remover::RemoverArgs),
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
    /// Access reviews.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Separation of duties.
    #[command(subcommand)]
    Separation(SeparationCommand),
}

#[derive(Subcommand)]
enum SeparationCommand {
    /// The separation-of-duties findings of the kept history for auditors (the detectors the
    /// operator runs): reciprocal approvals, one approver covering a role, approvers who request
    /// it, break-glass use, approvals too fast to have been read.
    ///
    /// Reads the ActivationRequests and PrivilegedRoles from the cluster, or with --file from
    /// exports (`kubectl get activationrequests,privilegedroles -o yaml`). Exit code 0 (findings
    /// or not), or 2 if the input cannot be read.
    Report {
        /// Read from these YAML or JSON files instead of the cluster.
        #[arg(long)]
        file: Vec<PathBuf>,
        /// How far back to look.
        #[arg(long, default_value = "720h", value_parser = kubepim::time::parse_duration)]
        window: std::time::Duration,
        /// Approvals sooner than this after the request are reported.
        #[arg(long, default_value = "5s", value_parser = kubepim::time::parse_duration)]
        fast_approval: std::time::Duration,
        /// Judge at this instant (RFC 3339) instead of now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: kubepim::ops::separation::ReportFormat,
    },
}

type History = (
    Vec<kubepim::api::ActivationRequest>,
    Vec<kubepim::api::PrivilegedRole>,
);

/// The requests and roles to analyse, from files or the cluster.
fn load_history(files: &[PathBuf]) -> Result<History, String> {
    if !files.is_empty() {
        let mut all = (Vec::new(), Vec::new());
        for path in files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let (requests, roles) = kubepim::ops::separation::objects_of(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            all.0.extend(requests);
            all.1.extend(roles);
        }
        return Ok(all);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("connecting to the cluster: {e}"))?;
        let lp = kube::api::ListParams::default();
        let requests = kube::Api::<kubepim::api::ActivationRequest>::all(client.clone())
            .list(&lp)
            .await
            .map_err(|e| format!("listing activation requests: {e}"))?;
        let roles = kube::Api::<kubepim::api::PrivilegedRole>::all(client)
            .list(&lp)
            .await
            .map_err(|e| format!("listing privileged roles: {e}"))?;
        Ok((requests.items, roles.items))
    })
}

#[derive(Subcommand)]
enum ReviewCommand {
    /// The evidence of a review for auditors: every item with its evidence, recommendation,
    /// decisions (who, when, why) and outcome.
    ///
    /// Reads the AccessReview from the cluster (kubeconfig or in-cluster), or with --file from an
    /// export (`kubectl get accessreview NAME -o yaml`). Exit code 0, or 2 if it cannot be read.
    Report {
        /// The AccessReview (not needed with --file).
        #[arg(required_unless_present = "file")]
        name: Option<String>,
        /// Read the review from this YAML or JSON file instead of the cluster.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: kubepim::ops::reviews::ReportFormat,
    },
}

/// The review to report on, from a file or the cluster.
fn load_review(
    name: Option<&str>,
    file: Option<&PathBuf>,
) -> Result<kubepim::api::AccessReview, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        return serde_saphyr::from_str(&text)
            .map_err(|e| format!("{}: not an AccessReview: {e}", path.display()));
    }
    let name = name.ok_or("name a review or give --file")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("connecting to the cluster: {e}"))?;
        kube::Api::<kubepim::api::AccessReview>::all(client)
            .get(name)
            .await
            .map_err(|e| format!("reading access review {name}: {e}"))
    })
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
        Command::RemoveFootholds(args) => kubepim::remover::run_blocking(args),
        Command::Separation(SeparationCommand::Report {
            file,
            window,
            fast_approval,
            now,
            output,
        }) => match load_history(&file) {
            Ok((requests, roles)) => {
                let thresholds = kubepim::policy::separation::Thresholds {
                    window: chrono::Duration::from_std(window)
                        .unwrap_or(chrono::Duration::days(30)),
                    fast_approval: chrono::Duration::from_std(fast_approval)
                        .unwrap_or(chrono::Duration::seconds(5)),
                    ..Default::default()
                };
                let now = now.unwrap_or_else(chrono::Utc::now);
                let findings =
                    kubepim::ops::separation::findings(&requests, &roles, &thresholds, now);
                print!(
                    "{}",
                    kubepim::ops::separation::report(
                        &findings,
                        requests.len(),
                        &thresholds,
                        now,
                        output
                    )
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Review(ReviewCommand::Report { name, file, output }) => {
            match load_review(name.as_deref(), file.as_ref()) {
                Ok(review) => {
                    print!("{}", kubepim::ops::reviews::report(&review, output));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
