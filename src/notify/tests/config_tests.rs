use super::super::config::Audience;
use super::*;

const SLACK_URL: &str = "https://hooks.slack.com/services/T000/B000/XSECRETX";
const SIEM_URL: &str = "https://siem.example.com/ingest?token=QSECRETQ";

fn full_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("APPROVERS_URL", SLACK_URL),
        ("SIEM_URL", SIEM_URL),
        (
            "SECURITY_URL",
            "https://hooks.slack.com/services/T000/B001/YSECRETY",
        ),
        ("SIEM_TOKEN", "Bearer HSECRETH"),
    ]
}

const FULL: &str = r#"
cluster: prod-eu-1
queueSize: 64
sinks:
  - name: approvers-chat
    type: slack
    urlFrom: {env: APPROVERS_URL}
  - name: siem
    type: webhook
    urlFrom: {env: SIEM_URL}
    headers:
      - name: Authorization
        valueFrom: {env: SIEM_TOKEN}
      - name: X-Source
        value: kubepim
  - name: security-chat
    type: slack
    urlFrom: {env: SECURITY_URL}
audiences:
  approvers: [approvers-chat]
  requester: [approvers-chat]
  audit: [siem]
  security: [security-chat]
routes:
  failed: [siem, security-chat]
  cancelled: []
"#;

#[test]
fn a_full_config_resolves_sinks_headers_and_routes() {
    let config = parse(FULL, &full_env()).unwrap();
    assert_eq!(config.cluster.as_deref(), Some("prod-eu-1"));
    assert_eq!(config.queue_size, 64);
    let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["approvers-chat", "siem", "security-chat"]);
    assert_eq!(config.sinks[0].kind, crate::notify::SinkKind::Slack);
    assert_eq!(config.sinks[1].kind, crate::notify::SinkKind::Webhook);
    assert_eq!(config.sinks[1].url.redacted(), "https://siem.example.com");
    assert_eq!(config.sinks[1].headers["authorization"], "Bearer HSECRETH");
    assert_eq!(config.sinks[1].headers["x-source"], "kubepim");

    let routes = |k| config.routes_for(k);
    assert_eq!(routes(EventKind::Requested), ["approvers-chat"]);
    assert_eq!(routes(EventKind::Approved), ["approvers-chat"]);
    assert_eq!(routes(EventKind::Denied), ["approvers-chat"]);
    assert_eq!(routes(EventKind::Activated), ["siem"]);
    assert_eq!(routes(EventKind::Expired), ["siem"]);
    assert_eq!(routes(EventKind::Revoked), ["siem"]);
    assert_eq!(routes(EventKind::BreakGlass), ["security-chat", "siem"]);
    // Overrides replace the default.
    assert_eq!(routes(EventKind::Failed), ["siem", "security-chat"]);
    assert!(routes(EventKind::Cancelled).is_empty());
    assert!(config.unused_sinks().is_empty());
}

#[test]
fn default_routes_follow_the_documented_table() {
    use Audience::*;
    let table = [
        (EventKind::Requested, &[Approvers][..]),
        (EventKind::Approved, &[Requester]),
        (EventKind::Denied, &[Requester]),
        (EventKind::Activated, &[Audit]),
        (EventKind::Expired, &[Audit]),
        (EventKind::Cancelled, &[Audit]),
        (EventKind::Revoked, &[Audit]),
        (EventKind::Failed, &[Audit]),
        (EventKind::BreakGlass, &[Security, Audit]),
    ];
    for (kind, audiences) in table {
        assert_eq!(Audience::defaults_for(kind), audiences, "{kind}");
    }
}

#[test]
fn unmapped_audiences_receive_nothing_and_unused_sinks_are_listed() {
    let yaml = r#"
sinks:
  - {name: audit, type: webhook, urlFrom: {env: U}}
  - {name: spare, type: slack, urlFrom: {env: U}}
audiences:
  audit: [audit]
"#;
    let config = parse(yaml, &[("U", "http://10.0.0.1:8080/hook")]).unwrap();
    assert!(config.routes_for(EventKind::Requested).is_empty());
    assert!(config.routes_for(EventKind::Approved).is_empty());
    assert_eq!(config.routes_for(EventKind::BreakGlass), ["audit"]);
    assert_eq!(config.unused_sinks(), ["spare"]);
    assert_eq!(config.queue_size, crate::notify::config::DEFAULT_QUEUE_SIZE);
}

#[test]
fn urls_and_headers_are_read_from_files_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/url"), format!("{SLACK_URL}\n")).unwrap();
    std::fs::write(dir.path().join("token"), "Bearer HSECRETH\n").unwrap();
    let path = dir.path().join("notifications.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
sinks:
  - name: chat
    type: slack
    urlFrom: {{file: secrets/url}}
    headers:
      - name: Authorization
        valueFrom: {{file: {}}}
audiences: {{approvers: [chat]}}
"#,
            dir.path().join("token").display()
        ),
    )
    .unwrap();
    let config = NotifyConfig::load(&path).unwrap();
    assert_eq!(config.sinks[0].url.redacted(), "https://hooks.slack.com");
    assert!(config.sinks[0].url.uri().to_string().ends_with("/XSECRETX"));
    assert_eq!(config.sinks[0].headers["authorization"], "Bearer HSECRETH");
    assert_eq!(config.routes_for(EventKind::Requested), ["chat"]);
}

