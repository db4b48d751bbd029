//! The notifications config file (`--notifications-config PATH`), checked once at start-up.
//!
//! ```yaml
//! cluster: prod-eu-1            # optional: named in every message, to tell clusters apart
//! queueSize: 256                # optional: notifications waiting per sink before drops (default 256)
//! sinks:
//!   - name: approvers-chat
//!     type: slack               # Slack-compatible incoming webhook ({"text", "blocks"})
//!     urlFrom: {file: /etc/kubepim/notifications/approvers-chat-url}
//!   - name: siem
//!     type: webhook             # generic JSON POST (see `payload`)
//!     urlFrom: {env: KUBEPIM_SIEM_WEBHOOK_URL}
//!     headers:
//!       - name: Authorization
//!         valueFrom: {file: /etc/kubepim/notifications/siem-token}
//!       - name: X-Source
//!         value: kubepim
//! audiences:                    # who the default routes go to: audience -> sink names
//!   approvers: [approvers-chat]
//!   requester: [approvers-chat]
//!   audit: [siem]
//!   security: [approvers-chat, siem]
//! routes:                       # optional, per event: sink names, replacing the default
//!   failed: [siem]
//!   cancelled: []               # nobody is told
//! ```
//!
//! Default routes (used for every event absent from `routes:`), by audience:
//!
//! | event | audiences |
//! |---|---|
//! | `requested` | approvers |
//! | `approved`, `denied` | requester |
//! | `activated`, `expired`, `cancelled`, `revoked`, `failed` | audit |
//! | `breakGlass` | security, audit |
//!
//! An audience that is not mapped receives nothing. URLs and header values come from a file
//! (a mounted Secret; relative paths are relative to the config file's directory; surrounding
//! whitespace is trimmed) or an environment variable, and are read once at start-up. Header
//! values may also be given literally with `value:` when they are not secret. TLS trusts the
//! system roots (`SSL_CERT_FILE` points at another bundle).
use http::HeaderMap;
use serde::Deserialize;

use super::event::EventKind;
use super::secret::SecretUrl;

/// Per-sink queue length when the config does not say.
pub const DEFAULT_QUEUE_SIZE: usize = 256;
pub(super) const MAX_QUEUE_SIZE: usize = 100_000;

/// The body format a sink receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SinkKind {
    /// Generic JSON POST of [`super::payload::WebhookPayload`].
    Webhook,
    /// Slack-compatible incoming-webhook payload (`{"text": …, "blocks": […]}`).
    Slack,
}

/// Who a default route is meant for; the config maps each to sink names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Approvers,
    Requester,
    Audit,
    Security,
}

impl Audience {
    /// The audiences an event goes to unless `routes:` names its sinks.
    pub fn defaults_for(kind: EventKind) -> &'static [Audience] {
        match kind {
            EventKind::Requested => &[Audience::Approvers],
            EventKind::Approved | EventKind::Denied => &[Audience::Requester],
            EventKind::Activated
            | EventKind::Expired
            | EventKind::Cancelled
            | EventKind::Revoked
            | EventKind::Failed => &[Audience::Audit],
            EventKind::BreakGlass | EventKind::Footholds => &[Audience::Security, Audience::Audit],
        }
    }
}

/// One validated sink, its URL and headers resolved.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub url: SecretUrl,
    /// Extra request headers; values are marked sensitive (hidden from `Debug`).
    pub headers: HeaderMap,
}

/// A validated notifications config: sinks plus, for every event, the sinks it goes to.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub cluster: Option<String>,
    pub queue_size: usize,
    pub sinks: Vec<SinkConfig>,
    /// Indexed by [`EventKind::index`]: indexes into `sinks`.
    pub(super) routes: [Vec<usize>; EventKind::ALL.len()],
}

impl NotifyConfig {
    /// A config without sinks: every notification goes nowhere.
    pub fn empty() -> Self {
        Self {
            cluster: None,
            queue_size: DEFAULT_QUEUE_SIZE,
            sinks: Vec::new(),
            routes: Default::default(),
        }
    }

    /// The names of the sinks `kind` is delivered to.
    pub fn routes_for(&self, kind: EventKind) -> Vec<&str> {
        self.routes[kind.index()]
            .iter()
            .map(|&i| self.sinks[i].name.as_str())
            .collect()
    }

    pub(crate) fn route_indexes(&self, kind: EventKind) -> &[usize] {
        &self.routes[kind.index()]
    }

    /// Sinks no event is routed to (worth a warning at start-up).
    pub fn unused_sinks(&self) -> Vec<&str> {
        (0..self.sinks.len())
            .filter(|i| !self.routes.iter().any(|r| r.contains(i)))
            .map(|i| self.sinks[i].name.as_str())
            .collect()
    }
}
