//! A fault-injecting proxy between a client (the operator) and kube-apiserver, on loopback.
//!
//! It terminates TLS with the API server's own serving certificate (the harness made it, so the
//! client's trust in the test CA and the name 127.0.0.1 both hold) and opens one TLS connection
//! to the API server per client connection. That makes it HTTP/1.1-aware (the kube client speaks
//! only HTTP/1.1: no ALPN), so it can answer in the API server's place, while a connection stays
//! a connection: what happens to one side happens to the other.
//!
//! What it injects ([`Fault`], switched at any time, and [`FaultProxy::reset_connections`]):
//! - **latency**: every request waits before it is forwarded, and every response frame (watch
//!   events included) is delivered that long after it arrived, without queueing delays on each
//!   other;
//! - **hang**: requests are held and response frames stop (a watch goes silent), connections stay
//!   open; when the hang ends, what was held goes on, as after a healed partition: a request the
//!   client has given up on may still reach the server;
//! - **reset**: every open connection, watches included, is closed with a TCP RST;
//! - **refuse**: the listener is closed (new connections are refused) and open ones are reset,
//!   as when the API server process is gone; it listens on the same port again afterwards;
//! - **HTTP status**: every n-th request (watches included) is answered by the proxy with 429
//!   (with `Retry-After`) or 503 and a `Status` body, as API priority and fairness or an
//!   overloaded server would, without reaching the API server.
//!
//! What it does not do: partial writes or corrupted bytes; HTTP/2; faults for one resource or verb
//! only; throttling bandwidth. A connection the API server closes is closed towards the client;
//! one that cannot be opened (kube-apiserver restarting) is reset at once.
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the proxy does to traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything on.
    None,
    /// Add this one-way delay to requests and to each response frame.
    Latency(Duration),
    /// Hold requests and response frames until the fault changes.
    Hang,
    /// Close the listener and reset open connections; listen again when the fault changes.
    Refuse,
    /// Answer every `every`-th request with `code` (429 or 503), `Retry-After: retry_after` when
    /// set.
    Status {
        code: u16,
        retry_after: Option<u64>,
        every: u32,
    },
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: u64,
    pub requests: u64,
    /// Requests answered by the proxy with an injected status.
    pub injected: u64,
    /// Connections reset by [`FaultProxy::reset_connections`] or [`Fault::Refuse`].
    pub resets: u64,
    /// Connections whose upstream connection could not be opened (reset at once).
    pub upstream_failures: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    injected: AtomicU64,
    resets: AtomicU64,
    upstream_failures: AtomicU64,
}

struct Shared {
    fault: watch::Sender<Fault>,
    /// Open client connections: setting one's flag resets it.
    open: Mutex<HashMap<u64, watch::Sender<bool>>>,
    next_id: AtomicU64,
    counters: Counters,
    upstream: SocketAddr,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl Shared {
    fn reset_all(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for reset in open.values() {
            reset.send_replace(true);
        }
        self.counters
            .resets
            .fetch_add(open.len() as u64, Ordering::Relaxed);
        open.len()
    }
}

/// The proxy: listens on a loopback port until dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.reset_all();
    }
}

