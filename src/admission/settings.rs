//! The webhook's settings: the `kubepim run` flags, and the checked settings they become.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{CONFIGURATION_NAME, DEFAULT_SERVICE_NAME, Error, TLS_SECRET_NAME, certs};

/// Where the serving certificate comes from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertMode {
    /// The operator creates a CA and serving certificate, keeps them in the Secret
    /// `kubepim-webhook-tls` (shared by all replicas), injects the CA bundle into the webhook
    /// configurations and rotates before expiry.
    #[default]
    SelfManaged,
    /// `tls.crt`/`tls.key` mounted from a cert-manager Certificate in `--webhook-cert-dir`; the
    /// cainjector fills in the CA bundle. Reloaded when cert-manager renews them.
    CertManager,
    /// `tls.crt`/`tls.key` (and optionally `ca.crt`, which is then injected) in
    /// `--webhook-cert-dir`, for development. Reloaded when they change.
    Files,
}

/// Flags of `kubepim run` for the webhook.
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// HTTPS port of the admission webhook; 0 disables it.
    #[arg(long, default_value_t = 0)]
    pub webhook_port: u16,
    /// Address the webhook listens on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub webhook_bind_address: IpAddr,
    /// Where the webhook's serving certificate comes from.
    #[arg(long, value_enum, default_value_t = CertMode::SelfManaged)]
    pub webhook_cert_mode: CertMode,
    /// Directory with tls.crt and tls.key (cert-manager and files modes).
    #[arg(long)]
    pub webhook_cert_dir: Option<PathBuf>,
    /// The operator's namespace (holds the webhook's TLS Secret and Service, and the Lease
    /// unless --lease-namespace says otherwise). Default: the pod's ServiceAccount namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the Service in front of the webhook (the serving certificate's DNS names).
    #[arg(long, default_value = DEFAULT_SERVICE_NAME)]
    pub webhook_service_name: String,
    /// Out-of-cluster runs: the base URL the API server should call (e.g. https://127.0.0.1:8443);
    /// written into the webhook configurations' clientConfig.url with /mutate or /validate.
    #[arg(long)]
    pub webhook_url: Option<String>,
}

impl WebhookArgs {
    /// The settings these flags describe; `None` when the webhook is disabled. The webhook's
    /// Secret and Service live in the operator's namespace, resolved once by the runtime from
    /// `--namespace`, `POD_NAMESPACE` or the pod's ServiceAccount.
    pub fn settings(
        &self,
        operator_namespace: Option<&str>,
    ) -> Result<Option<WebhookSettings>, Error> {
        if self.webhook_port == 0 {
            return Ok(None);
        }
        let namespace = operator_namespace
            .filter(|ns| !ns.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Config(
                    "the webhook needs the operator's namespace: set --namespace or POD_NAMESPACE"
                        .into(),
                )
            })?;
        let settings = WebhookSettings {
            listen: SocketAddr::new(self.webhook_bind_address, self.webhook_port),
            cert_mode: self.webhook_cert_mode,
            cert_dir: self.webhook_cert_dir.clone(),
            namespace,
            service_name: self.webhook_service_name.clone(),
            url: self.webhook_url.clone().filter(|u| !u.is_empty()),
            ..WebhookSettings::default()
        };
        settings.check()?;
        Ok(Some(settings))
    }
}

/// Settings of the webhook (what `kubepim run` builds from its flags; tests build it directly).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub listen: SocketAddr,
    pub cert_mode: CertMode,
    pub cert_dir: Option<PathBuf>,
    /// The operator's namespace.
    pub namespace: String,
    pub service_name: String,
    /// Base URL written into the webhook configurations (out-of-cluster runs).
    pub url: Option<String>,
    /// Name of both webhook configurations to keep up to date.
    pub configuration_name: String,
    pub secret_name: String,
    /// How often the certificate source is looked at again (Secret re-read and rotation check,
    /// or files re-read).
    pub refresh_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443),
            cert_mode: CertMode::SelfManaged,
            cert_dir: None,
            namespace: String::new(),
            service_name: DEFAULT_SERVICE_NAME.into(),
            url: None,
            configuration_name: CONFIGURATION_NAME.into(),
            secret_name: TLS_SECRET_NAME.into(),
            refresh_interval: Duration::from_secs(300),
        }
    }
}

impl WebhookSettings {
    /// Refuses settings that cannot work, before anything is started.
    pub fn check(&self) -> Result<(), Error> {
        if matches!(self.cert_mode, CertMode::CertManager | CertMode::Files)
            && self.cert_dir.is_none()
        {
            return Err(Error::Config(format!(
                "--webhook-cert-mode {:?} needs --webhook-cert-dir (with tls.crt and tls.key)",
                self.cert_mode
            )));
        }
        if self.cert_mode == CertMode::SelfManaged && self.namespace.is_empty() {
            return Err(Error::Config(
                "the self-managed webhook certificate needs --namespace".into(),
            ));
        }
        if let Some(url) = &self.url
            && !url.starts_with("https://")
        {
            return Err(Error::Config(format!(
                "--webhook-url must be an https:// URL, not {url:?}"
            )));
        }
        Ok(())
    }

    /// DNS names and addresses the serving certificate must cover.
    pub fn certificate_names(&self) -> Vec<String> {
        let extra = self.url.as_deref().and_then(url_host);
        certs::serving_names(&self.service_name, &self.namespace, extra.as_deref())
    }
}

/// The host of an `https://host[:port][/path]` URL (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
