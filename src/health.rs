//! The metrics and health listener (`--metrics-port`, plain HTTP): `GET /metrics` (OpenMetrics
//! text, see [`crate::metrics`]), `GET /healthz` (the process is alive and serving) and
//! `GET /readyz` (every readiness check passes).
//!
//! Every replica serves it. `/readyz` lists each check as `[+]name ok` or `[-]name <why>`, and
//! answers 200 only when all pass: the operator's caches have synced, and, when the webhook is
//! served, its serving certificate is in place. Leadership is not a readiness check: a replica
//! that waits for the lease still serves the webhook.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::listen::Accepted;
use crate::metrics::{self, Metrics};

type Full = http_body_util::Full<Bytes>;

/// Connections served at once (scrapers and kubelet probes: a handful).
const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes in flight at shutdown get this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics and health checks on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// One readiness check: a flag set by its owner, or a watch channel (the webhook's certificate).
#[derive(Clone)]
enum Check {
    Flag(Arc<AtomicBool>),
    Watch(watch::Receiver<bool>),
}

impl Check {
    fn passes(&self) -> bool {
        match self {
            Check::Flag(flag) => flag.load(Ordering::Acquire),
            Check::Watch(rx) => *rx.borrow(),
        }
    }
}

/// A readiness flag, owned by whatever it reports on.
#[derive(Clone, Default)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

/// The named checks behind `/readyz`.
#[derive(Default)]
pub struct Readiness {
    checks: Mutex<Vec<(&'static str, &'static str, Check)>>,
}

impl Readiness {
    /// A check that fails with `waiting` until its flag is set.
    pub fn flag(&self, name: &'static str, waiting: &'static str) -> ReadyFlag {
        let flag = ReadyFlag::default();
        self.push(name, waiting, Check::Flag(flag.0.clone()));
        flag
    }

    /// A check that passes while the channel holds `true`.
    pub fn watch(&self, name: &'static str, waiting: &'static str, rx: watch::Receiver<bool>) {
        self.push(name, waiting, Check::Watch(rx));
    }

    fn push(&self, name: &'static str, waiting: &'static str, check: Check) {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, waiting, check));
    }

    /// Each check's name, whether it passes, and what it waits for.
    pub fn report(&self) -> Vec<(&'static str, bool, &'static str)> {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, waiting, check)| (*name, check.passes(), *waiting))
            .collect()
    }

    /// True when every check passes.
    pub fn is_ready(&self) -> bool {
        self.report().iter().all(|(_, ok, _)| *ok)
    }
}

/// The `/readyz` answer for a report: 200 when every check passes (and there is at least one),
/// 503 otherwise; the body lists every check.
pub fn readyz(report: &[(&str, bool, &str)]) -> (StatusCode, String) {
    let mut body = String::new();
    for (name, ok, waiting) in report {
        if *ok {
            body.push_str(&format!("[+]{name} ok\n"));
        } else {
            body.push_str(&format!("[-]{name} {waiting}\n"));
        }
    }
    let ready = !report.is_empty() && report.iter().all(|(_, ok, _)| *ok);
    if ready {
        body.push_str("readyz check passed\n");
        (StatusCode::OK, body)
    } else {
        body.push_str("readyz check failed\n");
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

/// What the listener serves.
#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Answers one request.
pub fn answer(health: &Health, method: &Method, path: &str) -> Response<Full> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET and HEAD\n".into(),
        );
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            health.metrics.encode(),
        ),
        "/healthz" | "/livez" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => {
            let (status, body) = readyz(&health.readiness.report());
            text(status, PLAIN, body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

async fn route(
    health: Arc<Health>,
    request: Request<Incoming>,
) -> Result<Response<Full>, Infallible> {
    Ok(answer(&health, request.method(), request.uri().path()))
}

/// A bound listener; nothing is served before [`HealthServer::run`].
pub struct HealthServer {
    listener: TcpListener,
    health: Arc<Health>,
}

impl HealthServer {
    /// Binds the port, failing fast if it cannot.
    pub async fn bind(addr: SocketAddr, health: Health) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        Ok(Self {
            listener,
            health: Arc::new(health),
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then gives requests in flight a moment to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = ?self.local_addr(), "serving /metrics, /healthz and /readyz");
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        while let Some(Accepted {
            permit,
            stream,
            peer,
        }) = crate::listen::next(&self.listener, &slots, &mut shutdown, "metrics").await
        {
            let health = self.health.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                let service = service_fn(move |request| route(health.clone(), request));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(%peer, %error, "metrics connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let (status, body) = readyz(&[
            ("caches", true, "not synced"),
            ("webhook-certificate", false, "no serving certificate yet"),
        ]);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("[+]caches ok"), "{body}");
        assert!(
            body.contains("[-]webhook-certificate no serving certificate yet"),
            "{body}"
        );

        let (status, body) = readyz(&[("caches", true, "not synced")]);
        assert_eq!(status, StatusCode::OK);
        assert!(body.ends_with("readyz check passed\n"), "{body}");

        // No check registered yet: nothing is known to be ready.
        assert_eq!(readyz(&[]).0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn flags_and_watches_feed_the_report() {
        let readiness = Readiness::default();
        let caches = readiness.flag("caches", "caches not synced");
        let (cert_tx, cert_rx) = watch::channel(false);
        readiness.watch("webhook-certificate", "no serving certificate", cert_rx);
        assert!(!readiness.is_ready());
        caches.set(true);
        assert!(!readiness.is_ready(), "the certificate is still missing");
        cert_tx.send_replace(true);
        assert!(readiness.is_ready());
        // A certificate taken away (shutdown) makes the replica unready again.
        cert_tx.send_replace(false);
        assert_eq!(
            readiness.report(),
            vec![
                ("caches", true, "caches not synced"),
                ("webhook-certificate", false, "no serving certificate")
            ]
        );
    }

    #[test]
    fn routes() {
        let health = Health {
            metrics: Arc::new(Metrics::new()),
            readiness: Arc::new(Readiness::default()),
        };
        let get = |path: &str| answer(&health, &Method::GET, path);
        assert_eq!(get("/healthz").status(), StatusCode::OK);
        assert_eq!(get("/readyz").status(), StatusCode::SERVICE_UNAVAILABLE);
        let metrics = get("/metrics");
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            crate::metrics::CONTENT_TYPE
        );
        assert_eq!(get("/nope").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&health, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn serves_over_http() {
        let readiness = Arc::new(Readiness::default());
        let caches = readiness.flag("caches", "caches not synced");
        let server = HealthServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Health {
                metrics: Arc::new(Metrics::new()),
                readiness,
            },
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(server.run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        caches.set(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("# TYPE kubepim_is_leader gauge"),
            "{metrics}"
        );
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops")
            .unwrap();
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }
}
