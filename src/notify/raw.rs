//! The config file as written, before validation ([`super::load`]). Kept apart from the validated
//! types so that what the rest of the crate sees never depends on the file's spelling.
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::config::{Audience, SinkKind};
use super::event::EventKind;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) cluster: Option<String>,
    #[serde(default)]
    pub(super) queue_size: Option<usize>,
    // Options throughout, so that an explicit `null` (as templating tends to write) means
    // "absent" rather than a type error.
    #[serde(default)]
    pub(super) sinks: Option<Vec<RawSink>>,
    #[serde(default)]
    pub(super) audiences: Option<RawAudiences>,
    #[serde(default)]
    pub(super) routes: Option<RawRoutes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawSink {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: SinkKind,
    #[serde(default)]
    pub(super) url_from: Option<RawSource>,
    /// Accepted only to refuse it with a helpful message, never read.
    #[serde(default)]
    pub(super) url: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) headers: Option<Vec<RawHeader>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawSource {
    #[serde(default)]
    pub(super) file: Option<PathBuf>,
    #[serde(default)]
    pub(super) env: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawHeader {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value: Option<String>,
    #[serde(default)]
    pub(super) value_from: Option<RawSource>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawAudiences {
    approvers: Option<Vec<String>>,
    requester: Option<Vec<String>>,
    audit: Option<Vec<String>>,
    security: Option<Vec<String>>,
}

impl RawAudiences {
    pub(super) fn get(&self, a: Audience) -> (&'static str, Option<&Vec<String>>) {
        match a {
            Audience::Approvers => ("approvers", self.approvers.as_ref()),
            Audience::Requester => ("requester", self.requester.as_ref()),
            Audience::Audit => ("audit", self.audit.as_ref()),
            Audience::Security => ("security", self.security.as_ref()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawRoutes {
    requested: Option<Vec<String>>,
    approved: Option<Vec<String>>,
    denied: Option<Vec<String>>,
    activated: Option<Vec<String>>,
    expired: Option<Vec<String>>,
    cancelled: Option<Vec<String>>,
    revoked: Option<Vec<String>>,
    failed: Option<Vec<String>>,
    break_glass: Option<Vec<String>>,
    footholds: Option<Vec<String>>,
}

impl RawRoutes {
    pub(super) fn get(&self, kind: EventKind) -> Option<&Vec<String>> {
        match kind {
            EventKind::Requested => self.requested.as_ref(),
            EventKind::Approved => self.approved.as_ref(),
            EventKind::Denied => self.denied.as_ref(),
            EventKind::Activated => self.activated.as_ref(),
            EventKind::Expired => self.expired.as_ref(),
            EventKind::Cancelled => self.cancelled.as_ref(),
            EventKind::Revoked => self.revoked.as_ref(),
            EventKind::Failed => self.failed.as_ref(),
            EventKind::BreakGlass => self.break_glass.as_ref(),
            EventKind::Footholds => self.footholds.as_ref(),
        }
    }
}
