//! What happened to a request, said once: the change of status a reconcile wrote (or a deletion,
//! a stuck request, a binding removed by the guard) becomes [`Occurrence`]s, and each of them is
//! the Event, the audit line and the notification together. Every writer records through these,
//! so the three never disagree and nothing parses one back out of another.
use chrono::{DateTime, Utc};

use crate::api::{ActivationRequestStatus, Phase};
use crate::time::from_k8s;

use super::lifecycle::Step;
use super::reasons;

/// The audit line's `decision`: what happened, in the words of the audit stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditDecision {
    /// The request was received.
    Requested,
    /// Enough approvers approved.
    Approved,
    /// Approved, waiting for its start time.
    Scheduled,
    /// The bindings exist.
    Activated,
    Expired,
    Cancelled,
    Revoked,
    Denied,
    Failed,
    /// The request object was deleted; its grant ended with it.
    Deleted,
    /// The controller cannot move the request on until someone acts.
    Stuck,
    /// A managed binding of an ended grant, removed by the sweeper.
    Swept,
    /// A managed-labelled binding no request accounts for, removed.
    RemovedIllegitimateBinding,
    /// At a grant's end: objects made while it ran that keep giving access.
    FootholdsFound,
    /// The foothold remover deleted one of a grant's footholds (the role says `Remove`).
    FootholdRemoved,
    /// The foothold remover did not delete a foothold its verdict named: the object is not one
    /// any more, or the API server refused.
    FootholdKept,
    /// An ended request's whole record, exported before history retention deletes it.
    HistoryExported,
    /// The referenced role of an Active grant now allows less than when it was made; the grant
    /// is kept (a widening ends it: `revoked`, reason `RoleChanged`).
    RoleNarrowed,
    /// One API request made under a grant (from the API server's audit events).
    Activity,
    /// At a grant's end: the audit record shows it was never used (over-provisioning).
    NeverUsed,
    /// An AccessReview's items were filled: open for decisions.
    ReviewOpened,
    /// An AccessReview reached its due time: outcomes recorded.
    ReviewClosed,
    /// A closed AccessReview removed a subject from an Eligibility.
    ReviewRemoved,
    /// A schedule created the next AccessReview.
    ReviewScheduled,
}

impl AuditDecision {
    /// The value of the audit line's `decision` field (a documented, stable vocabulary).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Requested => "requested",
            AuditDecision::Approved => "approved",
            AuditDecision::Scheduled => "scheduled",
            AuditDecision::Activated => "activated",
            AuditDecision::Expired => "expired",
            AuditDecision::Cancelled => "cancelled",
            AuditDecision::Revoked => "revoked",
            AuditDecision::Denied => "denied",
            AuditDecision::Failed => "failed",
            AuditDecision::Deleted => "deleted",
            AuditDecision::Stuck => "stuck",
            AuditDecision::Swept => "swept",
            AuditDecision::RemovedIllegitimateBinding => "removed-illegitimate-binding",
            AuditDecision::FootholdsFound => "footholds-found",
            AuditDecision::FootholdRemoved => "foothold-removed",
            AuditDecision::FootholdKept => "foothold-kept",
            AuditDecision::HistoryExported => "history-exported",
            AuditDecision::RoleNarrowed => "role-narrowed",
            AuditDecision::Activity => "activity",
            AuditDecision::NeverUsed => "never-used",
            AuditDecision::ReviewOpened => "review-opened",
            AuditDecision::ReviewClosed => "review-closed",
            AuditDecision::ReviewRemoved => "review-removed",
            AuditDecision::ReviewScheduled => "review-scheduled",
        }
    }
}

/// Normal or Warning, as Kubernetes Events have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// The Event an occurrence publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    pub severity: Severity,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// One thing that happened, with everything its records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub decision: AuditDecision,
    /// The Event on the object (`None`: the audit line only, e.g. "requested" when the outcome's
    /// own Event follows at once).
    pub event: Option<EventNote>,
    /// The machine-readable reason on the audit line and in the notification.
    pub reason: String,
    pub message: String,
    /// When the grant ends, once known.
    pub until: Option<DateTime<Utc>>,
    pub approvers: Vec<String>,
    pub break_glass: bool,
    /// Whether the notification routes hear of it.
    pub notified: bool,
}

