//! Refusals explained: the API server's 400/403/409/422 message text (admission policies, the
//! webhook, RBAC) turned into one plain sentence, with the server's own message kept beside it.
//!
//! Matched on message text because that is all the API server returns: the policies' `reason` is
//! `Forbidden` for every rule. The needles are the fixed parts of the chart's `messageExpression`s
//! and the webhook's messages; an unknown message still reads well (kind `Other`).
use std::fmt;

/// What the caller tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Approve,
    Deny,
    Cancel,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Cancel => "cancel",
        }
    }
}

/// Why something was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The requester deciding on their own request.
    SelfApproval,
    /// Not among the role's approvers (or without the verb `approve` on it).
    NotAnApprover,
    /// This approver already recorded a decision; it cannot be changed.
    AlreadyDecided,
    /// The request has ended (Denied, Expired, Cancelled, Revoked, Failed): no more decisions.
    Terminal,
    /// ServiceAccounts never approve.
    ServiceAccount,
    /// Only the requester cancels.
    NotRequester,
    /// RBAC: the caller may not do this at all.
    NoPermission,
    /// The admission webhook could not be reached: an outage, not a decision.
    WebhookUnavailable,
    /// Fast feedback: the controller would deny this request (not eligible, too long, ...).
    RequestInvalid,
    /// A request of that name exists already.
    AlreadyExists,
    Other,
}

/// A refusal: its kind, a sentence for people, and what the server said (if it said anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub sentence: String,
    pub server: Option<String>,
}

impl Refusal {
    /// A refusal decided before anything was written (nothing from the server to quote).
    pub fn local(kind: RefusalKind, sentence: impl Into<String>) -> Self {
        Self {
            kind,
            sentence: sentence.into(),
            server: None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence)?;
        if let Some(server) = &self.server {
            write!(f, "\n  the API server said: {server}")?;
        }
        Ok(())
    }
}

/// Fixed parts of the messages, most specific first.
const NEEDLES: &[(&str, RefusalKind)] = &[
    (
        "cannot approve or deny your own request",
        RefusalKind::SelfApproval,
    ),
    (
        "may not approve or deny requests for PrivilegedRole",
        RefusalKind::NotAnApprover,
    ),
    (
        "has already recorded a decision",
        RefusalKind::AlreadyDecided,
    ),
    (
        "approvals after a terminal phase are refused",
        RefusalKind::Terminal,
    ),
    (
        "approvals after a cancel are refused",
        RefusalKind::Terminal,
    ),
    (
        "approvals are decisions of people",
        RefusalKind::ServiceAccount,
    ),
    (
        "a ServiceAccount cannot approve",
        RefusalKind::ServiceAccount,
    ),
    ("may cancel request", RefusalKind::NotRequester),
    ("only the requester may cancel", RefusalKind::NotRequester),
    ("failed calling webhook", RefusalKind::WebhookUnavailable),
];

/// Explains the API server's answer `code`/`message` to `op` on request `name`.
pub fn explain(op: Op, name: &str, code: u16, message: &str) -> Refusal {
    let kind = NEEDLES
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map(|(_, kind)| *kind)
        .unwrap_or_else(|| fallback_kind(op, code, message));
    Refusal {
        kind,
        sentence: sentence(kind, op, name, message),
        server: Some(message.to_string()),
    }
}

fn fallback_kind(op: Op, code: u16, message: &str) -> RefusalKind {
    let by_admission =
        message.contains("ValidatingAdmissionPolicy") || message.contains("admission webhook");
    match code {
        409 if op == Op::Create => RefusalKind::AlreadyExists,
        // RBAC says `User "x" cannot patch resource "activationrequests/status" ...`.
        403 if !by_admission && message.contains(" cannot ") => RefusalKind::NoPermission,
        // The webhook's fast feedback quotes the controller: `NotEligible: ...`.
        _ if op == Op::Create && by_admission => RefusalKind::RequestInvalid,
        _ => RefusalKind::Other,
    }
}

fn sentence(kind: RefusalKind, op: Op, name: &str, message: &str) -> String {
    let verb = op.verb();
    match kind {
        RefusalKind::SelfApproval => format!(
            "You cannot {verb} {name}: it is your own request. Another approver of its role has to decide."
        ),
        RefusalKind::NotAnApprover => {
            format!("You cannot {verb} {name}: you are not an approver of its PrivilegedRole.")
        }
        RefusalKind::AlreadyDecided => {
            format!("You have already decided on {name}; a decision cannot be changed or repeated.")
        }
        RefusalKind::Terminal => format!(
            "{name} has already ended (denied, expired, cancelled, revoked or failed): it takes no more decisions."
        ),
        RefusalKind::ServiceAccount => {
            format!("A ServiceAccount cannot {verb} requests: approvals are decisions of people.")
        }
        RefusalKind::NotRequester => {
            format!("Only the requester of {name} can cancel it.")
        }
        RefusalKind::NoPermission => format!(
            "You are not allowed to {verb} {name}: your RBAC roles do not permit it (ask for kubepim's requester or approver role)."
        ),
        RefusalKind::WebhookUnavailable => format!(
            "kubepim's admission webhook could not be reached, so the API server refused to {verb} {name}. This is an outage, not a decision: try again later."
        ),
        RefusalKind::RequestInvalid => {
            format!(
                "The request would be denied, so it was not created: {}",
                controller_words(message)
            )
        }
        RefusalKind::AlreadyExists => {
            format!("A request named {name} already exists; choose another --name or leave it out.")
        }
        RefusalKind::Other => format!("The API server refused to {verb} {name}."),
    }
}

/// The part of an admission message after the `denied the request: ` preamble.
fn controller_words(message: &str) -> &str {
    message
        .rsplit_once("denied the request: ")
        .map_or(message, |(_, rest)| rest)
}

#[cfg(test)]
#[path = "refusal_tests.rs"]
mod tests;
