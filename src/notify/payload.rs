//! The two body formats a sink can receive.
//!
//! **`webhook`** — `POST` with `Content-Type: application/json` and this body (`until` is `null`
//! until the grant's end is known; times are RFC 3339 UTC; `cluster` only when configured):
//!
//! ```json
//! {
//!   "version": "kubepim.io/notification/v1",
//!   "event": "approved",
//!   "cluster": "prod-eu-1",
//!   "request": "alice-payments-x7k2p",
//!   "requester": "alice",
//!   "role": "payments-admin",
//!   "namespaces": ["payments"],
//!   "until": "2025-05-01T10:30:00Z",
//!   "approvers": ["bob"],
//!   "reason": "Approved",
//!   "message": "approved by bob",
//!   "breakGlass": false,
//!   "time": "2025-05-01T10:00:00Z",
//!   "summary": "[prod-eu-1] alice's request for payments-admin in payments was approved by bob"
//! }
//! ```
//!
//! **`slack`** — a Slack incoming-webhook body (also understood by Mattermost and Rocket.Chat):
//! `text` is the one-line summary (shown in notifications), `blocks` a header line, the facts as
//! fields, the reason and message, and the time. Everything a user typed is escaped, so a
//! justification cannot mention `@channel` or forge a link.
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::event::{EventKind, Notification};

/// The `version` field of the webhook body; changes only with an incompatible format.
pub const WEBHOOK_VERSION: &str = "kubepim.io/notification/v1";

/// The generic webhook body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload<'a> {
    pub version: &'static str,
    pub event: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<&'a str>,
    pub request: &'a str,
    pub requester: &'a str,
    pub role: &'a str,
    pub namespaces: &'a [String],
    pub until: Option<String>,
    pub approvers: &'a [String],
    pub reason: &'a str,
    pub message: &'a str,
    pub break_glass: bool,
    pub time: String,
    pub summary: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The webhook body for `n`.
pub fn webhook<'a>(n: &'a Notification, cluster: Option<&'a str>) -> WebhookPayload<'a> {
    WebhookPayload {
        version: WEBHOOK_VERSION,
        event: n.kind,
        cluster,
        request: &n.request,
        requester: &n.requester,
        role: &n.role,
        namespaces: &n.namespaces,
        until: n.until.map(rfc3339),
        approvers: &n.approvers,
        reason: &n.reason,
        message: &n.message,
        break_glass: n.break_glass,
        time: rfc3339(n.time),
        summary: summary(n, cluster),
    }
}

fn scope(n: &Notification) -> String {
    if n.namespaces.is_empty() {
        " cluster-wide".into()
    } else {
        format!(" in {}", n.namespaces.join(", "))
    }
}

fn until(n: &Notification) -> String {
    n.until
        .map(|t| format!(" until {}", t.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default()
}

/// One plain sentence saying what happened (the Slack `text` and the webhook `summary`).
pub fn summary(n: &Notification, cluster: Option<&str>) -> String {
    let who = &n.requester;
    let what = format!("{}{}", n.role, scope(n));
    let sentence = match n.kind {
        EventKind::Requested => format!("{who} requested {what} and waits for approval"),
        EventKind::Approved if n.approvers.is_empty() => {
            format!("{who}'s request for {what} was approved")
        }
        EventKind::Approved => format!(
            "{who}'s request for {what} was approved by {}",
            n.approvers.join(", ")
        ),
        EventKind::Denied => format!("{who}'s request for {what} was denied"),
        EventKind::Activated => format!("{what} is active for {who}{}", until(n)),
        EventKind::Expired => format!("{who}'s request for {what} expired"),
        EventKind::Cancelled => format!("{who} cancelled their request for {what}"),
        EventKind::Revoked => format!("{who}'s access to {what} was revoked"),
        EventKind::Failed => format!("{who}'s request for {what} failed"),
        EventKind::BreakGlass => format!(
            "BREAK-GLASS: {who} activated {what} without approval{}",
            until(n)
        ),
        EventKind::Footholds => format!(
            "{who}'s grant of {what} left objects that keep giving access: {}",
            n.message
        ),
    };
    match cluster {
        Some(c) => format!("[{c}] {sentence}"),
        None => sentence,
    }
}

fn emoji(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Requested => ":bell:",
        EventKind::Approved => ":white_check_mark:",
        EventKind::Denied => ":no_entry:",
        EventKind::Activated => ":unlock:",
        EventKind::Expired => ":hourglass:",
        EventKind::Cancelled => ":leftwards_arrow_with_hook:",
        EventKind::Revoked => ":lock:",
        EventKind::Failed => ":x:",
        EventKind::BreakGlass => ":rotating_light:",
        EventKind::Footholds => ":warning:",
    }
}

fn title(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Requested => "Access requested",
        EventKind::Approved => "Request approved",
        EventKind::Denied => "Request denied",
        EventKind::Activated => "Access active",
        EventKind::Expired => "Request expired",
        EventKind::Cancelled => "Request cancelled",
        EventKind::Revoked => "Access revoked",
        EventKind::Failed => "Request failed",
        EventKind::BreakGlass => "Break-glass activation",
        EventKind::Footholds => "Footholds left by a grant",
    }
}

/// Escapes the three characters Slack's mrkdwn treats as control (mentions, links).
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `text` to at most `max` characters, marking the cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn field(label: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", truncate(&slack_escape(value), 1900))})
}

/// The Slack incoming-webhook body for `n`.
pub fn slack(n: &Notification, cluster: Option<&str>) -> Value {
    let text = format!(
        "{} {}",
        emoji(n.kind),
        truncate(&slack_escape(&summary(n, cluster)), 2900)
    );
    let mut fields = vec![
        field("Requester", &n.requester),
        field("Role", &n.role),
        field(
            "Namespaces",
            &if n.namespaces.is_empty() {
                "(cluster-wide)".to_string()
            } else {
                n.namespaces.join(", ")
            },
        ),
        field("Request", &n.request),
    ];
    if let Some(t) = n.until {
        fields.push(field(
            "Until",
            &t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ));
    }
    if !n.approvers.is_empty() {
        fields.push(field("Approvers", &n.approvers.join(", ")));
    }
    if let Some(c) = cluster {
        fields.push(field("Cluster", c));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{} *{}*", emoji(n.kind), title(n.kind))}}),
        json!({"type": "section", "fields": fields}),
    ];
    if !n.reason.is_empty() || !n.message.is_empty() {
        let detail = match (n.reason.is_empty(), n.message.is_empty()) {
            (false, false) => format!(
                "*{}*: {}",
                slack_escape(&n.reason),
                slack_escape(&n.message)
            ),
            (false, true) => format!("*{}*", slack_escape(&n.reason)),
            _ => slack_escape(&n.message),
        };
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&detail, 2900)}}),
        );
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("kubepim · {}", rfc3339(n.time))}]}));
    json!({"text": text, "blocks": blocks})
}

/// The serialised body a sink of `kind` receives.
pub fn body(kind: super::config::SinkKind, n: &Notification, cluster: Option<&str>) -> Vec<u8> {
    let value = match kind {
        super::config::SinkKind::Webhook => serde_json::to_value(webhook(n, cluster)),
        super::config::SinkKind::Slack => Ok(slack(n, cluster)),
    };
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_vec(&value.unwrap_or(Value::Null)).unwrap_or_default()
}
