//! The refresh loop: looks at the certificate source every interval and serves what it finds,
//! only after the API server has been told to trust it.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use super::configurations::inject;
use super::keys;
use super::secret::ensure_secret;
use super::serving::Resolver;
use crate::admission::certs::{self, CertAndKey};
use crate::admission::{CertMode, Error, WebhookSettings};

/// Retry after a failed refresh.
const RETRY: Duration = Duration::from_secs(5);
/// How often mounted certificate files are looked at again.
const FILE_POLL: Duration = Duration::from_secs(30);

fn read_file(dir: &Path, name: &str) -> Result<String, Error> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map_err(|e| Error::Certificate(format!("reading {}: {e}", path.display())))
}

/// One look at the certificate source: serve what it has, after the API server was told to
/// trust it. Returns when to look again.
pub async fn refresh(
    client: Option<&Client>,
    settings: &WebhookSettings,
    resolver: &Resolver,
    ready: &watch::Sender<bool>,
) -> Result<Duration, Error> {
    let (serving, bundle, next) = match settings.cert_mode {
        CertMode::SelfManaged => {
            let client = client
                .ok_or_else(|| Error::Config("self-managed certificates need a client".into()))?;
            let material = ensure_secret(client, settings).await?;
            (
                material.serving,
                Some(material.bundle),
                settings.refresh_interval,
            )
        }
        CertMode::CertManager | CertMode::Files => {
            let dir = settings
                .cert_dir
                .as_deref()
                .ok_or_else(|| Error::Config("no --webhook-cert-dir".into()))?;
            let pair = CertAndKey {
                cert_pem: read_file(dir, keys::TLS_CRT)?,
                key_pem: read_file(dir, keys::TLS_KEY)?,
            };
            // cert-manager's cainjector owns the bundle; in files mode a ca.crt is ours to inject.
            let bundle = match settings.cert_mode {
                CertMode::Files => read_file(dir, keys::CA_CRT).ok(),
                _ => None,
            };
            (pair, bundle, FILE_POLL.min(settings.refresh_interval))
        }
    };
    let injected = match client {
        Some(client) => inject(client, settings, bundle.as_deref()).await,
        None => Ok(()),
    };
    if let Err(e) = injected {
        // A new certificate the API server may not trust yet would break admission: keep serving
        // the one in place (still valid: renewal starts a third of a lifetime early).
        if resolver.is_loaded() {
            return Err(e);
        }
        tracing::warn!(error = %e, "could not update the webhook configurations; serving anyway");
    }
    if resolver.set(&serving)? {
        let info = certs::inspect(&serving.cert_pem).map_err(Error::Certificate)?;
        resolver.note_expiry(info.not_after);
        tracing::info!(
            not_after = %info.not_after.to_rfc3339(),
            names = ?info.names,
            "webhook serving certificate loaded"
        );
    }
    ready.send_replace(true);
    Ok(next)
}

/// Refreshes until `shutdown` resolves; failures are logged and retried.
pub async fn keep_fresh(
    client: Option<Client>,
    settings: WebhookSettings,
    resolver: Arc<Resolver>,
    ready: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let next = match refresh(client.as_ref(), &settings, &resolver, &ready).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, mode = ?settings.cert_mode, "webhook certificate refresh failed; retrying");
                RETRY.min(settings.refresh_interval)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = &mut shutdown => return,
        }
    }
}