#[test]
fn a_missing_config_file_is_a_read_error_naming_it() {
    let err = NotifyConfig::load("/nonexistent/kubepim/notify.yaml").unwrap_err();
    assert!(matches!(err, NotifyError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/kubepim/notify.yaml"),
        "{err}"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let config = parse(FULL, &full_env()).unwrap();
    let debug = format!("{config:?}");
    for secret in ["XSECRETX", "QSECRETQ", "YSECRETY", "HSECRETH", "services/"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("https://hooks.slack.com"), "{debug}");
}

#[test]
fn every_problem_is_reported_at_once_with_a_clear_message() {
    let yaml = r#"
queueSize: 0
sinks:
  - {name: chat, type: slack, urlFrom: {env: CHAT_URL}}
  - {name: chat, type: webhook, urlFrom: {env: CHAT_URL}}
  - {name: nourl, type: webhook}
  - {name: both, type: webhook, urlFrom: {env: CHAT_URL, file: /x}}
  - {name: unset, type: webhook, urlFrom: {env: NOT_SET}}
  - {name: nofile, type: webhook, urlFrom: {file: /nonexistent/kubepim/url}}
  - {name: "  ", type: webhook, urlFrom: {env: CHAT_URL}}
  - name: badheader
    type: webhook
    urlFrom: {env: CHAT_URL}
    headers:
      - {name: "Bad Header", value: x}
      - {name: X-Token}
audiences:
  approvers: [chat, ghost]
routes:
  failed: [phantom]
"#;
    let p = problems(yaml, &[("CHAT_URL", SLACK_URL)]);
    let expected = [
        "queueSize must be between 1 and 100000, not 0",
        "sink name \"chat\" is used more than once",
        "sink \"nourl\" has no URL: set `urlFrom: {file: PATH}` or `urlFrom: {env: VARIABLE}`",
        "sink \"both\" urlFrom: set exactly one of `file` and `env`",
        "sink \"unset\" urlFrom: environment variable NOT_SET is not set",
        "sink #7 has an empty name",
        "sink \"badheader\": \"Bad Header\" is not a valid header name",
        "sink \"badheader\" header x-token: set exactly one of `value` and `valueFrom`",
        "audiences.approvers names unknown sink \"ghost\"",
        "routes.failed names unknown sink \"phantom\"",
    ];
    for e in expected {
        assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
    }
    assert!(
        p.iter().any(|x| x
            .starts_with("sink \"nofile\" urlFrom: cannot read file /nonexistent/kubepim/url:")),
        "{p:#?}"
    );
    assert_eq!(p.len(), expected.len() + 1, "{p:#?}");
    let err = parse(yaml, &[("CHAT_URL", SLACK_URL)])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("notifications config /etc/kubepim/notifications.yaml is invalid:\n  - "),
        "{err}"
    );
    assert!(!err.contains("XSECRETX"), "{err}");
}

#[test]
fn a_bad_url_is_refused_without_quoting_it() {
    for (url, why) in [
        (
            "ftp://files.example.com/XSECRETX",
            "must use the http or https scheme",
        ),
        (
            "hooks.slack.com/services/XSECRETX",
            "is not an absolute URL",
        ),
        ("https://exa mple.com/XSECRETX", "is not a valid URL"),
        ("   ", "is empty"),
    ] {
        let yaml = "sinks: [{name: s, type: slack, urlFrom: {env: U}}]";
        let p = problems(yaml, &[("U", url)]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("sink \"s\""), "{p:?}");
        assert!(p[0].contains(why), "{url}: {p:?}");
        assert!(p[0].contains("environment variable U"), "{p:?}");
        assert!(!p[0].contains("XSECRETX"), "{p:?}");
    }
}

#[test]
fn a_literal_url_is_refused_with_advice_and_without_quoting_it() {
    let yaml = format!("sinks: [{{name: s, type: slack, url: \"{SLACK_URL}\"}}]");
    let p = problems(&yaml, &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("`url` is not accepted because sink URLs are secrets"),
        "{p:?}"
    );
    assert!(!p[0].contains("XSECRETX"), "{p:?}");
}

#[test]
fn parse_errors_name_the_field_and_never_quote_a_url() {
    // A URL where a map is expected: serde quotes the value in its message.
    let yaml = format!("sinks: [{{name: s, type: slack, urlFrom: \"{SLACK_URL}\"}}]");
    let err = parse(&yaml, &[]).unwrap_err();
    assert!(matches!(err, NotifyError::Parse { .. }), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("XSECRETX"), "{text}");

    for (yaml, needle) in [
        (
            "sinks: [{name: s, type: teams, urlFrom: {env: U}}]",
            "teams",
        ),
        ("routes: {approve: [s]}", "approve"),
        ("audiences: {admins: [s]}", "admins"),
        ("sink: []", "sink"),
    ] {
        let text = parse(yaml, &[]).unwrap_err().to_string();
        assert!(text.contains(needle), "{yaml}: {text}");
    }
}

#[test]
fn an_empty_config_has_no_sinks_and_no_routes() {
    let config = parse("sinks: []", &[]).unwrap();
    assert!(config.sinks.is_empty());
    for kind in EventKind::ALL {
        assert!(config.routes_for(kind).is_empty());
    }
}

#[test]
fn explicit_nulls_mean_absent() {
    // What a template writes for unset values.
    let yaml = r#"
cluster: null
queueSize: null
sinks:
  - {name: s, type: webhook, urlFrom: {env: U}, headers: null}
audiences: {approvers: null, requester: null, audit: [s], security: null}
routes: null
"#;
    let config = parse(yaml, &[("U", "https://example.com/x")]).unwrap();
    assert_eq!(config.cluster, None);
    assert_eq!(config.queue_size, crate::notify::config::DEFAULT_QUEUE_SIZE);
    assert!(config.sinks[0].headers.is_empty());
    assert_eq!(config.routes_for(EventKind::Expired), ["s"]);
    assert!(config.routes_for(EventKind::Requested).is_empty());
    let config = parse("sinks: null\naudiences: null", &[]).unwrap();
    assert!(config.sinks.is_empty());
}
