//! Command line of `kubectl pim`: commands, flags, help texts, and their parsing (pure).
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::core::Duration as KubeDuration;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    pub const OK: u8 = 0;
    /// Could not talk to the cluster, or an unexpected answer.
    pub const ERROR: u8 = 1;
    /// Bad command line (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// Refused or denied: by admission, RBAC, a pre-write check, or the request ended without
    /// becoming Active (`--wait`).
    pub const REFUSED: u8 = 3;
    /// `--wait` ran out of time.
    pub const TIMED_OUT: u8 = 4;
}

const AFTER_HELP: &str = "\
Examples:
  kubectl pim roles                                   # what I may activate
  kubectl pim request payments-admin -n payments --for 30m \\
      --reason 'INC-4521 pods crash-looping' --ticket INC-4521 --wait
  kubectl pim ls --to-approve                         # pending requests I could approve
  kubectl pim approve payments-admin-alice-x7k2q --reason 'ok, runbook step 3'
  kubectl pim deny payments-admin-alice-x7k2q --reason 'use the read-only role'
  kubectl pim show payments-admin-alice-x7k2q         # timeline and Events
  kubectl pim cancel payments-admin-alice-x7k2q       # end a request or grant early
  kubectl pim review list                             # open review items I may decide
  kubectl pim review decide q3 --item pay/User/alice --remove --comment 'left the team'
  source <(kubectl pim completion bash)

Identity: who you are is asked from the API server (SelfSubjectReview), never from a flag.

Exit codes:
  0  success (with --wait: the request is Active)
  1  error talking to the cluster
  2  usage error
  3  refused or denied (admission, RBAC, not an approver, already decided, or with --wait the
     request ended Denied, Expired, Cancelled, Revoked or Failed)
  4  timed out (--wait)";

/// Privileged Identity Management from kubectl: request, approve and follow kubepim's
/// just-in-time role activations.
#[derive(Parser, Debug)]
#[command(name = "kubectl-pim", bin_name = "kubectl pim", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands. A new one (e.g. `extend`) is a variant here and a function in `commands.rs`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Roles I may activate: scope, longest duration, approvals needed, my eligibility window.
    Roles(OutputArgs),
    /// Ask for a role: creates an ActivationRequest (and with --wait, waits until it is Active).
    #[command(
        after_help = "Examples:\n  kubectl pim request db-admin -n payments --for 1h --reason 'INC-1' --wait\n  \
        kubectl pim request cluster-viewer --reason 'audit' --at 2026-03-02T08:00:00Z\n  \
        kubectl pim request db-admin -n payments --reason 'deploy' --at +2h"
    )]
    Request(RequestArgs),
    /// Approve a pending request (appends your decision to status.approvals).
    Approve(ApproveArgs),
    /// Deny a request (an authorised denial ends it, and revokes it if already active).
    Deny(DenyArgs),
    /// Cancel your own request, or end your active grant early.
    Cancel(NameArg),
    /// Extend your active grant without a gap: a new request for the same role and namespaces
    /// that, once approved, runs on from the grant's expiry (and ends it).
    #[command(
        after_help = "Examples:\n  kubectl pim extend db-admin-alice-x7k2p --for 30m --reason 'INC-1 still open' --wait"
    )]
    Extend(ExtendArgs),
    /// List requests: mine by default.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// A request's timeline: created, decisions (who, when), activation, bindings, expiry, Events.
    #[command(alias = "describe")]
    Show(ShowArgs),
    /// Access reviews: list the items I may decide, and decide them (keep or remove).
    #[command(subcommand)]
    Review(ReviewCommand),
    /// What an ended grant left behind (its foothold review), and with --remove the removal of
    /// its RBAC bindings, Roles, ServiceAccounts and Secrets with your own rights.
    #[command(
        after_help = "Examples:\n  kubectl pim footholds db-admin-alice-x7k2p\n  \
        kubectl pim footholds db-admin-alice-x7k2p --remove"
    )]
    Footholds(FootholdsArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  source <(kubectl pim completion bash)\n  \
        kubectl pim completion zsh > \"${fpath[1]}/_kubectl-pim\"\n  \
        kubectl pim completion fish > ~/.config/fish/completions/kubectl-pim.fish")]
    Completion { shell: clap_complete::Shell },
}

