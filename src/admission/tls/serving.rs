//! What the HTTPS server presents: the rustls configuration and the certificate it resolves,
//! swapped in place so that a renewal needs no restart.
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::admission::Error;
use crate::admission::certs::CertAndKey;

/// The crypto provider of the server: ring, as kube's client uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key into what rustls serves.
pub fn certified_key(pair: &CertAndKey) -> Result<CertifiedKey, Error> {
    let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Certificate(format!("bad certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Certificate("no certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .map_err(|e| Error::Certificate(format!("bad private key PEM: {e}")))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| Error::Certificate(format!("unusable certificate and key: {e}")))
}

/// The certificate being served; replaced in place when it is renewed.
#[derive(Debug, Default)]
pub struct Resolver {
    current: RwLock<Option<(CertAndKey, Arc<CertifiedKey>)>>,
    not_after: RwLock<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Resolver {
    /// `notAfter` of the certificate being served (for the expiry metric).
    pub fn not_after(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.not_after.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn note_expiry(&self, at: chrono::DateTime<chrono::Utc>) {
        *self.not_after.write().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    #[cfg(test)]
    pub(crate) fn note_expiry_for_tests(&self, at: chrono::DateTime<chrono::Utc>) {
        self.note_expiry(at);
    }

    /// Serves `pair` from the next handshake on. Returns whether it changed.
    pub fn set(&self, pair: &CertAndKey) -> Result<bool, Error> {
        if self
            .current
            .read()
            .is_ok_and(|c| c.as_ref().is_some_and(|(p, _)| p == pair))
        {
            return Ok(false);
        }
        let key = Arc::new(certified_key(pair)?);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Some((pair.clone(), key));
        Ok(true)
    }

    pub fn is_loaded(&self) -> bool {
        self.current.read().is_ok_and(|c| c.is_some())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No certificate yet: the handshake fails, as it should before the webhook is ready.
        self.current
            .read()
            .ok()?
            .as_ref()
            .map(|(_, key)| key.clone())
    }
}

/// The server's TLS configuration: TLS 1.2/1.3, HTTP/1.1, certificates from `resolver`.
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<rustls::ServerConfig>, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Certificate(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
#[path = "serving_tests.rs"]
mod tests;
