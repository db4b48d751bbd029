//! The webhook's serving certificate at run time: where it comes from, how it is swapped in
//! without a restart, and how the API server learns to trust it.
//!
//! - `self-managed`: one Secret ([`super::TLS_SECRET_NAME`]) in the operator's namespace holds
//!   the CA, the serving certificate and the CA bundle, so every replica serves a certificate the
//!   same bundle trusts. Each replica reads it every refresh interval; whichever finds it missing
//!   or due ([`certs::rotation`]) writes the renewal, guarded by `resourceVersion` (a conflict
//!   means another replica was faster: read again). The bundle is injected into the webhook
//!   configurations *before* a new certificate is served.
//! - `cert-manager` / `files`: `tls.crt` and `tls.key` are read from a directory and re-read
//!   when they change; in `files` mode a `ca.crt` there is injected as the bundle.
//! - `--webhook-url` (any mode): written into `clientConfig.url` of both configurations.
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::certs::{self, CertAndKey, Material};
use super::{CertMode, Error, MUTATE_PATH, VALIDATE_PATH, WebhookSettings};

/// Per-call limit on the API calls made here.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry after a failed refresh.
const RETRY: Duration = Duration::from_secs(5);
/// How often mounted certificate files are looked at again.
const FILE_POLL: Duration = Duration::from_secs(30);
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

    fn note_expiry(&self, at: chrono::DateTime<chrono::Utc>) {
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

// ------------------------------------------------------------------------------------------------
// The shared Secret
// ------------------------------------------------------------------------------------------------

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The material a Secret holds, if it holds all of it.
pub fn material_from_secret(secret: &Secret) -> Option<Material> {
    Some(Material {
        ca: CertAndKey {
            cert_pem: text(secret, keys::CA_CRT)?,
            key_pem: text(secret, keys::CA_KEY)?,
        },
        serving: CertAndKey {
            cert_pem: text(secret, keys::TLS_CRT)?,
            key_pem: text(secret, keys::TLS_KEY)?,
        },
        bundle: text(secret, keys::CA_BUNDLE).unwrap_or_default(),
    })
}

/// The Secret for `material` (a `kubernetes.io/tls` Secret with the CA beside it).
pub fn secret_for(
    settings: &WebhookSettings,
    material: &Material,
    resource_version: Option<String>,
) -> Secret {
    let data = [
        (keys::TLS_CRT, &material.serving.cert_pem),
        (keys::TLS_KEY, &material.serving.key_pem),
        (keys::CA_CRT, &material.ca.cert_pem),
        (keys::CA_KEY, &material.ca.key_pem),
        (keys::CA_BUNDLE, &material.bundle),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(settings.secret_name.clone()),
            namespace: Some(settings.namespace.clone()),
            resource_version,
            labels: Some(
                [
                    ("app.kubernetes.io/name", "kubepim"),
                    ("app.kubernetes.io/component", "webhook-tls"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

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

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Kube { source: kube::Error::Api(s), .. } if s.code == 409)
}

/// Reads the shared Secret, creating or renewing its material when due; returns what is in force.
pub async fn ensure_secret(client: &Client, settings: &WebhookSettings) -> Result<Material, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let names = settings.certificate_names();
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = call("read TLS Secret", api.get_opt(&settings.secret_name)).await?;
        let stored = existing.as_ref().and_then(material_from_secret);
        let now = Utc::now();
        let reason = match certs::rotation(stored.as_ref(), &names, now) {
            certs::Rotation::Keep { .. } => {
                return stored.ok_or_else(|| Error::Certificate("kept material vanished".into()));
            }
            certs::Rotation::Serving(reason) | certs::Rotation::Authority(reason) => reason,
        };
        let renewed = certs::renew(stored.as_ref(), &names, now)?
            .ok_or_else(|| Error::Certificate("renewal due but nothing renewed".into()))?;
        let result = match &existing {
            None => {
                call(
                    "create TLS Secret",
                    api.create(&pp, &secret_for(settings, &renewed, None)),
                )
                .await
            }
            Some(secret) => {
                let rv = secret.metadata.resource_version.clone();
                let replacement = secret_for(settings, &renewed, rv);
                call(
                    "update TLS Secret",
                    api.replace(&settings.secret_name, &pp, &replacement),
                )
                .await
            }
        };
        match result {
            Ok(_) => {
                tracing::info!(
                    secret = %settings.secret_name,
                    namespace = %settings.namespace,
                    %reason,
                    "webhook certificate renewed"
                );
                return Ok(renewed);
            }
            // Another replica wrote first (409 Conflict or AlreadyExists): use what it wrote.
            Err(e) if is_conflict(&e) && attempt < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The webhook configurations
// ------------------------------------------------------------------------------------------------

/// JSON-patch operations that bring `clientConfig` of every webhook in a configuration (as JSON)
/// to the wanted CA bundle (base64) and URL; empty when nothing differs. Each webhook's changes
/// are guarded by a `test` of its name, so a concurrent edit fails the patch instead of landing
/// on the wrong entry.
pub fn client_config_patch(
    config: &Value,
    ca_bundle_b64: Option<&str>,
    url: Option<&str>,
) -> Vec<Value> {
    let mut ops = Vec::new();
    let webhooks = config
        .get("webhooks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, webhook) in webhooks.iter().enumerate() {
        let client_config = webhook
            .get("clientConfig")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut changes = Vec::new();
        if let Some(bundle) = ca_bundle_b64
            && client_config.get("caBundle").and_then(Value::as_str) != Some(bundle)
        {
            changes.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}));
        }
        if let Some(url) = url {
            if client_config.get("url").and_then(Value::as_str) != Some(url) {
                changes.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/url"), "value": url}));
            }
            if client_config.get("service").is_some() {
                changes.push(
                    json!({"op": "remove", "path": format!("/webhooks/{i}/clientConfig/service")}),
                );
            }
        }
        if !changes.is_empty() {
            let name = webhook.get("name").cloned().unwrap_or(Value::Null);
            ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": name}));
            ops.extend(changes);
        }
    }
    ops
}

/// The URL of one endpoint under the base `--webhook-url`.
pub fn endpoint_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

async fn update_configuration<K>(
    client: &Client,
    name: &str,
    ca_bundle_b64: Option<&str>,
    url: Option<&str>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let Some(config) = call("read webhook configuration", api.get_opt(name)).await? else {
        tracing::warn!(kind = %K::kind(&()), %name, "webhook configuration not installed; nothing to inject");
        return Ok(());
    };
    let config = serde_json::to_value(&config).map_err(|e| Error::Certificate(e.to_string()))?;
    let ops = client_config_patch(&config, ca_bundle_b64, url);
    if ops.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|e| Error::Certificate(e.to_string()))?;
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    call(
        "patch webhook configuration",
        api.patch(name, &pp, &Patch::Json::<()>(patch)),
    )
    .await?;
    tracing::info!(kind = %K::kind(&()), %name, "webhook configuration updated (CA bundle / URL)");
    Ok(())
}

/// Writes the CA bundle (PEM; `None`: leave it) and `--webhook-url` into both configurations.
pub async fn inject(
    client: &Client,
    settings: &WebhookSettings,
    bundle_pem: Option<&str>,
) -> Result<(), Error> {
    let url = settings.url.as_deref();
    if bundle_pem.is_none() && url.is_none() {
        return Ok(());
    }
    // k8s-openapi encodes bytes as base64, as the API expects for caBundle.
    let b64 = match bundle_pem {
        Some(pem) => serde_json::to_value(ByteString(pem.as_bytes().to_vec()))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string)),
        None => None,
    };
    let name = &settings.configuration_name;
    let mutate_url = url.map(|u| endpoint_url(u, MUTATE_PATH));
    let validate_url = url.map(|u| endpoint_url(u, VALIDATE_PATH));
    update_configuration::<MutatingWebhookConfiguration>(
        client,
        name,
        b64.as_deref(),
        mutate_url.as_deref(),
    )
    .await?;
    update_configuration::<ValidatingWebhookConfiguration>(
        client,
        name,
        b64.as_deref(),
        validate_url.as_deref(),
    )
    .await
}

