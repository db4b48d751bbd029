//! The shared Secret that holds the self-managed CA and serving certificate, and the one write
//! path that creates or renews it (guarded by `resourceVersion`, so concurrent replicas agree).
use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use super::{MANAGER, call, keys};
use crate::admission::certs::{self, CertAndKey, Material};
use crate::admission::{Error, WebhookSettings};

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

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
