//! `status.activity` of an ActivationRequest: what a grant was used for, from the API server's
//! audit events. A bounded summary, never the events themselves: every map and list is capped
//! (see [`crate::policy::activity::Limits`]) so the status stays small whatever the event rate.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where the activity record comes from.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum ActivitySource {
    /// The API server's audit webhook posts to kubepim: the counts below are the grant's use.
    AuditWebhook,
    /// No audit ingest is configured (e.g. a managed cluster): nothing is counted, the idle
    /// timeout is not enforced, and what a grant left behind comes from the foothold scan only.
    #[default]
    Unavailable,
}

/// One write worth a reviewer's attention (RBAC, ServiceAccount tokens, Secrets, exec/attach/
/// port-forward, CSRs, webhook configurations).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotableWrite {
    #[schemars(length(max = 32))]
    pub verb: String,
    /// `resource[.group][/subresource]`, e.g. `rolebindings.rbac.authorization.k8s.io`.
    #[schemars(length(max = 256))]
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub name: Option<String>,
    /// The HTTP status the API server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    pub time: Time,
    /// The audit event's ID (to find it in the API server's own audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub audit_id: Option<String>,
}

/// What the grant was used for (bounded).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub source: ActivitySource,
    /// API requests attributed to this grant (completed requests only).
    #[serde(default)]
    pub requests: i64,
    /// Of those, refused by the API server (403).
    #[serde(default)]
    pub denied: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_use: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_use: Option<Time>,
    /// Requests by `"<verb> <resource>"`; past the cap, under `"other"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "integer", "format": "int64"}))]
    pub counts: BTreeMap<String, i64>,
    /// Namespaces touched (cluster-scoped requests are not listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// More namespaces were touched than are listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub namespaces_truncated: bool,
    /// The first notable writes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub notable_writes: Vec<NotableWrite>,
    /// Notable writes past the cap (counted, not listed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notable_writes_dropped: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
