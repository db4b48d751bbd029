use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::{Value, json};

use super::*;
use crate::controller::fixtures::Call;

/// What the fake API server saw: method, path, body.
type Seen = Arc<Mutex<Vec<(Method, String, Value)>>>;

/// A client whose Events API creates anything and patches only Events it created, except
/// those named in `gone` (the API server dropped them).
fn events_api(gone: BTreeSet<String>) -> (Client, Seen) {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut created = BTreeSet::new();
        while let Some((request, respond)) = handle.next_request().await {
            let call = Call::read(request).await;
            let name = call.path.rsplit('/').next().unwrap_or_default().to_string();
            let (code, body) = match call.method {
                Method::POST => {
                    let name = call.body["metadata"]["name"].as_str().unwrap_or_default();
                    created.insert(name.to_string());
                    (201, call.body.clone())
                }
                Method::PATCH if created.contains(&name) && !gone.contains(&name) => {
                    (200, call.body.clone())
                }
                _ => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "code": 404, "reason": "NotFound", "message": "not found"}),
                ),
            };
            log.lock()
                .unwrap()
                .push((call.method.clone(), call.path.clone(), call.body.clone()));
            respond.send_response(
                Response::builder()
                    .status(code)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(mock, "default"), seen)
}

fn recorder(client: Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: "kubepim".into(),
            instance: Some("kubepim-0".into()),
        },
    )
}

fn request_ref(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("kubepim.io/v1alpha1".into()),
        kind: Some("ActivationRequest".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

fn event(reason: &str, note: &str) -> Event {
    Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Activate".into(),
        secondary: None,
    }
}

fn calls(seen: &Seen) -> Vec<(Method, String, Value)> {
    seen.lock().unwrap().clone()
}

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

#[tokio::test]
async fn a_first_event_is_created_with_who_reported_it_and_what_it_is_about() {
    let (client, seen) = events_api(BTreeSet::new());
    let recorder = recorder(client);
    recorder
        .publish(&event("Activated", "bound"), &request_ref("r1"))
        .await
        .unwrap();
    let calls = calls(&seen);
    assert_eq!(calls.len(), 1);
    let (method, path, body) = &calls[0];
    assert_eq!((method, path.as_str()), (&Method::POST, EVENTS));
    assert_eq!(body["reason"], "Activated");
    assert_eq!(body["note"], "bound");
    assert_eq!(body["action"], "Activate");
    assert_eq!(body["type"], "Normal");
    assert_eq!(body["reportingController"], "kubepim");
    assert_eq!(body["reportingInstance"], "kubepim-0");
    assert_eq!(body["regarding"]["name"], "r1");
    assert_eq!(body["regarding"]["uid"], "uid-r1");
    assert!(body["eventTime"].is_string());
    assert!(
        body["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("r1.")
    );
    assert!(body["series"].is_null());
}

#[tokio::test]
async fn a_repeat_continues_the_first_events_series_and_a_new_note_does_not_make_it_new() {
    let (client, seen) = events_api(BTreeSet::new());
    let recorder = recorder(client);
    let about = request_ref("r1");
    recorder
        .publish(&event("Failed", "one"), &about)
        .await
        .unwrap();
    recorder
        .publish(&event("Failed", "two"), &about)
        .await
        .unwrap();
    recorder
        .publish(&event("Failed", "two"), &about)
        .await
        .unwrap();
    let calls = calls(&seen);
    let first = calls[0].2["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(calls.len(), 3);
    for (n, (method, path, body)) in calls[1..].iter().enumerate() {
        assert_eq!(method, Method::PATCH);
        assert_eq!(path, &format!("{EVENTS}/{first}"));
        assert_eq!(body["series"]["count"], json!(n + 2));
        assert!(body["series"]["lastObservedTime"].is_string());
        // Only the series: the patch rewrites nothing else of the Event.
        assert_eq!(body.as_object().unwrap().len(), 1);
    }
    assert_eq!(recorder.remembered(), 1);
}

#[tokio::test]
async fn another_reason_type_object_or_related_object_is_another_event() {
    let (client, seen) = events_api(BTreeSet::new());
    let recorder = recorder(client);
    let about = request_ref("r1");
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    recorder
        .publish(&event("Expired", "x"), &about)
        .await
        .unwrap();
    let mut warning = event("Failed", "x");
    warning.type_ = EventType::Warning;
    recorder.publish(&warning, &about).await.unwrap();
    recorder
        .publish(&event("Failed", "x"), &request_ref("r2"))
        .await
        .unwrap();
    let mut related = event("Failed", "x");
    related.secondary = Some(request_ref("binding"));
    recorder.publish(&related, &about).await.unwrap();
    let methods: Vec<Method> = calls(&seen).into_iter().map(|c| c.0).collect();
    assert_eq!(methods, vec![Method::POST; 5]);
    assert_eq!(recorder.remembered(), 5);
}

#[tokio::test]
async fn an_event_of_a_namespaced_object_goes_to_its_namespace() {
    let (client, seen) = events_api(BTreeSet::new());
    let recorder = recorder(client);
    let mut about = request_ref("edit-for-alice");
    about.namespace = Some("payments".into());
    recorder.publish(&event("Kept", "x"), &about).await.unwrap();
    assert_eq!(
        calls(&seen)[0].1,
        "/apis/events.k8s.io/v1/namespaces/payments/events"
    );
}

#[tokio::test]
async fn a_series_whose_event_the_api_server_dropped_starts_again_as_a_new_event() {
    let (client, seen) = events_api(BTreeSet::new());
    let recorder = recorder(client.clone());
    let about = request_ref("r1");
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    let first = calls(&seen)[0].2["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    // The same recorder against a server that no longer has the first Event.
    let (client, seen) = events_api(BTreeSet::from([first.clone()]));
    let recorder = Recorder { client, ..recorder };
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    let calls = calls(&seen);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, Method::PATCH);
    assert_eq!(calls[1].0, Method::POST);
    // The new Event carries the series on.
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    let again = &self::calls(&seen)[2];
    let second = calls[1].2["metadata"]["name"].as_str().unwrap();
    assert_eq!(again.0, Method::PATCH);
    assert_eq!(again.1, format!("{EVENTS}/{second}"));
}

#[tokio::test]
async fn another_error_is_returned_and_forgets_nothing() {
    let (client, _) = events_api(BTreeSet::new());
    let recorder = recorder(client);
    // An Event published earlier, then a server that answers 503 to its series patch.
    recorder.lock().remember(
        key_of(&event("Failed", "x"), &request_ref("r1")),
        published("missing"),
    );
    let failing = Recorder {
        client: Client::new(
            tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(503)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(
                            serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1",
                                "status": "Failure", "code": 503, "reason": "ServiceUnavailable",
                                "message": "etcd is down"}))
                            .unwrap(),
                        ))
                        .unwrap(),
                )
            }),
            "default",
        ),
        ..recorder.clone()
    };
    let error = failing
        .publish(&event("Failed", "x"), &request_ref("r1"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, kube::Error::Api(ref s) if s.code == 503),
        "{error}"
    );
    let kept = recorder
        .lock()
        .live(
            &key_of(&event("Failed", "x"), &request_ref("r1")),
            Instant::now(),
        )
        .unwrap();
    assert_eq!((kept.name.as_str(), kept.count), ("missing", 1));
}

