//! The webhook's serving certificate at run time: where it comes from, how it is swapped in
//! without a restart, and how the API server learns to trust it.
//!
//! - `self-managed`: one Secret ([`super::TLS_SECRET_NAME`]) in the operator's namespace holds
//!   the CA, the serving certificate and the CA bundle, so every replica serves a certificate the
//!   same bundle trusts. Each replica reads it every refresh interval; whichever finds it missing
//!   or due ([`rotation`](super::certs::rotation)) writes the renewal, guarded by `resourceVersion` (a conflict
//!   means another replica was faster: read again). The bundle is injected into the webhook
//!   configurations *before* a new certificate is served.
//! - `cert-manager` / `files`: `tls.crt` and `tls.key` are read from a directory and re-read
//!   when they change; in `files` mode a `ca.crt` there is injected as the bundle.
//! - `--webhook-url` (any mode): written into `clientConfig.url` of both configurations.
//!
//! `serving.rs` is what the server presents, `secret.rs` the shared Secret, `configurations.rs`
//! the webhook configurations, and `refresh.rs` the loop that ties them together.
use std::time::Duration;

mod configurations;
mod refresh;
mod secret;
mod serving;

pub use configurations::{client_config_patch, endpoint_url, inject};
pub use refresh::{keep_fresh, refresh};
pub use secret::{ensure_secret, material_from_secret, secret_for};
pub use serving::{Resolver, certified_key, provider, server_config};

use super::Error;

/// Per-call limit on the API calls made here.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Field manager of the operator's writes here.
const MANAGER: &str = "kubepim-webhook";

/// Keys of the shared Secret.
pub mod keys {
    pub const TLS_CRT: &str = "tls.crt";
    pub const TLS_KEY: &str = "tls.key";
    pub const CA_CRT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const CA_BUNDLE: &str = "ca-bundle.crt";
}

/// Bounds an API call, so that an API server that does not answer delays a refresh instead of
/// stalling the loop.
async fn call<T>(
    what: &'static str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Err(Error::Timeout { what }),
        Ok(Err(source)) => Err(Error::Kube { what, source }),
        Ok(Ok(value)) => Ok(value),
    }
}
