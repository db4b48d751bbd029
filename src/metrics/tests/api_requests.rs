use super::*;

fn req(method: Method, uri: &str) -> Request<()> {
    Request::builder().method(method).uri(uri).body(()).unwrap()
}

#[test]
fn classifies_verbs() {
    let cases = [
        (
            Method::GET,
            "/apis/kubepim.io/v1alpha1/activationrequests?limit=500",
            Verb::List,
        ),
        (
            Method::GET,
            "/apis/kubepim.io/v1alpha1/activationrequests?watch=true&resourceVersion=1",
            Verb::Watch,
        ),
        (
            Method::GET,
            "/apis/kubepim.io/v1alpha1/activationrequests/r1",
            Verb::Get,
        ),
        (
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings",
            Verb::List,
        ),
        (
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings/b",
            Verb::Get,
        ),
        (Method::GET, "/api/v1/namespaces", Verb::List),
        (Method::GET, "/api/v1/namespaces/p", Verb::Get),
        (
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Verb::Create,
        ),
        (
            Method::PATCH,
            "/apis/kubepim.io/v1alpha1/activationrequests/r1/status",
            Verb::Patch,
        ),
        (
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/b",
            Verb::Delete,
        ),
    ];
    for (method, uri, want) in cases {
        assert_eq!(Verb::of(&req(method.clone(), uri)), want, "{method} {uri}");
    }
}

#[test]
fn access_reviews_are_not_writes() {
    let counter = ApiCallCounter::new();
    counter.record(&req(
        Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    ));
    counter.record(&req(
        Method::POST,
        "/apis/authentication.k8s.io/v1/tokenreviews",
    ));
    counter.record(&req(
        Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    ));
    // Still counted as calls with the verb Kubernetes gives them; only not as writes.
    assert_eq!(counter.count(Verb::Create), 3);
    assert_eq!((counter.writes(), counter.object_writes()), (1, 1));
}

#[test]
fn event_writes_are_counted_apart() {
    let counter = ApiCallCounter::new();
    counter.record(&req(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events",
    ));
    counter.record(&req(
        Method::PATCH,
        "/apis/events.k8s.io/v1/namespaces/default/events/e1",
    ));
    counter.record(&req(
        Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    ));
    counter.record(&req(
        Method::GET,
        "/apis/events.k8s.io/v1/namespaces/default/events",
    ));
    assert_eq!(
        (
            counter.writes(),
            counter.event_writes(),
            counter.object_writes()
        ),
        (3, 2, 1)
    );
}

#[test]
fn resources_are_plural_names_with_subresources() {
    let cases = [
        (
            "/apis/kubepim.io/v1alpha1/activationrequests",
            "activationrequests",
        ),
        (
            "/apis/kubepim.io/v1alpha1/activationrequests/r1/status",
            "activationrequests/status",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings/b",
            "rolebindings",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings",
            "rolebindings",
        ),
        (
            "/apis/coordination.k8s.io/v1/namespaces/kubepim/leases/kubepim",
            "leases",
        ),
        ("/api/v1/namespaces", "namespaces"),
        ("/api/v1/namespaces/p", "namespaces"),
        ("/api/v1/namespaces/p/secrets/s", "secrets"),
        (
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            "subjectaccessreviews",
        ),
        ("/version", "other"),
        ("/apis", "other"),
        ("/apis/kubepim.io/v1alpha1", "other"),
        ("/api/v1/namespaces/p/Weird_Thing", "other"),
    ];
    for (path, want) in cases {
        assert_eq!(resource_of(path), want, "{path}");
    }
}

#[tokio::test]
async fn calls_are_counted_by_verb_resource_and_code() {
    use tower::{Layer, Service, ServiceExt};
    let counter = ApiCallCounter::new();
    let inner = tower::service_fn(|req: Request<()>| async move {
        let status = if req.uri().path().ends_with("/missing") {
            404
        } else {
            200
        };
        Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
    });
    let mut service = counter.layer(inner);
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings";
    for uri in [
        path.to_string(),
        format!("{path}/b"),
        format!("{path}/missing"),
    ] {
        let svc = service.ready().await.unwrap();
        svc.call(req(Method::GET, &uri)).await.unwrap();
    }
    // A call dropped before its answer (a per-call time-out) counts as cancelled.
    let never = tower::service_fn(|_req: Request<()>| {
        futures::future::pending::<Result<Response<()>, std::convert::Infallible>>()
    });
    let mut stuck = counter.layer(never);
    let call = stuck.call(req(Method::DELETE, &format!("{path}/b")));
    drop(call);

    let calls: Vec<(String, String, String, u64)> = counter
        .calls()
        .into_iter()
        .map(|(k, n)| (k.verb.as_str().into(), k.resource, k.code.label(), n))
        .collect();
    let series =
        |v: &str, c: &str, n: u64| (v.to_string(), "rolebindings".to_string(), c.to_string(), n);
    assert_eq!(
        calls,
        vec![
            series("get", "200", 1),
            series("get", "404", 1),
            series("list", "200", 1),
            series("delete", "cancelled", 1),
        ]
    );
    assert_eq!(counter.errors(), 2);
}

#[test]
fn series_are_bounded() {
    let counter = ApiCallCounter::new();
    for i in 0..MAX_SERIES + 10 {
        counter.finish(Verb::Get, format!("things{i}"), Code::Status(200));
    }
    let calls = counter.calls();
    assert_eq!(calls.len(), MAX_SERIES + 1);
    let other = calls
        .iter()
        .find(|(k, _)| k.resource == "other")
        .map(|(_, n)| *n);
    assert_eq!(other, Some(10));
}

#[test]
fn writes_are_the_mutating_verbs() {
    let writes: Vec<Verb> = Verb::ALL.into_iter().filter(|v| v.is_write()).collect();
    assert_eq!(
        writes,
        vec![Verb::Create, Verb::Update, Verb::Patch, Verb::Delete]
    );
}
