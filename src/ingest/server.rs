//! `POST /audit`: the API server's audit webhook posts its batches here, nothing else is served.
//!
//! In order, and each refusal before any further work: a path other than `/audit` is 404, a
//! method other than POST 405, a missing or wrong bearer token 401 (the body is never read), a
//! declared or actual body over the cap 413, a body that is not an `audit.k8s.io/v1` EventList
//! 400. Refused posts change nothing. Served over TLS with the admission webhook's certificate
//! when the webhook runs in this process, else plain HTTP (loopback, or behind a TLS proxy).
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::listen::{Accepted, plain};
use crate::metrics::Metrics;
use crate::policy::activity::parse_batch;

use super::aggregator::Aggregator;
use super::{AUDIT_PATH, Error, IngestSettings, auth};

type Full = http_body_util::Full<Bytes>;

const MAX_CONNECTIONS: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct State {
    token: String,
    max_body: usize,
    aggregator: Arc<Aggregator>,
    metrics: Arc<Metrics>,
}

async fn route(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full>, Infallible> {
    if request.uri().path() != AUDIT_PATH {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    }
    if request.method() != Method::POST {
        state.metrics.observe_audit_batch("wrong_method");
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an audit EventList",
        ));
    }
    if !auth::authorized(request.headers(), &state.token) {
        state.metrics.observe_audit_batch("unauthorized");
        let presented = match request.headers().get(header::AUTHORIZATION) {
            None => "none",
            Some(v) if v.as_bytes().starts_with(b"Bearer ") => "a wrong bearer token",
            Some(_) => "another scheme",
        };
        tracing::warn!(presented, "audit post refused: no or wrong bearer token");
        return Ok(plain(StatusCode::UNAUTHORIZED, "unauthorized"));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        state.metrics.observe_audit_batch("too_large");
        plain(StatusCode::PAYLOAD_TOO_LARGE, "batch too large")
    };
    if declared.is_some_and(|n| n > state.max_body) {
        return Ok(too_large());
    }
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(request.into_body(), state.max_body).collect(),
    )
    .await
    {
        Err(_) => {
            state.metrics.observe_audit_batch("malformed");
            return Ok(plain(
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time",
            ));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Ok(too_large()),
        Ok(Err(_)) => {
            state.metrics.observe_audit_batch("malformed");
            return Ok(plain(StatusCode::BAD_REQUEST, "could not read the body"));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let events = match parse_batch(&body) {
        Ok(events) => events,
        Err(error) => {
            state.metrics.observe_audit_batch("malformed");
            tracing::warn!(%error, "audit post refused: not an audit EventList");
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                "not an audit.k8s.io/v1 EventList",
            ));
        }
    };
    state.metrics.observe_audit_batch("accepted");
    let counts = state.aggregator.ingest(&events);
    tracing::debug!(events = events.len(), ?counts, "audit batch");
    Ok(plain(StatusCode::OK, "ok"))
}

/// A bound audit endpoint.
pub struct AuditListener {
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<Arc<ServerConfig>>,
}

impl AuditListener {
    /// Binds the port (failing fast if it cannot). Serves HTTPS with `settings.tls_files` when
    /// given, else with `webhook_tls` (the admission webhook's configuration, whose certificate
    /// it keeps fresh), else plain HTTP.
    pub async fn bind(
        settings: &IngestSettings,
        aggregator: Arc<Aggregator>,
        metrics: Arc<Metrics>,
        webhook_tls: Option<Arc<ServerConfig>>,
    ) -> Result<Self, Error> {
        let tls = match &settings.tls_files {
            Some((cert, key)) => Some(tls_from_files(cert, key)?),
            None => webhook_tls,
        };
        if tls.is_none() {
            tracing::warn!(
                "the audit endpoint serves plain HTTP: the API server sends its token over HTTPS \
                 only, so put a TLS proxy in front or give --audit-tls-cert-file"
            );
        }
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: settings.listen,
                source,
            })?;
        Ok(Self {
            listener,
            state: Arc::new(State {
                token: settings.token.clone(),
                max_body: settings.max_body,
                aggregator,
                metrics,
            }),
            tls,
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then lets posts in flight finish (briefly).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let addr = self.local_addr();
        tracing::info!(?addr, tls = self.tls.is_some(), "audit endpoint listening");
        let acceptor = self.tls.map(TlsAcceptor::from);
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        while let Some(Accepted {
            permit,
            stream,
            peer,
        }) = crate::listen::next(&self.listener, &slots, &mut shutdown, "audit").await
        {
            let state = self.state.clone();
            let acceptor = acceptor.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                match acceptor {
                    None => serve_connection(stream, state, watcher, peer).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls)) => serve_connection(tls, state, watcher, peer).await,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "audit TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "audit TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        drop(self.listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
        }
        tracing::info!("audit endpoint stopped");
    }
}

fn tls_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, Error> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| Error::Tls(format!("{}: {e}", p.display())))
    };
    let pair = crate::admission::certs::CertAndKey {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    };
    let resolver = Arc::new(crate::admission::tls::Resolver::default());
    resolver.set(&pair).map_err(|e| Error::Tls(e.to_string()))?;
    crate::admission::tls::server_config(resolver).map_err(|e| Error::Tls(e.to_string()))
}

async fn serve_connection<S>(
    stream: S,
    state: Arc<State>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| route(state.clone(), request));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%peer, %error, "audit connection ended with an error");
    }
}
