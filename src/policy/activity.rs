//! The activity record: which API server audit events belong to which grant, and the bounded
//! summary kept in `status.activity`. Pure: the listener parses and hands events in, the
//! aggregator keeps the summaries, the request reconciler asks about idleness.
//!
//! - Only what attribution needs is read from an `audit.k8s.io/v1` Event ([`AuditEvent`]); a
//!   whole event is never kept. An attributed event becomes a small [`Use`].
//! - Only the `ResponseComplete` and `Panic` stages count: every request has exactly one of them
//!   (`RequestReceived` and `ResponseStarted` would count a request twice). Requests on
//!   `activationrequests.kubepim.io` are not a grant's use: anybody may make them.
//! - An event belongs to a grant when its user, or the user it impersonated, is the grant's
//!   admission-stamped requester and it was received inside the grant's window
//!   ([`GrantWindow`]). Nothing the event says about a request name is trusted: there is none.
//! - The summary ([`Activity`]) is capped everywhere ([`Limits`]): a flood of events changes
//!   counts, never its size.
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::api::{Activity, ActivitySource, NotableWrite};
use crate::time::{from_k8s, to_k8s};

/// The only apiVersion and kind of a batch the API server's audit webhook posts.
pub const API_VERSION: &str = "audit.k8s.io/v1";
pub const KIND: &str = "EventList";
/// The bucket for `counts` keys past the cap.
pub const OTHER: &str = "other";

/// Caps of the summary (the schema allows a little more, so that a cap change is not a CRD
/// change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub count_keys: usize,
    pub namespaces: usize,
    pub notable_writes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            count_keys: 48,
            namespaces: 32,
            notable_writes: 20,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct AuditUser {
    #[serde(default)]
    pub username: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_group: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct AuditResponseStatus {
    #[serde(default)]
    pub code: Option<i32>,
}

/// The fields of an `audit.k8s.io/v1` Event that attribution reads; everything else (request and
/// response bodies included, at levels above Metadata) is skipped while parsing.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    #[serde(default, rename = "auditID")]
    pub audit_id: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub verb: String,
    #[serde(default)]
    pub user: AuditUser,
    #[serde(default)]
    pub impersonated_user: Option<AuditUser>,
    #[serde(default)]
    pub object_ref: Option<AuditObjectRef>,
    #[serde(default)]
    pub response_status: Option<AuditResponseStatus>,
    #[serde(default)]
    pub request_received_timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventList {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    items: Vec<AuditEvent>,
}

/// Why a batch was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("not an audit EventList: {0}")]
    Malformed(String),
    #[error("expected apiVersion {API_VERSION} kind {KIND}, got {api_version} {kind}")]
    WrongKind { api_version: String, kind: String },
}

/// Reads a posted batch. Refused as a whole when it is not an `audit.k8s.io/v1` EventList.
pub fn parse_batch(body: &[u8]) -> Result<Vec<AuditEvent>, BatchError> {
    let list: EventList =
        serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    if list.api_version != API_VERSION || list.kind != KIND {
        return Err(BatchError::WrongKind {
            api_version: list.api_version,
            kind: list.kind,
        });
    }
    Ok(list.items)
}

/// One attributed API request, as small as the summary and the audit line need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub at: DateTime<Utc>,
    pub verb: String,
    /// `resource[.group][/subresource]`; empty for a non-resource URL.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: Option<i32>,
    pub audit_id: String,
}

/// The identities an event may be attributed to: the authenticated user, and the user it
/// impersonated (a grant that lets its holder impersonate is used by both).
pub fn identities(event: &AuditEvent) -> impl Iterator<Item = &str> {
    let user = Some(event.user.username.as_str());
    let impersonated = event
        .impersonated_user
        .as_ref()
        .map(|u| u.username.as_str());
    user.into_iter()
        .chain(impersonated.filter(|i| *i != event.user.username))
        .filter(|u| !u.is_empty())
}