fn key_of(event: &Event, regarding: &ObjectReference) -> SeriesKey {
    SeriesKey {
        type_: event.type_,
        reason: event.reason.clone(),
        action: event.action.clone(),
        regarding: regarding.into(),
        related: event.secondary.as_ref().map(Into::into),
    }
}

fn published(name: &str) -> Published {
    Published {
        namespace: "default".into(),
        name: name.into(),
        count: 1,
        last: Instant::now(),
    }
}

#[tokio::test(start_paused = true)]
async fn after_the_window_a_repeat_is_a_new_event() {
    let (client, seen) = events_api(BTreeSet::new());
    let recorder = recorder(client);
    let about = request_ref("r1");
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    tokio::time::advance(SERIES_WINDOW - Duration::from_secs(1)).await;
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    // The window runs from the last repeat.
    tokio::time::advance(SERIES_WINDOW - Duration::from_secs(1)).await;
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    tokio::time::advance(SERIES_WINDOW).await;
    recorder
        .publish(&event("Failed", "x"), &about)
        .await
        .unwrap();
    let methods: Vec<Method> = calls(&seen).into_iter().map(|c| c.0).collect();
    assert_eq!(
        methods,
        vec![Method::POST, Method::PATCH, Method::PATCH, Method::POST]
    );
}

#[test]
fn the_memory_is_bounded_and_forgets_the_oldest_first() {
    let start = Instant::now();
    let mut recent = Recent::default();
    let about = |n: usize| key_of(&event("Activated", "x"), &request_ref(&format!("r{n}")));
    for n in 0..REMEMBERED + 10 {
        let mut p = published(&format!("e{n}"));
        p.last = start + Duration::from_millis(n as u64);
        recent.remember(about(n), p);
    }
    assert_eq!(recent.len(), REMEMBERED);
    let now = start + Duration::from_secs(1);
    for n in 0..10 {
        assert!(recent.live(&about(n), now).is_none(), "r{n} kept");
    }
    for n in 10..REMEMBERED + 10 {
        assert!(recent.live(&about(n), now).is_some(), "r{n} forgotten");
    }
    // A repeat of a remembered key replaces it and forgets nothing else.
    recent.remember(about(20), published("e20"));
    assert_eq!(recent.len(), REMEMBERED);
    assert!(recent.live(&about(10), now).is_some());
}

#[test]
fn expired_entries_go_before_live_ones_when_the_memory_is_full() {
    let start = Instant::now();
    let mut recent = Recent::default();
    let about = |n: usize| key_of(&event("Activated", "x"), &request_ref(&format!("r{n}")));
    for n in 0..REMEMBERED {
        let mut p = published(&format!("e{n}"));
        // The second half is recent; the first half is older than the window.
        p.last = if n < REMEMBERED / 2 {
            start
        } else {
            start + SERIES_WINDOW + Duration::from_secs(n as u64)
        };
        recent.remember(about(n), p);
    }
    let mut newest = published("new");
    newest.last = start + SERIES_WINDOW * 3;
    recent.remember(about(REMEMBERED), newest);
    assert_eq!(recent.len(), REMEMBERED / 2 + 1);
}
