//! The HTTPS server: `POST /mutate` and `POST /validate` with an `AdmissionReview`, nothing else.
//!
//! hyper (HTTP/1.1) over tokio-rustls. Bodies are bounded ([`MAX_BODY`]), handshakes and header
//! reads time out, connections are capped, and shutdown stops accepting and lets requests in
//! flight finish (for at most [`SHUTDOWN_GRACE`]). What a review is answered with is
//! [`super::handler`]'s business.
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
use kube::Client;
use tokio::net::TcpListener;

use crate::listen::{Accepted, plain};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::handler::{Handler, Snapshots};
use super::telemetry::WebhookTelemetry;
use super::tls::{self, Resolver};
use super::{Error, MUTATE_PATH, VALIDATE_PATH, WebhookSettings};

type Full = http_body_util::Full<Bytes>;

/// Largest request body accepted: an AdmissionReview carries the object and the old object,
/// each at most what the API server stores (about 1.5 MiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// Limits on a slow or idle client.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight at shutdown get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn route(
    handler: Arc<Handler>,
    request: Request<Incoming>,
) -> Result<Response<Full>, Infallible> {
    let path = request.uri().path().to_string();
    if path != MUTATE_PATH && path != VALIDATE_PATH {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    }
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Ok(response);
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    }
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(request.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Err(_) => {
            return Ok(plain(
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time",
            ));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
        }
        Ok(Err(e)) => {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let response = match handler.review(&path, &body).await {
        Err((status, message)) => {
            tracing::warn!(%status, %message, endpoint = %path, "bad admission request");
            plain(status, message)
        }
        Ok(review) => match serde_json::to_vec(&review) {
            Ok(json) => {
                let mut response = Response::new(Full::new(Bytes::from(json)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the response: {e}"),
            ),
        },
    };
    Ok(response)
}

/// Serves on `listener` until `shutdown` resolves, then waits up to [`SHUTDOWN_GRACE`] for the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    handler: Arc<Handler>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    while let Some(Accepted {
        permit,
        stream,
        peer,
    }) = crate::listen::next(&listener, &slots, &mut shutdown, "webhook").await
    {
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls_stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "webhook TLS handshake timed out");
                        return;
                    }
                };
            let service = service_fn(move |request| route(handler.clone(), request));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls_stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("webhook requests still in flight after the shutdown grace period");
        }
    }
}

/// A bound webhook: the listener, its certificate source and its readiness.
pub struct Webhook {
    listener: TcpListener,
    settings: WebhookSettings,
    client: Option<Client>,
    handler: Arc<Handler>,
    resolver: Arc<Resolver>,
    ready_tx: watch::Sender<bool>,
}

impl Webhook {
    /// Binds the port (failing fast if it cannot). Nothing is served before [`Webhook::run`].
    pub async fn bind(
        client: Option<Client>,
        settings: WebhookSettings,
        snapshots: Option<Snapshots>,
    ) -> Result<Self, Error> {
        settings.check()?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: settings.listen,
                source,
            })?;
        let (ready_tx, _) = watch::channel(false);
        Ok(Self {
            listener,
            handler: Arc::new(Handler::new(snapshots, client.clone())),
            client,
            settings,
            resolver: Arc::new(Resolver::default()),
            ready_tx,
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// True once a serving certificate is in place (for `/readyz`).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready_tx.subscribe()
    }

    /// What `/metrics` reports of this webhook.
    pub fn telemetry(&self) -> WebhookTelemetry {
        WebhookTelemetry {
            reviews: self.handler.reviews.clone(),
            resolver: self.resolver.clone(),
            ready: self.ready_tx.subscribe(),
        }
    }

    /// A TLS configuration serving this webhook's certificate (kept fresh by [`Webhook::run`]),
    /// for another listener of this process (the audit endpoint).
    pub fn tls_config(&self) -> Result<Arc<ServerConfig>, Error> {
        tls::server_config(self.resolver.clone())
    }

    /// Serves, and keeps the certificate fresh, until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let tls = tls::server_config(self.resolver.clone())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let certificates = tls::keep_fresh(
            self.client.clone(),
            self.settings.clone(),
            self.resolver.clone(),
            self.ready_tx.clone(),
            stopped(),
        );
        let addr = self.local_addr();
        tracing::info!(?addr, mode = ?self.settings.cert_mode, url = ?self.settings.url, "admission webhook listening");
        let server = serve(self.listener, tls, self.handler.clone(), stopped());
        let ready_tx = self.ready_tx.clone();
        let trigger = async move {
            shutdown.await;
            ready_tx.send_replace(false);
            let _ = stop_tx.send(true);
        };
        tokio::join!(certificates, server, trigger);
        tracing::info!("admission webhook stopped");
        Ok(())
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
