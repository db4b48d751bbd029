use std::path::PathBuf;

/// Why notifications could not be set up. No variant ever carries a sink URL or a header value.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot read notifications config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("notifications config {} is not valid YAML for this format: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("notifications config {} is invalid:\n  - {}", path.display(), problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        /// One plain sentence per problem, each naming the sink, route or audience at fault.
        problems: Vec<String>,
    },
    #[error("cannot set up TLS for notification sinks: {0}")]
    Tls(String),
}
