//! The audit stream: one structured line per decision on the `kubepim::audit` target, so it can
//! be routed to a SIEM apart from operational logs.
use chrono::{DateTime, Utc};

use crate::policy::transition::AuditDecision;

/// Target of every audit line (`RUST_LOG=kubepim::audit=info`).
pub const TARGET: &str = "kubepim::audit";

/// The version of the audit lines' fields (`docs/audit.md`); bumped on any incompatible change.
pub const SCHEMA: &str = "kubepim.io/audit/v1";

/// One decision about a request.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    /// What happened.
    pub decision: AuditDecision,
    pub request: &'a str,
    pub requester: &'a str,
    pub role: &'a str,
    pub namespaces: &'a [String],
    pub until: Option<DateTime<Utc>>,
    pub approvers: &'a [String],
    pub reason: &'a str,
    pub message: &'a str,
    pub break_glass: bool,
}

/// Writes the record as one line on the audit target.
pub fn record(r: &AuditRecord<'_>) {
    let until = r.until.map(|t| t.to_rfc3339()).unwrap_or_default();
    let namespaces = r.namespaces.join(",");
    let approvers = r.approvers.join(",");
    if r.break_glass {
        tracing::warn!(
            target: TARGET,
            schema = SCHEMA, decision = r.decision.as_str(), request = r.request, requester = r.requester, role = r.role,
            namespaces = %namespaces, until = %until, approvers = %approvers, reason = r.reason,
            break_glass = true, "{}", r.message
        );
    } else {
        tracing::info!(
            target: TARGET,
            schema = SCHEMA, decision = r.decision.as_str(), request = r.request, requester = r.requester, role = r.role,
            namespaces = %namespaces, until = %until, approvers = %approvers, reason = r.reason,
            break_glass = false, "{}", r.message
        );
    }
}

/// Exports an ended request's whole record (see [`crate::policy::retention::export_record`]) as
/// one line with the usual fields plus `record`, before history retention deletes the request.
/// Written synchronously: the deletion is only attempted after this returns.
pub fn export(r: &AuditRecord<'_>, record: &serde_json::Value) {
    let until = r.until.map(|t| t.to_rfc3339()).unwrap_or_default();
    let namespaces = r.namespaces.join(",");
    let approvers = r.approvers.join(",");
    tracing::info!(
        target: TARGET,
        schema = SCHEMA, decision = AuditDecision::HistoryExported.as_str(), request = r.request, requester = r.requester, role = r.role,
        namespaces = %namespaces, until = %until, approvers = %approvers, reason = r.reason,
        break_glass = r.break_glass, record = %record, "{}", r.message
    );
}

/// One API request attributed to a grant (from the API server's audit events), so that a SIEM
/// can reconstruct the session from the audit stream alone.
#[derive(Debug, Clone)]
pub struct ActivityRecord<'a> {
    pub request: &'a str,
    pub requester: &'a str,
    pub role: &'a str,
    pub used: &'a crate::policy::activity::Use,
}

/// Writes an attributed API request as one line (`decision="activity"`). The fields every line
/// has are there (those that do not apply empty), so one parser reads every line.
pub fn activity(r: &ActivityRecord<'_>) {
    let u = r.used;
    tracing::info!(
        target: TARGET,
        schema = SCHEMA, decision = AuditDecision::Activity.as_str(), request = r.request, requester = r.requester, role = r.role,
        namespaces = "", until = "", approvers = "", reason = "", break_glass = false,
        verb = %u.verb, resource = %u.resource, namespace = u.namespace.as_deref().unwrap_or(""),
        name = u.name.as_deref().unwrap_or(""), code = u.code.unwrap_or(0), audit_id = %u.audit_id,
        at = %u.at.to_rfc3339(), "{} {}", u.verb, u.resource
    );
}
