//! The operator-served admission webhook: authentic identities and fast feedback.
//!
//! Kubernetes does not record who wrote an object, so a name in a spec or status field proves
//! nothing unless admission checked it against `request.userInfo` (see the security contract).
//! This module serves two endpoints to the API server:
//!
//! - `/mutate` ([`mutate`]): on CREATE of an ActivationRequest, stamps `spec.requester` from the
//!   caller's authenticated identity (whatever the caller wrote) and adds the revoke finalizer; on
//!   UPDATE of `activationrequests/status`, stamps `approver`, `groups` and `time` of the one
//!   approval the caller appended. Existing approvals are never touched, and a write that changes
//!   them is refused.
//! - `/validate` ([`validate`]): on CREATE, refuses at `kubectl apply` time a request the
//!   controller would deny anyway, with the controller's own wording ([`crate::policy::validate`]).
//!   The controller remains the authority: when the role is not (yet) known, the request is
//!   admitted and the controller decides.
//!
//! Both read requests through [`request`] (is it ours, who sent it, how to refuse).
//!
//! [`handler`] answers one review; [`server`] is the HTTPS server (hyper + rustls); [`certs`] the pure certificate work (CA,
//! serving certificate, rotation decision); [`tls`] where the serving certificate comes from at run
//! time (a shared Secret, or mounted files) and how the CA bundle reaches the webhook
//! configurations.
//!
//! The webhook is served by every replica alongside the controllers, from
//! [`crate::controller::run_operator`] when [`WebhookSettings`] are given.

pub mod certs;
pub mod handler;
pub mod mutate;
pub mod mutate_review;
pub mod request;
pub mod server;
mod settings;
pub mod telemetry;
pub mod tls;
pub mod validate;

#[cfg(test)]
mod fixtures;

use std::net::SocketAddr;

pub use handler::Snapshots;
pub use request::requester_from;
pub use server::Webhook;
pub use settings::{CertMode, WebhookArgs, WebhookSettings};
pub use telemetry::WebhookTelemetry;

/// Path of the mutating endpoint.
pub const MUTATE_PATH: &str = "/mutate";
/// Path of the validating endpoint.
pub const VALIDATE_PATH: &str = "/validate";
/// Name of the MutatingWebhookConfiguration and of the ValidatingWebhookConfiguration.
pub const CONFIGURATION_NAME: &str = "kubepim";
/// Secret (in the operator's namespace) holding the self-managed CA and serving certificate.
pub const TLS_SECRET_NAME: &str = "kubepim-webhook-tls";
/// Default name of the Service in front of the webhook.
pub const DEFAULT_SERVICE_NAME: &str = "kubepim-webhook";

/// Errors of the webhook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("webhook configuration: {0}")]
    Config(String),
    #[error("webhook: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook certificate: {0}")]
    Certificate(String),
    #[error("webhook {what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("webhook {what}: no answer within the per-call limit")]
    Timeout { what: &'static str },
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Certificate(e.to_string())
    }
}