/// `kubectl pim review ...`
#[derive(Subcommand, Debug)]
pub enum ReviewCommand {
    /// Items of open access reviews I may decide (never my own access), with their evidence.
    #[command(alias = "ls")]
    List(ReviewListArgs),
    /// Record my decision on one item: keep or remove the subject's eligibility.
    Decide(ReviewDecideArgs),
}

#[derive(Args, Debug)]
pub struct ReviewListArgs {
    /// Only this review (default: every open one).
    pub name: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("decision").required(true).args(["keep", "remove"])))]
pub struct ReviewDecideArgs {
    /// The AccessReview.
    pub name: String,
    /// The item's id, as `kubectl pim review list` shows it (`<eligibility>/<kind>/<name>`).
    #[arg(long)]
    pub item: String,
    /// Keep the subject's eligibility.
    #[arg(long)]
    pub keep: bool,
    /// Remove it: once the review closes, the Eligibility stops honouring the subject.
    #[arg(long)]
    pub remove: bool,
    /// Why (recorded with the decision).
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Output format (default: a table).
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct FootholdsArgs {
    /// The ActivationRequest.
    pub name: String,
    /// Delete the removable ones (conditional on the uid the review saw); the others are listed
    /// for you to judge.
    #[arg(long)]
    pub remove: bool,
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// The ActivationRequest.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The PrivilegedRole to activate (see `kubectl pim roles`).
    pub role: String,
    /// Namespace to be granted in (repeat, or separate with commas); none for a cluster-wide role,
    /// or a role with a single namespace.
    #[arg(
        short = 'n',
        long = "namespace",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub namespaces: Vec<String>,
    /// How long the grant lasts once active (e.g. 30m, 1h30m); default: the role's.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<KubeDuration>,
    /// Why you need it (the request's justification).
    #[arg(long)]
    pub reason: String,
    /// Incident or change ticket.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Start later: an RFC 3339 time (2026-03-02T08:00:00Z) or +DURATION from now (+2h).
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    pub at: Option<At>,
    /// Name of the request (default: <role>-<you>-<random>).
    #[arg(long)]
    pub name: Option<String>,
    /// Wait until the request is Active (exit 0), ends otherwise (exit 3) or times out (exit 4).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = parse_duration, requires = "wait")]
    pub timeout: KubeDuration,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    /// Your Active request to extend.
    pub name: String,
    /// How much longer, from the grant's current expiry (e.g. 30m); default: the role's.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<KubeDuration>,
    /// Why you need it longer (the extension's justification).
    #[arg(long)]
    pub reason: String,
    /// Incident or change ticket.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Wait until the extension is Active (exit 0), ends otherwise (exit 3) or times out (exit 4).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = parse_duration, requires = "wait")]
    pub timeout: KubeDuration,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    pub name: String,
    /// Why you approve (recorded with your decision).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct DenyArgs {
    pub name: String,
    /// Why you deny (the requester sees it).
    #[arg(long)]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Pending requests of others on which my approval would count.
    #[arg(long, conflicts_with_all = ["active", "all"])]
    pub to_approve: bool,
    /// Only Active requests.
    #[arg(long)]
    pub active: bool,
    /// Everybody's requests, not only mine.
    #[arg(short = 'A', long = "all")]
    pub all: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// When a scheduled request starts.
#[derive(Clone, Debug, PartialEq)]
pub enum At {
    Time(DateTime<Utc>),
    /// From now: resolved when the request is made.
    In(std::time::Duration),
}

impl At {
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Time(t) => *t,
            Self::In(d) => now + chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::MAX),
        }
    }
}

/// Go-style durations, as in the CRDs (`30m`, `1h30m`); positive only.
pub fn parse_duration(s: &str) -> Result<KubeDuration, String> {
    let d: KubeDuration = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 30m or 1h30m ({e})"))?;
    if d.is_negative() || std::time::Duration::from(d).is_zero() {
        return Err(format!("{s:?}: the duration must be positive"));
    }
    Ok(d)
}

pub fn parse_at(s: &str) -> Result<At, String> {
    if let Some(rest) = s.strip_prefix('+') {
        return parse_duration(rest).map(|d| At::In(d.into()));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| At::Time(t.with_timezone(&Utc)))
        .map_err(|e| {
            format!("{s:?} is neither an RFC 3339 time (2026-03-02T08:00:00Z) nor +DURATION ({e})")
        })
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
