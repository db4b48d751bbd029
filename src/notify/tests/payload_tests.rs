use crate::policy::transition::AuditDecision;
use serde_json::json;

use super::super::payload::{self, slack_escape, summary};
use super::*;
use crate::audit::AuditRecord;

#[test]
fn the_webhook_body_is_the_documented_json() {
    let n = notification(EventKind::Approved);
    let body = serde_json::to_value(payload::webhook(&n, Some("prod-eu-1"))).unwrap();
    assert_eq!(
        body,
        json!({
            "version": "kubepim.io/notification/v1",
            "event": "approved",
            "cluster": "prod-eu-1",
            "request": "alice-payments-x7k2p",
            "requester": "alice",
            "role": "payments-admin",
            "namespaces": ["payments"],
            "until": "2025-05-01T10:30:00Z",
            "approvers": ["bob"],
            "reason": "Approved",
            "message": "approved by bob",
            "breakGlass": false,
            "time": "2025-05-01T10:00:00Z",
            "summary": "[prod-eu-1] alice's request for payments-admin in payments was approved by bob"
        })
    );
    // Without a cluster the field is absent; without an end, `until` is null.
    let mut n = notification(EventKind::Requested);
    n.until = None;
    let body = serde_json::to_value(payload::webhook(&n, None)).unwrap();
    assert!(body.get("cluster").is_none());
    assert_eq!(body["until"], json!(null));
    assert_eq!(body["event"], "requested");
}

#[test]
fn the_slack_body_has_text_and_minimal_blocks() {
    let n = notification(EventKind::Activated);
    let body = payload::slack(&n, Some("prod"));
    assert_eq!(
        body,
        json!({
            "text": ":unlock: [prod] payments-admin in payments is active for alice until 2025-05-01 10:30 UTC",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": ":unlock: *Access active*"}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*Requester*\nalice"},
                    {"type": "mrkdwn", "text": "*Role*\npayments-admin"},
                    {"type": "mrkdwn", "text": "*Namespaces*\npayments"},
                    {"type": "mrkdwn", "text": "*Request*\nalice-payments-x7k2p"},
                    {"type": "mrkdwn", "text": "*Until*\n2025-05-01 10:30:00 UTC"},
                    {"type": "mrkdwn", "text": "*Approvers*\nbob"},
                    {"type": "mrkdwn", "text": "*Cluster*\nprod"}
                ]},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Approved*: approved by bob"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "kubepim · 2025-05-01T10:00:00Z"}]}
            ]
        })
    );
}

#[test]
fn user_text_cannot_mention_or_link_in_slack() {
    let mut n = notification(EventKind::Requested);
    n.message = "urgent <!channel> see <https://evil.example|here> & more".into();
    n.requester = "<@U123>".into();
    let text = payload::slack(&n, None).to_string();
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<@U123>"), "{text}");
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    assert!(text.contains("&amp; more"), "{text}");
    assert_eq!(slack_escape("a<b>&c"), "a&lt;b&gt;&amp;c");
}

#[test]
fn long_messages_are_cut_to_slack_limits() {
    let mut n = notification(EventKind::Denied);
    n.message = "x".repeat(10_000);
    let body = payload::slack(&n, None);
    let detail = body["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(detail.chars().count() <= 2900);
    assert!(detail.ends_with('…'));
}

#[test]
fn every_event_has_a_plain_summary() {
    let mut n = notification(EventKind::Requested);
    let cases = [
        (
            EventKind::Requested,
            "alice requested payments-admin in payments and waits for approval",
        ),
        (
            EventKind::Approved,
            "alice's request for payments-admin in payments was approved by bob",
        ),
        (
            EventKind::Denied,
            "alice's request for payments-admin in payments was denied",
        ),
        (
            EventKind::Activated,
            "payments-admin in payments is active for alice until 2025-05-01 10:30 UTC",
        ),
        (
            EventKind::Expired,
            "alice's request for payments-admin in payments expired",
        ),
        (
            EventKind::Cancelled,
            "alice cancelled their request for payments-admin in payments",
        ),
        (
            EventKind::Revoked,
            "alice's access to payments-admin in payments was revoked",
        ),
        (
            EventKind::Failed,
            "alice's request for payments-admin in payments failed",
        ),
        (
            EventKind::BreakGlass,
            "BREAK-GLASS: alice activated payments-admin in payments without approval until 2025-05-01 10:30 UTC",
        ),
    ];
    for (kind, expected) in cases {
        n.kind = kind;
        assert_eq!(summary(&n, None), expected);
    }
    n.namespaces.clear();
    n.kind = EventKind::Revoked;
    assert_eq!(
        summary(&n, Some("c1")),
        "[c1] alice's access to payments-admin cluster-wide was revoked"
    );
}

#[test]
fn event_kinds_are_named_as_in_the_config() {
    let names: Vec<String> = EventKind::ALL
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "requested",
            "approved",
            "denied",
            "activated",
            "expired",
            "cancelled",
            "revoked",
            "failed",
            "breakGlass",
            "footholds"
        ]
    );
    for k in EventKind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        assert_eq!(EventKind::ALL[k.index()], k);
    }
}

#[test]
fn audit_decisions_map_to_events() {
    assert_eq!(
        EventKind::of(AuditDecision::Activated, false),
        Some(EventKind::Activated)
    );
    assert_eq!(
        EventKind::of(AuditDecision::Activated, true),
        Some(EventKind::BreakGlass)
    );
    assert_eq!(
        EventKind::of(AuditDecision::Expired, true),
        Some(EventKind::Expired)
    );
    assert_eq!(
        EventKind::of(AuditDecision::Requested, false),
        Some(EventKind::Requested)
    );
    assert_eq!(EventKind::of(AuditDecision::Scheduled, false), None);
    assert_eq!(
        EventKind::of(AuditDecision::Deleted, false),
        Some(EventKind::Revoked)
    );

    let namespaces = vec!["payments".to_string()];
    let approvers = vec!["bob".to_string()];
    let record = AuditRecord {
        decision: AuditDecision::Approved,
        request: "alice-payments-x7k2p",
        requester: "alice",
        role: "payments-admin",
        namespaces: &namespaces,
        until: notification(EventKind::Approved).until,
        approvers: &approvers,
        reason: "Approved",
        message: "approved by bob",
        break_glass: false,
    };
    let time = notification(EventKind::Approved).time;
    assert_eq!(
        Notification::from_audit(EventKind::Approved, &record, time),
        notification(EventKind::Approved)
    );
}
