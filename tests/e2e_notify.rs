//! End-to-end: notifications from the operator against a real API server. One transition, one
//! notification, sent from where the controller records the transition; a sink that refuses it
//! leaves a Warning Event `NotificationFailed` on the request and counts in the metrics.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_notify`
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kubepim::api::{Phase, SubjectRef};
use kubepim::metrics::Metrics;
use kubepim::notify::NotifyConfig;
use kubepim::runtime::OperatorSettings;
use serde_json::Value;
use support::Env;
use support::fixtures::{self, submit};
use support::wait::{self, until};

/// A local HTTP receiver answering every POST with `status`, keeping the JSON bodies.
async fn receiver(status: u16) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())
                                .flatten()
                        })
                        .unwrap_or(0);
                    if rest.len() >= length {
                        break rest[..length].to_string();
                    }
                };
                if let Ok(json) = serde_json::from_str(&body) {
                    seen.lock().unwrap().push(json);
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_are_notified_and_a_refusing_sink_leaves_a_warning_event() {
    let Some(env) = Env::isolated("notify").await else {
        return;
    };
    let (audit_addr, audit) = receiver(200).await;
    let (broken_addr, _) = receiver(400).await;
    let config = NotifyConfig::parse(
        "sinks:\n\
         \x20 - name: audit\n    type: webhook\n    urlFrom: {env: AUDIT_URL}\n\
         \x20 - name: broken\n    type: webhook\n    urlFrom: {env: BROKEN_URL}\n\
         audiences:\n  audit: [audit]\n\
         routes:\n  activated: [audit, broken]\n",
        Path::new("/etc/kubepim/notifications.yaml"),
        &|name| match name {
            "AUDIT_URL" => Some(format!("http://{audit_addr}/hook")),
            "BROKEN_URL" => Some(format!("http://{broken_addr}/hook")),
            _ => None,
        },
    )
    .expect("config");
    let metrics = Arc::new(Metrics::new());
    env.start_operator(OperatorSettings {
        concurrency: 4,
        notifications: Some(config),
        metrics: metrics.clone(),
        ..OperatorSettings::default()
    });

    let ns = env.namespace("apps").await;
    let role = fixtures::pod_reader(&env, "pods", &[&ns]);
    fixtures::create_role(&env, &role).await;
    let el = fixtures::eligibility(
        &env,
        "alice",
        &role.name_any(),
        vec![SubjectRef::user("alice")],
    );
    fixtures::create_eligibility(&env, &el).await;
    let ar = fixtures::request(&env, "r", "alice", &role.name_any(), &[&ns], "5m");
    let name = submit(&env, "alice", &ar).await.name_any();
    wait::phase(&env, &name, Phase::Active).await;

    let body = until(
        &env,
        "the activated notification",
        Duration::from_secs(30),
        || async {
            let bodies = audit.lock().unwrap().clone();
            bodies
                .into_iter()
                .find(|b| b["event"] == "activated" && b["request"] == name.as_str())
                .ok_or_else(|| "not received".to_string())
        },
    )
    .await;
    assert_eq!(body["requester"], "alice");
    assert_eq!(body["role"], role.name_any().as_str());
    assert!(body["until"].is_string(), "{body}");

    let events: Api<Event> = Api::all(env.admin());
    let event = until(
        &env,
        "a NotificationFailed event",
        Duration::from_secs(30),
        || {
            let events = events.clone();
            let name = name.clone();
            async move {
                let list = events
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                list.items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("NotificationFailed")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name)
                    })
                    .ok_or_else(|| "none yet".to_string())
            }
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.unwrap_or_default();
    assert!(note.contains("broken"), "the note names the sink: {note}");
    assert!(!note.contains("/hook"), "never the URL's path: {note}");

    let text = metrics.encode();
    assert!(
        text.contains("kubepim_notifications_delivered_total{sink=\"audit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kubepim_notifications_failed_total{sink=\"broken\",reason=\"delivery\"} 1"),
        "{text}"
    );
    // Exactly one notification for the one transition routed to the audit sink.
    let activated = audit
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b["request"] == name.as_str() && b["event"] == "activated")
        .count();
    assert_eq!(activated, 1);
    let outcome = env.stop_operator().await;
    assert_eq!(outcome, "Ok(())");
}
