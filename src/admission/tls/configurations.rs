//! The webhook configurations' `clientConfig`: the CA bundle the API server trusts and, with
//! `--webhook-url`, the URL it calls.
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{MANAGER, call};
use crate::admission::{Error, MUTATE_PATH, VALIDATE_PATH, WebhookSettings};

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

#[cfg(test)]
#[path = "configurations_tests.rs"]
mod tests;
