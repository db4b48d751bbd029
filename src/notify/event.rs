//! What is notified: one request's phase change.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::AuditRecord;
use crate::policy::transition::AuditDecision;

/// The kinds of event a route can name (the keys of `routes:` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// A request was received and waits for approval.
    Requested,
    /// Enough approvers approved.
    Approved,
    /// An approver denied, or validation refused the request.
    Denied,
    /// The binding exists; the requester has the role.
    Activated,
    /// The grant (or the wait for approval) ran out.
    Expired,
    /// The requester ended the grant early.
    Cancelled,
    /// The grant was taken away (denial after activation, eligibility or role removed, deletion).
    Revoked,
    /// The operator could not process the request.
    Failed,
    /// A role was activated through break-glass, without approval.
    BreakGlass,
    /// A grant left footholds behind: objects made while it ran that keep giving access.
    Footholds,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Requested,
        EventKind::Approved,
        EventKind::Denied,
        EventKind::Activated,
        EventKind::Expired,
        EventKind::Cancelled,
        EventKind::Revoked,
        EventKind::Failed,
        EventKind::BreakGlass,
        EventKind::Footholds,
    ];

    /// The name used in the config, the payloads and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Requested => "requested",
            EventKind::Approved => "approved",
            EventKind::Denied => "denied",
            EventKind::Activated => "activated",
            EventKind::Expired => "expired",
            EventKind::Cancelled => "cancelled",
            EventKind::Revoked => "revoked",
            EventKind::Failed => "failed",
            EventKind::BreakGlass => "breakGlass",
            EventKind::Footholds => "footholds",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The event routes hear of for an audit decision; an activation through break-glass is
    /// [`EventKind::BreakGlass`], a deletion that ended a grant [`EventKind::Revoked`]. Decisions
    /// nobody is told about (scheduling, a stuck request, the sweeper's work) give `None`.
    pub fn of(decision: AuditDecision, break_glass: bool) -> Option<Self> {
        Some(match decision {
            AuditDecision::Requested => EventKind::Requested,
            AuditDecision::Approved => EventKind::Approved,
            AuditDecision::Denied => EventKind::Denied,
            AuditDecision::Activated if break_glass => EventKind::BreakGlass,
            AuditDecision::Activated => EventKind::Activated,
            AuditDecision::Expired => EventKind::Expired,
            AuditDecision::Cancelled => EventKind::Cancelled,
            AuditDecision::Revoked | AuditDecision::Deleted => EventKind::Revoked,
            AuditDecision::Failed => EventKind::Failed,
            AuditDecision::FootholdsFound => EventKind::Footholds,
            AuditDecision::Scheduled
            | AuditDecision::Stuck
            | AuditDecision::Swept
            | AuditDecision::RemovedIllegitimateBinding
            | AuditDecision::HistoryExported
            // The grant goes on; a widening ends it and is notified as `revoked`.
            | AuditDecision::RoleNarrowed
            | AuditDecision::Activity
            | AuditDecision::NeverUsed
            | AuditDecision::ReviewOpened
            | AuditDecision::ReviewClosed
            | AuditDecision::ReviewRemoved
            | AuditDecision::ReviewScheduled
            // Written by the foothold remover, which sends no notifications: the Event and
            // the audit line are its record.
            | AuditDecision::FootholdRemoved
            | AuditDecision::FootholdKept => return None,
        })
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification: the same facts as the audit line, plus when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: EventKind,
    /// The ActivationRequest's name.
    pub request: String,
    pub requester: String,
    /// The PrivilegedRole's name.
    pub role: String,
    /// Empty for a cluster-wide grant.
    pub namespaces: Vec<String>,
    /// When the grant ends, once known.
    pub until: Option<DateTime<Utc>>,
    pub approvers: Vec<String>,
    /// The machine-readable reason (`status.reason`).
    pub reason: String,
    /// The human-readable message (`status.message`).
    pub message: String,
    pub break_glass: bool,
    /// When the transition was recorded.
    pub time: DateTime<Utc>,
}

impl Notification {
    /// The notification for an audit record, so the controller builds the facts once.
    pub fn from_audit(kind: EventKind, r: &AuditRecord<'_>, time: DateTime<Utc>) -> Self {
        Self {
            kind,
            request: r.request.to_string(),
            requester: r.requester.to_string(),
            role: r.role.to_string(),
            namespaces: r.namespaces.to_vec(),
            until: r.until,
            approvers: r.approvers.to_vec(),
            reason: r.reason.to_string(),
            message: r.message.to_string(),
            break_glass: r.break_glass,
            time,
        }
    }
}
