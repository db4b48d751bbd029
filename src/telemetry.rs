//! Logging: human-readable by default, JSON on request; level from `RUST_LOG`.
use tracing_subscriber::EnvFilter;

/// Default log filter. Directive targets match by prefix, so `kube=warn` would also silence
/// `kubepim::*` (the audit stream included): name kube's crates exactly.
pub const DEFAULT_FILTER: &str = "info,kube_client=warn,kube_runtime=warn";

/// Log line format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber once; later calls are ignored (tests may call it repeatedly).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