// ------------------------------------------------------------------------------------------------
// The refresh loop
// ------------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            namespace: "kubepim-system".into(),
            ..Default::default()
        }
    }

    #[test]
    fn secret_round_trip() {
        let names = settings().certificate_names();
        let material = certs::renew(None, &names, Utc::now()).unwrap().unwrap();
        let secret = secret_for(&settings(), &material, Some("7".into()));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some(super::super::TLS_SECRET_NAME)
        );
        assert_eq!(secret.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(material_from_secret(&secret), Some(material));
        let mut partial = secret;
        partial.data.as_mut().unwrap().remove(keys::CA_KEY);
        assert_eq!(material_from_secret(&partial), None);
    }

    #[test]
    fn resolver_swaps_and_reports_changes() {
        let names = settings().certificate_names();
        let a = certs::renew(None, &names, Utc::now()).unwrap().unwrap();
        let b = certs::renew(None, &names, Utc::now()).unwrap().unwrap();
        let resolver = Resolver::default();
        assert!(!resolver.is_loaded());
        assert!(resolver.set(&a.serving).unwrap());
        assert!(!resolver.set(&a.serving).unwrap());
        assert!(resolver.set(&b.serving).unwrap());
        assert!(resolver.is_loaded());
        // A key that does not belong to the certificate is refused, and the old one kept.
        let mismatched = CertAndKey {
            cert_pem: a.serving.cert_pem.clone(),
            key_pem: b.serving.key_pem.clone(),
        };
        assert!(resolver.set(&mismatched).is_err());
        assert!(!resolver.set(&b.serving).unwrap());
    }

    #[test]
    fn configuration_patch_sets_bundle_and_url_and_drops_service() {
        let config = json!({"webhooks": [
            {"name": "a.kubepim.io", "clientConfig": {"service": {"name": "kubepim-webhook", "namespace": "x"}}},
            {"name": "b.kubepim.io", "clientConfig": {"caBundle": "QUJD", "url": "https://127.0.0.1:8443/mutate"}},
        ]});
        let ops = client_config_patch(&config, Some("QUJD"), Some("https://127.0.0.1:8443/mutate"));
        assert_eq!(
            ops,
            vec![
                json!({"op": "test", "path": "/webhooks/0/name", "value": "a.kubepim.io"}),
                json!({"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "QUJD"}),
                json!({"op": "add", "path": "/webhooks/0/clientConfig/url", "value": "https://127.0.0.1:8443/mutate"}),
                json!({"op": "remove", "path": "/webhooks/0/clientConfig/service"}),
            ]
        );
        // Up to date: nothing to write.
        let mut patched = config.clone();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert!(
            client_config_patch(
                &patched,
                Some("QUJD"),
                Some("https://127.0.0.1:8443/mutate")
            )
            .is_empty()
        );
        // Only the bundle (cert-manager or in-cluster): the service reference stays.
        let ops = client_config_patch(&config, Some("REVG"), None);
        assert_eq!(ops.len(), 4);
        assert!(ops.iter().all(|op| op["op"] != "remove"));
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            endpoint_url("https://127.0.0.1:8443", MUTATE_PATH),
            "https://127.0.0.1:8443/mutate"
        );
        assert_eq!(
            endpoint_url("https://127.0.0.1:8443/", VALIDATE_PATH),
            "https://127.0.0.1:8443/validate"
        );
    }
}
