//! The activity record: an endpoint for the API server's audit webhook backend.
//!
//! The API server posts `audit.k8s.io/v1` EventList batches to `POST /audit` ([`server`]). Only
//! a caller presenting the bearer token from `--audit-token-file` is heard ([`auth`]); anything
//! else is refused before its body is read. Each event is matched against the Active grants'
//! requesters and windows ([`crate::policy::activity`]); an attributed event becomes one audit
//! line and a count in that request's pending summary ([`aggregator`]), which is merged into
//! `status.activity` at most every `--audit-flush-interval` per request (one conditional status
//! patch) and at the grant's end in the reconciler's own final status write.
//!
//! Every replica serves the endpoint (the API server posts to whichever the Service picks); what
//! each has counted is added on top of what is stored, conditional on the resourceVersion, so
//! counts from several replicas add up and a conflict only postpones a write.
pub mod aggregator;
pub mod auth;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use aggregator::Aggregator;
pub use server::AuditListener;

/// Path of the endpoint.
pub const AUDIT_PATH: &str = "/audit";
/// Largest batch accepted by default (the API server's default batch is 400 events of a few
/// hundred bytes at Metadata level; 4 MiB leaves room for larger levels).
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// How the audit endpoint is served.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub listen: SocketAddr,
    /// The bearer token the API server presents (trimmed file content).
    pub token: String,
    pub max_body: usize,
    /// A request's summary is written at most this often.
    pub flush_interval: Duration,
    /// Attributed events waiting for the aggregator; past this they are dropped and counted.
    pub queue: usize,
    /// Serve HTTPS with this certificate and key (PEM files, read at start-up). Without them:
    /// the admission webhook's certificate when the webhook runs in this process, else plain
    /// HTTP. The API server sends its bearer token over HTTPS only.
    pub tls_files: Option<(PathBuf, PathBuf)>,
}

impl IngestSettings {
    /// Settings with the defaults for everything but the address and token.
    pub fn new(listen: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            listen,
            token: token.into(),
            max_body: DEFAULT_MAX_BODY,
            flush_interval: Duration::from_secs(2),
            queue: 65_536,
            tls_files: None,
        }
    }
}

/// Flags of `kubepim run` for the audit endpoint (off unless `--audit-listen` is given).
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Serve the audit webhook endpoint (`POST /audit`) on this address, e.g. `0.0.0.0:8444`.
    /// Off by default: without it the activity record is `Unavailable` and idle timeouts are not
    /// enforced.
    #[arg(long, value_name = "ADDR")]
    pub audit_listen: Option<SocketAddr>,
    /// File holding the bearer token the API server's audit webhook presents (required with
    /// `--audit-listen`).
    #[arg(long, value_name = "PATH")]
    pub audit_token_file: Option<PathBuf>,
    /// Largest audit batch accepted, in bytes (larger posts are answered 413).
    #[arg(long, default_value_t = DEFAULT_MAX_BODY)]
    pub audit_max_body: usize,
    /// How often at most a request's activity summary is written.
    #[arg(long, default_value = "2s", value_parser = crate::time::parse_duration)]
    pub audit_flush_interval: Duration,
    /// Serving certificate of the audit endpoint (PEM; with `--audit-tls-key-file`). Default:
    /// the admission webhook's certificate when the webhook is served.
    #[arg(long, value_name = "PATH", requires = "audit_tls_key_file")]
    pub audit_tls_cert_file: Option<PathBuf>,
    /// Private key of `--audit-tls-cert-file` (PEM).
    #[arg(long, value_name = "PATH", requires = "audit_tls_cert_file")]
    pub audit_tls_key_file: Option<PathBuf>,
}

impl IngestArgs {
    /// `None` when the endpoint is off; an error when it is on without a usable token.
    pub fn settings(&self) -> Result<Option<IngestSettings>, Error> {
        let Some(listen) = self.audit_listen else {
            return Ok(None);
        };
        let path = self.audit_token_file.as_ref().ok_or(Error::TokenMissing)?;
        let token = std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
            path: path.clone(),
            source,
        })?;
        let token = auth::checked_token(&token)?;
        Ok(Some(IngestSettings {
            max_body: self.audit_max_body,
            flush_interval: self.audit_flush_interval,
            tls_files: self
                .audit_tls_cert_file
                .clone()
                .zip(self.audit_tls_key_file.clone()),
            ..IngestSettings::new(listen, token)
        }))
    }
}

/// Errors of the audit endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--audit-listen needs --audit-token-file")]
    TokenMissing,
    #[error("audit token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit token: {0}")]
    WeakToken(&'static str),
    #[error("audit endpoint TLS: {0}")]
    Tls(String),
    #[error("audit endpoint: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ingest: IngestArgs,
    }

    fn settings(args: &[&str]) -> Result<Option<IngestSettings>, Error> {
        Cli::parse_from(std::iter::once("kubepim").chain(args.iter().copied()))
            .ingest
            .settings()
    }

    #[test]
    fn off_unless_a_listen_address_is_given() {
        assert!(settings(&[]).unwrap().is_none());
    }

    #[test]
    fn on_needs_a_strong_token_from_a_file() {
        assert!(matches!(
            settings(&["--audit-listen", "127.0.0.1:8444"]),
            Err(Error::TokenMissing)
        ));
        let dir = tempfile::tempdir().unwrap();
        let weak = dir.path().join("weak");
        std::fs::write(&weak, "secret\n").unwrap();
        assert!(matches!(
            settings(&[
                "--audit-listen",
                "127.0.0.1:8444",
                "--audit-token-file",
                weak.to_str().unwrap()
            ]),
            Err(Error::WeakToken(_))
        ));
        let good = dir.path().join("token");
        std::fs::write(&good, "0123456789abcdef0123456789abcdef0123\n").unwrap();
        let s = settings(&[
            "--audit-listen",
            "127.0.0.1:8444",
            "--audit-token-file",
            good.to_str().unwrap(),
            "--audit-flush-interval",
            "5s",
        ])
        .unwrap()
        .expect("on");
        assert_eq!(s.token, "0123456789abcdef0123456789abcdef0123");
        assert_eq!(s.flush_interval, Duration::from_secs(5));
        assert_eq!(s.max_body, DEFAULT_MAX_BODY);
        assert!(s.tls_files.is_none());
        let missing = dir.path().join("missing");
        assert!(matches!(
            settings(&[
                "--audit-listen",
                "127.0.0.1:8444",
                "--audit-token-file",
                missing.to_str().unwrap()
            ]),
            Err(Error::TokenFile { .. })
        ));
    }
}
