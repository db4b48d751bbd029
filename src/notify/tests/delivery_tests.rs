use std::time::Instant;

use super::receiver::{Receiver, Reply};
use super::*;
use crate::notify::{FailureCallback, Notifier};

/// A started notifier and what its failure callback was told.
struct Harness {
    notifier: Notifier,
    failures: Arc<Mutex<Vec<(String, String)>>>,
}

impl Harness {
    fn start(yaml: &str, env: &[(&str, &str)], policy: RetryPolicy) -> Self {
        let config = parse(yaml, env).unwrap();
        let failures: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let seen = failures.clone();
        let callback: FailureCallback = Arc::new(move |n: &Notification, why: &str| {
            seen.lock()
                .unwrap()
                .push((n.request.clone(), why.to_string()));
        });
        let notifier = Notifier::builder(config)
            .retry_policy(policy)
            .on_failure(callback)
            .start()
            .unwrap();
        Self { notifier, failures }
    }

    /// One webhook sink `hook` at `url` receiving every event.
    fn one_sink(url: &str, policy: RetryPolicy) -> Self {
        Self::start(
            "sinks: [{name: hook, type: webhook, urlFrom: {env: URL}}]\n\
             audiences: {approvers: [hook], requester: [hook], audit: [hook], security: [hook]}",
            &[("URL", url)],
            policy,
        )
    }

