//! A counting layer on the kube client: every API call the operator makes, by verb and outcome.
//!
//! The benchmark reads it to prove the write budget (no-op reconcile: 0 writes; activation ≤ 3;
//! revocation ≤ 2; idle: 0/min), and the metrics endpoint exports the same counts as
//! `kubepim_api_requests_total{verb,resource,code}` ([`ApiCallCounter::calls`]).
//!
//! Labels stay bounded: `verb` is one of [`Verb::ALL`]; `resource` is the plural resource name
//! from the path (with `/subresource`), which only the API surface kubepim calls can produce, and
//! past [`MAX_SERIES`] distinct series new resources are counted as `other`; `code` is the HTTP
//! status, `error` for a transport failure, `cancelled` for a call dropped before its answer
//! (a per-call time-out).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// `SelfSubjectAccessReview`, `SubjectAccessReview`, `TokenReview`…: created, never stored.
fn is_review(path: &str) -> bool {
    (path.starts_with("/apis/authorization.k8s.io/")
        || path.starts_with("/apis/authentication.k8s.io/"))
        && path.ends_with("reviews")
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

/// At most this many `(verb, resource, code)` series; calls beyond it count as resource `other`.
pub const MAX_SERIES: usize = 256;

/// The resource a call is for: the plural name after the group/version (and namespace), with
/// `/subresource` when the path goes on past the object's name (`activationrequests/status`).
/// Non-resource paths (discovery, `/version`) and anything that does not look like a resource
/// name give `other`.
pub fn resource_of(path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest.filter(|r| !r.is_empty()) else {
        return OTHER.into();
    };
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        rest = &rest[2..];
    }
    let plausible = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let resource = rest[0];
    if !plausible(resource) {
        return OTHER.into();
    }
    match rest.get(2) {
        Some(sub) if plausible(sub) => format!("{resource}/{sub}"),
        Some(_) => OTHER.into(),
        None => resource.to_string(),
    }
}

const OTHER: &str = "other";

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// An HTTP answer with this status.
    Status(u16),
    /// No answer: connection refused, reset, TLS failure…
    Error,
    /// Dropped before its answer came (a per-call time-out gave up on it).
    Cancelled,
}

impl Code {
    /// The `code` label.
    pub fn label(self) -> String {
        match self {
            Code::Status(code) => code.to_string(),
            Code::Error => "error".into(),
            Code::Cancelled => "cancelled".into(),
        }
    }
}

/// One series of `kubepim_api_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey {
    pub verb: Verb,
    pub resource: String,
    pub code: Code,
}

/// Shared counters; cheap to clone.
#[derive(Clone, Default)]
pub struct ApiCallCounter {
    inner: Arc<CallCounts>,
}

/// What the layer has counted; one per counter, shared by its clones.
#[derive(Default)]
struct CallCounts {
    by_verb: [AtomicU64; 8],
    event_writes: AtomicU64,
    reviews: AtomicU64,
    errors: AtomicU64,
    /// Finished calls by verb, resource and outcome.
    by_call: Mutex<BTreeMap<CallKey, u64>>,
}

impl ApiCallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    fn record<B>(&self, req: &Request<B>) -> Verb {
        let verb = Verb::of(req);
        self.inner.by_verb[verb as usize].fetch_add(1, Ordering::Relaxed);
        if verb.is_write() && is_event(req.uri().path()) {
            self.inner.event_writes.fetch_add(1, Ordering::Relaxed);
        }
        if verb == Verb::Create && is_review(req.uri().path()) {
            self.inner.reviews.fetch_add(1, Ordering::Relaxed);
        }
        verb
    }

    fn finish(&self, verb: Verb, resource: String, code: Code) {
        let failed = !matches!(code, Code::Status(status) if status < 400);
        if failed {
            self.inner.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut by_call = self.inner.by_call.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = CallKey {
            verb,
            resource,
            code,
        };
        if by_call.len() >= MAX_SERIES && !by_call.contains_key(&key) {
            key.resource = OTHER.into();
        }
        *by_call.entry(key).or_insert(0) += 1;
    }

    /// Finished calls by verb, resource and outcome (the series of
    /// `kubepim_api_requests_total`).
    pub fn calls(&self) -> Vec<(CallKey, u64)> {
        self.inner
            .by_call
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Calls made with this verb so far.
    pub fn count(&self, verb: Verb) -> u64 {
        self.inner.by_verb[verb as usize].load(Ordering::Relaxed)
    }

    /// Creates, updates, patches and deletes so far, Events included. Access and token reviews
    /// are POSTs that store nothing (questions to the authorizer), so they are not writes.
    pub fn writes(&self) -> u64 {
        let mutating: u64 = Verb::ALL
            .iter()
            .filter(|v| v.is_write())
            .map(|v| self.count(*v))
            .sum();
        mutating - self.inner.reviews.load(Ordering::Relaxed)
    }

    /// Writes of Events (asynchronous records, off the grant/revoke path).
    pub fn event_writes(&self) -> u64 {
        self.inner.event_writes.load(Ordering::Relaxed)
    }

    /// Writes of everything but Events: the bindings, requests and their status.
    pub fn object_writes(&self) -> u64 {
        self.writes() - self.event_writes()
    }

    /// Responses with a status ≥ 400, transport failures and calls given up on.
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
        let verb = self.counter.record(&req);
        let mut pending = Pending {
            counter: self.counter.clone(),
            verb,
            resource: Some(resource_of(req.uri().path())),
        };
        self.inner
            .call(req)
            .map(move |result| {
                pending.finish(match &result {
                    Ok(response) => Code::Status(response.status().as_u16()),
                    Err(_) => Code::Error,
                });
                result
            })
            .boxed()
    }
}

/// A call in flight: counted when it finishes, or as cancelled when it is dropped unanswered.
struct Pending {
    counter: ApiCallCounter,
    verb: Verb,
    resource: Option<String>,
}

impl Pending {
    fn finish(&mut self, code: Code) {
        if let Some(resource) = self.resource.take() {
            self.counter.finish(self.verb, resource, code);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
#[path = "tests/api_requests.rs"]
mod tests;