/// The [`Use`] an event stands for, or `None` when it is not counted (another stage, no time,
/// or kubepim's own ActivationRequests, which anybody may use without a grant).
pub fn use_of(event: &AuditEvent) -> Option<Use> {
    if event.stage != "ResponseComplete" && event.stage != "Panic" {
        return None;
    }
    let at = event.request_received_timestamp?;
    let object = event.object_ref.as_ref();
    // Asking for, cancelling or reading one's own requests needs no grant (and the request that
    // activates a grant is made in the second its persisted activation time is truncated to).
    if object
        .is_some_and(|o| o.api_group == crate::api::GROUP && o.resource == "activationrequests")
    {
        return None;
    }
    let resource = object.map_or_else(String::new, resource_key);
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(Use {
        at,
        verb: truncated(&event.verb, 32),
        resource,
        namespace: object.and_then(|o| non_empty(&o.namespace)),
        name: object.and_then(|o| non_empty(&o.name)),
        code: event.response_status.as_ref().and_then(|s| s.code),
        audit_id: truncated(&event.audit_id, 64),
    })
}

fn resource_key(o: &AuditObjectRef) -> String {
    let mut key = o.resource.clone();
    if !o.api_group.is_empty() {
        key.push('.');
        key.push_str(&o.api_group);
    }
    if !o.subresource.is_empty() {
        key.push('/');
        key.push_str(&o.subresource);
    }
    truncated(&key, 200)
}

fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// An Active (or just ended) grant's window, from its persisted status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantWindow {
    pub request: String,
    pub activated_at: DateTime<Utc>,
    /// `endedAt` once the grant ended; `None` while it runs.
    pub ended_at: Option<DateTime<Utc>>,
}

impl GrantWindow {
    /// Was a request received at `at` made under this grant? Activation and end are persisted at
    /// whole seconds, so the window is widened to the enclosing seconds.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        let start = self.activated_at;
        let end = self.ended_at.map(|e| e + Duration::seconds(1));
        at >= start && end.is_none_or(|e| at < e)
    }
}