    fn failures(&self) -> Vec<(String, String)> {
        self.failures.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn both_payload_formats_are_posted_with_their_headers() {
    let rx = Receiver::always(Reply::ok()).await;
    let yaml = r#"
cluster: c1
sinks:
  - name: hook
    type: webhook
    urlFrom: {env: HOOK_URL}
    headers:
      - {name: Authorization, valueFrom: {env: TOKEN}}
  - {name: chat, type: slack, urlFrom: {env: CHAT_URL}}
audiences: {approvers: [hook, chat]}
"#;
    let (hook, chat) = (rx.url("/hook"), rx.url("/chat"));
    let h = Harness::start(
        yaml,
        &[
            ("HOOK_URL", &hook),
            ("CHAT_URL", &chat),
            ("TOKEN", "Bearer t0k3n"),
        ],
        fast_policy(),
    );
    h.notifier.notify(notification(EventKind::Requested));
    let hits = rx.wait_for(2).await;
    eventually("both delivered", || h.notifier.delivered() == 2).await;

    let webhook = hits.iter().find(|x| x.path == "/hook").unwrap();
    assert_eq!(webhook.headers["content-type"], "application/json");
    assert_eq!(webhook.headers["authorization"], "Bearer t0k3n");
    assert!(
        webhook.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("kubepim/")
    );
    assert_eq!(
        webhook.body,
        serde_json::json!({
            "version": "kubepim.io/notification/v1",
            "event": "requested",
            "cluster": "c1",
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
            "summary": "[c1] alice requested payments-admin in payments and waits for approval"
        })
    );

    let slack = hits.iter().find(|x| x.path == "/chat").unwrap();
    assert!(slack.headers.get("authorization").is_none());
    assert_eq!(
        slack.body["text"],
        ":bell: [c1] alice requested payments-admin in payments and waits for approval"
    );
    let blocks = slack.body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["text"]["text"], ":bell: *Access requested*");
    assert_eq!(blocks.last().unwrap()["type"], "context");
    assert_eq!(h.notifier.failures(), 0);
}

#[tokio::test]
async fn each_event_goes_only_to_its_routed_sinks() {
    let rx = Receiver::always(Reply::ok()).await;
    let yaml = r#"
sinks:
  - {name: approvers, type: webhook, urlFrom: {env: A}}
  - {name: requester, type: webhook, urlFrom: {env: R}}
  - {name: audit, type: webhook, urlFrom: {env: AU}}
  - {name: security, type: webhook, urlFrom: {env: S}}
audiences:
  approvers: [approvers]
  requester: [requester]
  audit: [audit]
  security: [security]
routes:
  failed: [security]
"#;
    let urls = [rx.url("/a"), rx.url("/r"), rx.url("/au"), rx.url("/s")];
    let env = [
        ("A", urls[0].as_str()),
        ("R", urls[1].as_str()),
        ("AU", urls[2].as_str()),
        ("S", urls[3].as_str()),
    ];
    let h = Harness::start(yaml, &env, fast_policy());
    for kind in EventKind::ALL {
        h.notifier.notify(notification(kind));
    }
    eventually("12 deliveries", || h.notifier.delivered() == 12).await;
    assert!(h.notifier.stats().iter().all(|s| s.queued == 0));

    let events = |path: &str| -> Vec<String> {
        rx.hits()
            .iter()
            .filter(|x| x.path == path)
            .map(|x| x.body["event"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(events("/a"), ["requested"]);
    assert_eq!(events("/r"), ["approved", "denied"]);
    assert_eq!(
        events("/au"),
        [
            "activated",
            "expired",
            "cancelled",
            "revoked",
            "breakGlass",
            "footholds"
        ]
    );
    assert_eq!(events("/s"), ["failed", "breakGlass", "footholds"]);
    assert_eq!(rx.hits().len(), 12);
    let stats = h.notifier.stats();
    let delivered: Vec<(&str, u64)> = stats
        .iter()
        .map(|s| (s.name.as_str(), s.delivered))
        .collect();
    assert_eq!(
        delivered,
        [
            ("approvers", 1),
            ("requester", 2),
            ("audit", 6),
            ("security", 3)
        ]
    );
}

#[tokio::test]
async fn notify_returns_at_once_while_the_receiver_is_slow() {
    // The first request is held for 500 ms; the rest are answered at once.
    let rx = Receiver::start(|i| {
        if i == 0 {
            Reply::ok().after(Duration::from_millis(500))
        } else {
            Reply::ok()
        }
    })
    .await;
    let h = Harness::one_sink(&rx.url("/hook"), fast_policy());
    h.notifier.notify(notification(EventKind::Requested));
    rx.wait_for(1).await; // the sink is now stuck in the slow request

    let mut took: Vec<Duration> = (0..50)
        .map(|_| {
            let start = Instant::now();
            h.notifier.notify(notification(EventKind::Approved));
            start.elapsed()
        })
        .collect();
    took.sort();
    let median = took[took.len() / 2];
    let max = *took.last().unwrap();
    assert!(median < Duration::from_millis(1), "median {median:?}");
    // A blocking call would take the receiver's 500 ms; allow for scheduler noise only.
    assert!(max < Duration::from_millis(25), "max {max:?}");
    assert!(
        rx.hits().len() <= 1,
        "nothing else sent while the sink is busy"
    );

    eventually("all 51 delivered", || h.notifier.delivered() == 51).await;
    assert_eq!(h.notifier.failures(), 0);
    assert_eq!(h.notifier.dropped(), 0);
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried() {
    let rx = Receiver::start(|i| {
        if i == 0 {
            Reply::ok().after(Duration::from_secs(3))
        } else {
            Reply::ok()
        }
    })
    .await;
    let policy = RetryPolicy {
        timeout: Duration::from_millis(200),
        ..fast_policy()
    };
    let h = Harness::one_sink(&rx.url("/hook"), policy);
    let start = Instant::now();
    h.notifier.notify(notification(EventKind::Activated));
    eventually("delivered", || h.notifier.delivered() == 1).await;
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(rx.hits().len(), 2);
    assert_eq!(h.notifier.failures(), 0);
}

#[tokio::test]
async fn a_500_then_200_is_delivered_after_one_retry() {
    let rx = Receiver::start(|i| {
        if i == 0 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    })
    .await;
    let h = Harness::one_sink(&rx.url("/hook"), fast_policy());
    h.notifier.notify(notification(EventKind::Approved));
    eventually("delivered", || h.notifier.delivered() == 1).await;
    assert_eq!(rx.hits().len(), 2);
    assert_eq!(
        rx.hits()[0].body,
        rx.hits()[1].body,
        "the same body is retried"
    );
    assert_eq!(h.notifier.failures(), 0);
    assert!(h.failures().is_empty());
}

#[tokio::test]
async fn always_500_fails_once_after_every_attempt() {
    let rx = Receiver::always(Reply::status(500)).await;
    let h = Harness::one_sink(&rx.url("/hook"), fast_policy());
    h.notifier.notify(notification(EventKind::Denied));
    eventually("failed", || h.notifier.failures() == 1).await;
    assert_eq!(rx.hits().len(), 5, "5 attempts in all");
    assert_eq!(h.notifier.delivered(), 0);
    let failures = h.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "alice-payments-x7k2p");
    assert_eq!(
        failures[0].1,
        "notification to sink \"hook\" failed after 5 attempt(s): HTTP 500 Internal Server Error"
    );
    // Nothing more arrives: the notification was given up, not left retrying.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), 5);
    assert_eq!(h.failures().len(), 1);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let rx = Receiver::always(Reply::status(400).body("invalid_payload")).await;
    let h = Harness::one_sink(&rx.url("/hook"), fast_policy());
    h.notifier.notify(notification(EventKind::Expired));
    eventually("failed", || h.notifier.failures() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), 1);
    assert_eq!(
        h.failures()[0].1,
        "notification to sink \"hook\" failed after 1 attempt(s): HTTP 400 Bad Request: invalid_payload"
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let rx = Receiver::start(|i| {
        if i == 0 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::ok()
        }
    })
    .await;
    // Backoff alone would retry within 10 ms; the cap leaves room for the 1 s Retry-After.
    let policy = RetryPolicy {
        max_backoff: Duration::from_secs(2),
        ..fast_policy()
    };
    let h = Harness::one_sink(&rx.url("/hook"), policy);
    h.notifier.notify(notification(EventKind::Revoked));
    eventually("delivered", || h.notifier.delivered() == 1).await;
    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
}

#[tokio::test]
async fn a_full_queue_drops_counts_reports_and_logs_once() {
    let (logs, _guard) = Logs::capture();
    let rx = Receiver::always(Reply::ok().after(Duration::from_millis(50))).await;
    let yaml = "queueSize: 2\n\
                sinks: [{name: hook, type: webhook, urlFrom: {env: URL}}]\n\
                audiences: {audit: [hook]}";
    let url = rx.url("/hook");
    let h = Harness::start(yaml, &[("URL", &url)], fast_policy());
    for _ in 0..10 {
        h.notifier.notify(notification(EventKind::Activated));
    }
    assert_eq!(h.notifier.dropped(), 8);
    let failures = h.failures();
    assert_eq!(failures.len(), 8);
    assert!(
        failures
            .iter()
            .all(|(_, why)| why == "notification to sink \"hook\" dropped: its queue is full")
    );
    let text = logs.text();
    assert_eq!(
        text.matches("notifications dropped because its queue is full")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("dropped=1"), "{text}");

    eventually("the queued two delivered", || h.notifier.delivered() == 2).await;
    assert_eq!(h.notifier.failures(), 0);
    assert_eq!(h.notifier.stats()[0].dropped, 8);
}

#[tokio::test]
async fn urls_and_header_values_never_reach_logs_or_failure_reasons() {
    let (logs, _guard) = Logs::capture();
    // A receiver that echoes its secret path back in the error body.
    let rx = Receiver::always(Reply::status(500).body("no such hook /services/T000/B000/XSECRETX"))
        .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let yaml = r#"
sinks:
  - name: failing
    type: slack
    urlFrom: {env: FAILING}
    headers: [{name: Authorization, valueFrom: {env: TOKEN}}]
  - {name: refused, type: webhook, urlFrom: {env: REFUSED}}
audiences: {security: [failing, refused]}
"#;
    let failing = rx.url("/services/T000/B000/XSECRETX?token=QSECRETQ");
    let refused = format!("http://{closed}/ingest/XSECRETX?token=QSECRETQ");
    let h = Harness::start(
        yaml,
        &[
            ("FAILING", &failing),
            ("REFUSED", &refused),
            ("TOKEN", "Bearer HSECRETH"),
        ],
        fast_policy(),
    );
    h.notifier.notify(notification(EventKind::BreakGlass));
    eventually("both failed", || h.notifier.failures() == 2).await;
    assert_eq!(rx.hits()[0].headers["authorization"], "Bearer HSECRETH");

    let reasons: Vec<String> = h.failures().into_iter().map(|(_, why)| why).collect();
    let text = format!("{}\n{}\n{:?}", logs.text(), reasons.join("\n"), h.notifier);
    for secret in ["XSECRETX", "QSECRETQ", "HSECRETH", "/services/", "/ingest"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    // The messages still say which sink and host, and why.
    assert!(text.contains("notification sink ready"), "{text}");
    assert!(text.contains(&format!("http://{}", rx.addr)), "{text}");
    assert!(
        reasons.iter().any(|r| r
            .starts_with("notification to sink \"failing\" failed after 5 attempt(s): HTTP 500")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r
            .starts_with("notification to sink \"refused\" failed after 5 attempt(s):")
            && r.to_lowercase().contains("connect")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn shutdown_drains_the_queues_then_refuses_more() {
    let rx = Receiver::always(Reply::ok().after(Duration::from_millis(30))).await;
    let h = Harness::one_sink(&rx.url("/hook"), fast_policy());
    for _ in 0..3 {
        h.notifier.notify(notification(EventKind::Cancelled));
    }
    h.notifier.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(h.notifier.delivered(), 3);
    assert_eq!(h.notifier.dropped(), 0);

    h.notifier.notify(notification(EventKind::Cancelled));
    assert_eq!(h.notifier.dropped(), 1);
    assert_eq!(
        h.failures()[0].1,
        "notification to sink \"hook\" dropped: notifications are shut down"
    );
    // A second shutdown is harmless.
    h.notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_is_bounded_and_counts_what_it_abandons() {
    let rx = Receiver::always(Reply::ok().after(Duration::from_secs(30))).await;
    let h = Harness::one_sink(&rx.url("/hook"), fast_policy());
    for _ in 0..3 {
        h.notifier.notify(notification(EventKind::Expired));
    }
    rx.wait_for(1).await;
    let start = Instant::now();
    h.notifier.shutdown(Duration::from_millis(200)).await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(h.notifier.delivered(), 0);
    assert_eq!(h.notifier.dropped(), 3);
    assert_eq!(h.notifier.stats()[0].queued, 0);
}

#[tokio::test]
async fn a_disabled_notifier_does_nothing() {
    let n = Notifier::disabled();
    n.notify(notification(EventKind::BreakGlass));
    assert_eq!((n.delivered(), n.failures(), n.dropped()), (0, 0, 0));
    assert!(n.stats().is_empty());
    n.shutdown(Duration::from_secs(1)).await;

    let empty = Notifier::start(NotifyConfig::empty(), None).unwrap();
    empty.notify(notification(EventKind::Requested));
    assert_eq!(empty.dropped(), 0);
}

#[test]
fn the_handle_can_be_shared_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Notifier>();
    shareable::<FailureCallback>();
}