impl Occurrence {
    fn plain(decision: AuditDecision, reason: &str, message: &str) -> Self {
        Self {
            decision,
            event: None,
            reason: reason.to_string(),
            message: message.to_string(),
            until: None,
            approvers: vec![],
            break_glass: false,
            notified: false,
        }
    }
}

fn event(severity: Severity, reason: &'static str, action: &'static str, note: &str) -> EventNote {
    EventNote {
        severity,
        reason,
        action,
        note: note.to_string(),
    }
}

/// Was this step an activation through break-glass?
pub fn is_break_glass(step: &Step) -> bool {
    matches!(step, Step::Activate { reason, .. } if *reason == reasons::BREAK_GLASS)
}

/// What a status write from `old` to `new` (deciding `step`) means, in the order to record it.
/// Nothing when the phase did not change.
pub fn of_status_change(
    old: &ActivationRequestStatus,
    new: &ActivationRequestStatus,
    step: &Step,
) -> Vec<Occurrence> {
    let Some(phase) = new.phase.filter(|p| old.phase != Some(*p)) else {
        return role_narrowed(old, new).into_iter().collect();
    };
    let status_reason = new.reason.clone().unwrap_or_default();
    let message = new.message.clone().unwrap_or_default();
    let until = new.expires_at.as_ref().map(from_k8s);
    let approvers: Vec<String> = match step {
        Step::Wait { tally, .. }
        | Step::Activate { tally, .. }
        | Step::KeepActive { tally, .. } => tally.approved_by.clone(),
        Step::End { .. } | Step::Settled => vec![],
    };
    let break_glass =
        phase == Phase::Active && (is_break_glass(step) || status_reason == reasons::BREAK_GLASS);
    let mut happened = Vec::new();

    let approved_now = !approvers.is_empty()
        && matches!(phase, Phase::Scheduled | Phase::Active)
        && !matches!(old.phase, Some(Phase::Scheduled | Phase::Active));
    if approved_now {
        let note = format!("approved by {}", approvers.join(", "));
        happened.push(Occurrence {
            event: Some(event(Severity::Normal, "Approved", "Approve", &note)),
            until,
            approvers: approvers.clone(),
            notified: true,
            ..Occurrence::plain(AuditDecision::Approved, reasons::APPROVED, &note)
        });
    }
    // Decided on first sight (activated, denied…): an audit line for the request itself, and one
    // Event for the outcome below — a separate Event would be an API write saying nothing new.
    // Approvers are told about requests that wait for them, not about ones decided at once.
    if old.phase.is_none() && phase != Phase::Pending {
        happened.push(Occurrence::plain(
            AuditDecision::Requested,
            "Requested",
            "request received",
        ));
    }
    let (decision, severity, event_reason, action) = match phase {
        Phase::Pending => (
            AuditDecision::Requested,
            Severity::Normal,
            "Requested",
            "Request",
        ),
        Phase::Scheduled => (
            AuditDecision::Scheduled,
            Severity::Normal,
            "Scheduled",
            "Schedule",
        ),
        Phase::Active if break_glass => (
            AuditDecision::Activated,
            Severity::Warning,
            "BreakGlassActivated",
            "Activate",
        ),
        Phase::Active => (
            AuditDecision::Activated,
            Severity::Normal,
            "Activated",
            "Activate",
        ),
        Phase::Expired => (
            AuditDecision::Expired,
            Severity::Normal,
            "Expired",
            "Revoke",
        ),
        Phase::Cancelled => (
            AuditDecision::Cancelled,
            Severity::Normal,
            "Cancelled",
            "Revoke",
        ),
        Phase::Revoked => (
            AuditDecision::Revoked,
            Severity::Normal,
            "Revoked",
            "Revoke",
        ),
        Phase::Denied => (AuditDecision::Denied, Severity::Warning, "Denied", "Deny"),
        Phase::Failed => (AuditDecision::Failed, Severity::Warning, "Failed", "Fail"),
    };
    let notified = decision != AuditDecision::Scheduled && status_reason != reasons::EXTENDED;
    let audit_reason = if break_glass {
        reasons::BREAK_GLASS.to_string()
    } else {
        status_reason
    };
    happened.push(Occurrence {
        decision,
        event: Some(event(severity, event_reason, action, &message)),
        reason: audit_reason,
        message,
        until,
        approvers,
        break_glass,
        // Scheduling is not news to anyone (the approval before it was), nor is a grant handing
        // over to its extension (the extension's activation is).
        notified,
    });
    happened
}