/// Is this a write a reviewer should see by name?
pub fn is_notable(u: &Use) -> bool {
    let write = matches!(
        u.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    // exec, attach and port-forward are `create` on a pod subresource (`get` over websockets in
    // older clients).
    let stream = matches!(u.verb.as_str(), "create" | "get")
        && matches!(
            u.resource.as_str(),
            "pods/exec" | "pods/attach" | "pods/portforward"
        );
    if stream {
        return true;
    }
    if !write {
        return false;
    }
    let (base, _) = u.resource.split_once('/').unwrap_or((&u.resource, ""));
    u.resource.starts_with("serviceaccounts/token")
        || base.ends_with(".rbac.authorization.k8s.io")
        || base == "secrets"
        || base == "serviceaccounts"
        || base == "certificatesigningrequests.certificates.k8s.io"
        || base == "validatingwebhookconfigurations.admissionregistration.k8s.io"
        || base == "mutatingwebhookconfigurations.admissionregistration.k8s.io"
        || base == "validatingadmissionpolicies.admissionregistration.k8s.io"
        || base == "validatingadmissionpolicybindings.admissionregistration.k8s.io"
}

/// An empty record from the audit webhook.
pub fn empty() -> Activity {
    Activity {
        source: ActivitySource::AuditWebhook,
        ..Activity::default()
    }
}

/// Adds one use to a summary, within `limits`.
pub fn record(activity: &mut Activity, u: &Use, limits: Limits) {
    activity.source = ActivitySource::AuditWebhook;
    activity.requests = activity.requests.saturating_add(1);
    if u.code == Some(403) {
        activity.denied = activity.denied.saturating_add(1);
    }
    let at = to_k8s(u.at);
    if activity
        .first_use
        .as_ref()
        .is_none_or(|f| from_k8s(f) > u.at)
    {
        activity.first_use = Some(at.clone());
    }
    if activity
        .last_use
        .as_ref()
        .is_none_or(|l| from_k8s(l) < u.at)
    {
        activity.last_use = Some(at.clone());
    }
    let key = if u.resource.is_empty() {
        u.verb.clone()
    } else {
        format!("{} {}", u.verb, u.resource)
    };
    add_count(activity, key, 1, limits);
    if let Some(ns) = &u.namespace {
        add_namespace(activity, ns, limits);
    }
    if is_notable(u) {
        add_notable(
            activity,
            NotableWrite {
                verb: u.verb.clone(),
                resource: truncated(&u.resource, 256),
                namespace: u.namespace.clone(),
                name: u.name.as_deref().map(|n| truncated(n, 253)),
                code: u.code,
                time: at,
                audit_id: (!u.audit_id.is_empty()).then(|| u.audit_id.clone()),
            },
            1,
            limits,
        );
    }
}

fn add_count(activity: &mut Activity, key: String, n: i64, limits: Limits) {
    // One key is kept for "other", so the map never holds more than `count_keys`.
    let room = activity.counts.len() < limits.count_keys.saturating_sub(1);
    let key = if activity.counts.contains_key(&key) || room {
        key
    } else {
        OTHER.to_string()
    };
    let slot = activity.counts.entry(key).or_insert(0);
    *slot = slot.saturating_add(n);
}

fn add_namespace(activity: &mut Activity, ns: &str, limits: Limits) {
    if activity.namespaces.iter().any(|n| n == ns) {
        return;
    }
    if activity.namespaces.len() < limits.namespaces {
        let at = activity.namespaces.partition_point(|n| n.as_str() < ns);
        activity.namespaces.insert(at, truncated(ns, 63));
    } else {
        activity.namespaces_truncated = true;
    }
}

fn add_notable(activity: &mut Activity, write: NotableWrite, dropped: i64, limits: Limits) {
    if activity.notable_writes.len() < limits.notable_writes {
        activity.notable_writes.push(write);
    } else {
        activity.notable_writes_dropped = activity.notable_writes_dropped.saturating_add(dropped);
    }
}

/// Adds what `delta` counted to `into` (the persisted summary), within `limits`. Used to write
/// what one process saw since its last write on top of what is stored, so that two replicas
/// receiving events for the same grant both count, and a restart loses at most one interval.
pub fn merge(into: &mut Activity, delta: &Activity, limits: Limits) {
    into.source = ActivitySource::AuditWebhook;
    into.requests = into.requests.saturating_add(delta.requests);
    into.denied = into.denied.saturating_add(delta.denied);
    if let Some(f) = &delta.first_use
        && into
            .first_use
            .as_ref()
            .is_none_or(|g| from_k8s(g) > from_k8s(f))
    {
        into.first_use = Some(f.clone());
    }
    if let Some(l) = &delta.last_use
        && into
            .last_use
            .as_ref()
            .is_none_or(|g| from_k8s(g) < from_k8s(l))
    {
        into.last_use = Some(l.clone());
    }
    for (key, n) in &delta.counts {
        add_count(into, key.clone(), *n, limits);
    }
    for ns in &delta.namespaces {
        add_namespace(into, ns, limits);
    }
    into.namespaces_truncated |= delta.namespaces_truncated;
    for write in &delta.notable_writes {
        add_notable(into, write.clone(), 1, limits);
    }
    into.notable_writes_dropped = into
        .notable_writes_dropped
        .saturating_add(delta.notable_writes_dropped);
}

/// The notable writes a grant made (what an audit-based foothold report can start from).
pub fn notable_writes(activity: Option<&Activity>) -> &[NotableWrite] {
    activity.map_or(&[], |a| a.notable_writes.as_slice())
}

/// Was the grant never used? Only known where the audit record is configured (`None`: unknown).
pub fn never_used(activity: Option<&Activity>, ingest: bool) -> Option<bool> {
    if !ingest {
        return None;
    }
    Some(activity.is_none_or(|a| a.requests == 0))
}

/// When a grant activated at `activated_at` becomes idle: `idle_timeout` after its last recorded
/// use (after activation when never used).
pub fn idle_at(
    activity: Option<&Activity>,
    activated_at: DateTime<Utc>,
    idle_timeout: Duration,
) -> DateTime<Utc> {
    let last = activity
        .and_then(|a| a.last_use.as_ref())
        .map(from_k8s)
        .filter(|l| *l > activated_at)
        .unwrap_or(activated_at);
    last + idle_timeout
}

/// Is the grant idle at `now`?
pub fn is_idle(
    activity: Option<&Activity>,
    activated_at: DateTime<Utc>,
    idle_timeout: Duration,
    now: DateTime<Utc>,
) -> bool {
    now >= idle_at(activity, activated_at, idle_timeout)
}

/// The record of a request when no audit ingest is configured: says so, counts nothing.
pub fn unavailable() -> Activity {
    Activity {
        source: ActivitySource::Unavailable,
        ..Activity::default()
    }
}