/// TLS towards the client (the API server's serving certificate and key) and towards the API
/// server (trusting the test CA).
pub fn tls_from_dir(dir: &Path) -> Result<(TlsAcceptor, TlsConnector)> {
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))
    };
    let chain = CertificateDer::pem_slice_iter(&read("apiserver.crt")?)
        .collect::<Result<Vec<_>, _>>()
        .context("serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&read("apiserver.key")?).context("serving key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
        roots.add(cert.context("CA certificate")?)?;
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    ))
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (kube-apiserver) with the TLS
    /// material of the control-plane directory `dir`.
    pub async fn start(upstream: SocketAddr, dir: &Path) -> Result<Self> {
        let (acceptor, connector) = tls_from_dir(dir)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::None);
        let shared = Arc::new(Shared {
            fault,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            counters: Counters::default(),
            upstream,
            acceptor,
            connector,
        });
        let task = tokio::spawn(accept_loop(listener, addr, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// `https://127.0.0.1:<port>`: give it to the client as the cluster URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        if fault == Fault::Refuse {
            self.shared.reset_all();
        }
        self.shared.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.shared.fault.borrow()
    }

    /// Resets every open connection now (TCP RST); returns how many there were.
    pub fn reset_connections(&self) -> usize {
        self.shared.reset_all()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            injected: c.injected.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            upstream_failures: c.upstream_failures.load(Ordering::Relaxed),
        }
    }
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut fault = shared.fault.subscribe();
    let mut listener = Some(listener);
    loop {
        let refusing = *fault.borrow_and_update() == Fault::Refuse;
        match (&listener, refusing) {
            (Some(_), true) => listener = None,
            (None, false) => match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    // The port is in TIME_WAIT or taken for a moment: try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ => {}
        }
        let Some(l) = &listener else {
            if fault.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(connection(stream, shared.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            changed = fault.changed() => if changed.is_err() {
                return;
            },
        }
    }
}

/// A TCP stream that is closed with a RST instead of a FIN when its connection was reset.
struct Resettable {
    inner: TcpStream,
    reset: watch::Receiver<bool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if *self.reset.borrow() {
            // Zero linger: the close that follows is an abortive one (RST), never blocking.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Deregisters a connection however its task ends.
struct Registered {
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&self.id);
    }
}

type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (reset_tx, reset_rx) = watch::channel(false);
    shared
        .open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, reset_tx);
    let _registered = Registered {
        id,
        shared: shared.clone(),
    };
    let mut reset = reset_rx.clone();
    let client = Resettable {
        inner: client,
        reset: reset_rx.clone(),
    };
    let serve = async {
        // No API server to talk to: the client's connection is reset, as near to "refused" as a
        // connection that was already accepted gets.
        let Ok(Ok(upstream)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(shared.upstream)).await
        else {
            shared
                .counters
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
            let _ = client.inner.set_zero_linger();
            return;
        };
        let _ = upstream.set_nodelay(true);
        let Ok(Ok(client_tls)) =
            tokio::time::timeout(Duration::from_secs(10), shared.acceptor.accept(client)).await
        else {
            return;
        };
        let name = ServerName::IpAddress(shared.upstream.ip().into());
        let Ok(Ok(upstream_tls)) = tokio::time::timeout(
            Duration::from_secs(10),
            shared.connector.connect(name, upstream),
        )
        .await
        else {
            return;
        };
        let Ok((sender, upstream_conn)) =
            hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(upstream_tls)).await
        else {
            return;
        };
        let sender = Arc::new(tokio::sync::Mutex::new(sender));
        let service = {
            let shared = shared.clone();
            service_fn(move |req| handle(req, sender.clone(), shared.clone()))
        };
        let downstream = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(client_tls), service);
        // Either side ending ends the connection. When the API server's side ends (it closed
        // an idle connection, or it was killed) the response in flight, if any, is finished or
        // fails as the API server left it, then the client's side is closed too.
        tokio::pin!(downstream);
        tokio::select! {
            _ = &mut downstream => {}
            _ = upstream_conn => {
                downstream.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(1), downstream).await;
            }
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = reset.wait_for(|r| *r) => {}
    }
}

/// Waits while the proxy hangs.
async fn while_hanging(fault: &mut watch::Receiver<Fault>) {
    let _ = fault.wait_for(|f| *f != Fault::Hang).await;
}

async fn handle(
    req: Request<Incoming>,
    sender: Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Incoming>>>,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, hyper::Error> {
    let n = shared.counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let mut fault = shared.fault.subscribe();
    let current = *fault.borrow_and_update();
    match current {
        Fault::Status {
            code,
            retry_after,
            every,
        } if n.is_multiple_of(u64::from(every.max(1))) => {
            shared.counters.injected.fetch_add(1, Ordering::Relaxed);
            return Ok(injected(code, retry_after));
        }
        Fault::Hang => while_hanging(&mut fault).await,
        Fault::Latency(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let response = {
        let mut sender = sender.lock().await;
        sender.ready().await?;
        sender.send_request(req).await?
    };
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, delayed(body, shared)))
}

/// The body as it arrives, each frame delivered `latency` after it arrived and none while the
/// proxy hangs. A pump reads ahead, so frames do not queue behind each other's delays.
fn delayed(mut body: Incoming, shared: Arc<Shared>) -> ProxyBody {
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Result<Frame<Bytes>, hyper::Error>)>();
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            if tx.send((Instant::now(), frame)).is_err() {
                return;
            }
        }
    });
    let fault = shared.fault.subscribe();
    let frames = futures::stream::unfold((rx, fault), |(mut rx, mut fault)| async move {
        let (arrived, frame) = rx.recv().await?;
        loop {
            let current = *fault.borrow_and_update();
            match current {
                Fault::Hang => while_hanging(&mut fault).await,
                Fault::Latency(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(arrived + d) => break,
                        _ = fault.changed() => {}
                    }
                }
                _ => break,
            }
        }
        Some((frame, (rx, fault)))
    });
    BodyExt::boxed_unsync(StreamBody::new(frames))
}

/// The answer of an API server that sheds load (429) or is unavailable (503).
fn injected(code: u16, retry_after: Option<u64>) -> Response<ProxyBody> {
    let (reason, message) = match code {
        429 => (
            "TooManyRequests",
            "too many requests (injected by the fault proxy)",
        ),
        _ => (
            "ServiceUnavailable",
            "unavailable (injected by the fault proxy)",
        ),
    };
    let mut details = serde_json::json!({});
    if let Some(secs) = retry_after {
        details["retryAfterSeconds"] = secs.into();
    }
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason,
        "details": details, "code": code,
    });
    let mut response = Response::builder()
        .status(code)
        .header("content-type", "application/json");
    if let Some(secs) = retry_after {
        response = response.header("retry-after", secs.to_string());
    }
    let body = http_body_util::Full::new(Bytes::from(status.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    response.body(body).expect("a valid injected response")
}
