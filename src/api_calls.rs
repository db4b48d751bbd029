//! A counting layer on the kube client: every API call the operator makes, by verb and outcome.
//!
//! The benchmark reads it to prove the write budget (no-op reconcile: 0 writes; activation ≤ 3;
//! revocation ≤ 2; idle: 0/min), and the metrics endpoint exports the same counters.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::{Method, Request, Response};

/// Kubernetes verbs as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Other,
}

impl Verb {
    pub const ALL: [Verb; 8] = [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Other => "other",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
        )
    }

    /// Classifies a request. A GET on a collection path is a list (or a watch with `watch=`);
    /// collection paths end in a plural resource name, which kube-rs never follows with a name
    /// segment, so the segment count after the group/version tells them apart.
    pub fn of<B>(req: &Request<B>) -> Verb {
        let query = req.uri().query().unwrap_or("");
        match *req.method() {
            Method::GET
                if query
                    .split('&')
                    .any(|kv| kv == "watch=true" || kv == "watch=1") =>
            {
                Verb::Watch
            }
            Method::GET if is_collection(req.uri().path()) => Verb::List,
            Method::GET => Verb::Get,
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            _ => Verb::Other,
        }
    }
}

fn is_event(path: &str) -> bool {
    path.starts_with("/apis/events.k8s.io/")
        || (path.starts_with("/api/v1/") && path.contains("/events"))
}

/// `/api/v1/namespaces/ns/configmaps` (collection) vs `/api/v1/namespaces/ns/configmaps/name`.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest else { return false };
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        rest = &rest[2..];
    }
    rest.len() == 1
}

/// Shared counters; cheap to clone.
#[derive(Clone, Default)]
pub struct ApiCallCounter {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    by_verb: [AtomicU64; 8],
    event_writes: AtomicU64,
    errors: AtomicU64,
}

impl ApiCallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    fn record<B>(&self, req: &Request<B>) {
        let verb = Verb::of(req);
        self.inner.by_verb[verb as usize].fetch_add(1, Ordering::Relaxed);
        if verb.is_write() && is_event(req.uri().path()) {
            self.inner.event_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls made with this verb so far.
    pub fn count(&self, verb: Verb) -> u64 {
        self.inner.by_verb[verb as usize].load(Ordering::Relaxed)
    }

    /// Creates, updates, patches and deletes so far, Events included.
    pub fn writes(&self) -> u64 {
        Verb::ALL
            .iter()
            .filter(|v| v.is_write())
            .map(|v| self.count(*v))
            .sum()
    }

    /// Writes of Events (asynchronous records, off the grant/revoke path).
    pub fn event_writes(&self) -> u64 {
        self.inner.event_writes.load(Ordering::Relaxed)
    }

    /// Writes of everything but Events: the bindings, requests and their status.
    pub fn object_writes(&self) -> u64 {
        self.writes() - self.event_writes()
    }

    /// Responses with a status ≥ 400, and transport failures.
    pub fn errors(&self) -> u64 {
        self.inner.errors.load(Ordering::Relaxed)
    }
}

impl<S> tower::Layer<S> for ApiCallCounter {
    type Service = CountedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountedService {
            inner,
            counter: self.clone(),
        }
    }
}

/// The service the layer wraps around the client's stack.
#[derive(Clone)]
pub struct CountedService<S> {
    inner: S,
    counter: ApiCallCounter,
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for CountedService<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        self.counter.record(&req);
        let counter = self.counter.clone();
        self.inner
            .call(req)
            .map(move |result| {
                let failed = match &result {
                    Ok(response) => response.status().as_u16() >= 400,
                    Err(_) => true,
                };
                if failed {
                    counter.inner.errors.fetch_add(1, Ordering::Relaxed);
                }
                result
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
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
    fn writes_are_the_mutating_verbs() {
        let writes: Vec<Verb> = Verb::ALL.into_iter().filter(|v| v.is_write()).collect();
        assert_eq!(
            writes,
            vec![Verb::Create, Verb::Update, Verb::Patch, Verb::Delete]
        );
    }
}