/// The request was deleted while its grant ran: the bindings went first.
/// The `RoleNarrowed` condition turned True, or now names other removals: a Normal Event and an
/// audit line (the grant goes on, so nobody is notified).
fn role_narrowed(
    old: &ActivationRequestStatus,
    new: &ActivationRequestStatus,
) -> Option<Occurrence> {
    use crate::api::conditions::ROLE_NARROWED;
    let find = |s: &ActivationRequestStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == ROLE_NARROWED && c.status == "True")
            .map(|c| c.message.clone())
    };
    let message = find(new)?;
    if find(old).as_deref() == Some(message.as_str()) {
        return None;
    }
    Some(Occurrence {
        event: Some(event(
            Severity::Normal,
            reasons::ROLE_NARROWED,
            "Review",
            &message,
        )),
        ..Occurrence::plain(
            AuditDecision::RoleNarrowed,
            reasons::ROLE_NARROWED,
            &message,
        )
    })
}

pub fn deleted_with_grant() -> Occurrence {
    let message = "request deleted: bindings revoked";
    Occurrence {
        event: Some(event(Severity::Normal, "Revoked", "Revoke", message)),
        notified: true,
        ..Occurrence::plain(AuditDecision::Deleted, "RequestDeleted", message)
    }
}

/// The controller cannot move the request on (`reason` says why) until someone acts.
pub fn stuck(reason: &'static str, message: &str) -> Occurrence {
    Occurrence {
        event: Some(event(Severity::Warning, reason, "Reconcile", message)),
        ..Occurrence::plain(AuditDecision::Stuck, reason, message)
    }
}

/// A managed-labelled binding was removed: an ended grant's leftover (`Swept`, audit only) or one
/// no request accounts for (a Warning Event on the binding, `note` saying what it granted).
pub fn binding_removed(
    leftover: bool,
    reason: &'static str,
    message: &str,
    until: Option<DateTime<Utc>>,
    note: &str,
) -> Occurrence {
    if leftover {
        return Occurrence {
            until,
            ..Occurrence::plain(AuditDecision::Swept, reason, message)
        };
    }
    Occurrence {
        event: Some(event(
            Severity::Warning,
            reasons::ILLEGITIMATE_BINDING_REMOVED,
            "Revoke",
            note,
        )),
        until,
        ..Occurrence::plain(AuditDecision::RemovedIllegitimateBinding, reason, message)
    }
}

/// Footholds found at a grant's end (`message` lists them): a Warning Event, an audit line, and
/// the security audience's notification.
pub fn footholds_found(message: &str) -> Occurrence {
    Occurrence {
        event: Some(event(
            Severity::Warning,
            reasons::FOOTHOLDS_FOUND,
            "Review",
            message,
        )),
        notified: true,
        ..Occurrence::plain(
            AuditDecision::FootholdsFound,
            reasons::FOOTHOLDS_FOUND,
            message,
        )
    }
}

/// At a grant's end, when the audit record shows it was never used: a Normal Event `NeverUsed`
/// and an audit line (the role may grant more than people need).
pub fn never_used(message: &str) -> Occurrence {
    Occurrence {
        event: Some(event(
            Severity::Normal,
            reasons::NEVER_USED,
            "Review",
            message,
        )),
        ..Occurrence::plain(AuditDecision::NeverUsed, reasons::NEVER_USED, message)
    }
}
