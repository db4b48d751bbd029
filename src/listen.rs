//! The accept loop the operator's three listeners share (metrics and probes, the admission
//! webhook, the audit endpoint): a bounded number of connections at once, a failed accept backed
//! off instead of spun on (e.g. out of file descriptors), and a shutdown that stops taking new
//! connections at once.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode, header};
use hyper::body::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection taken, with the slot it holds until it is dropped.
pub struct Accepted {
    pub permit: OwnedSemaphorePermit,
    pub stream: TcpStream,
    pub peer: SocketAddr,
}

/// The next connection once a slot is free; `None` once `shutdown` resolved.
pub async fn next<F: Future<Output = ()>>(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut Pin<&mut F>,
    what: &'static str,
) -> Option<Accepted> {
    let permit = tokio::select! {
        permit = slots.clone().acquire_owned() => permit.ok()?,
        _ = shutdown.as_mut() => return None,
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some(Accepted { permit, stream, peer }),
                Err(error) => {
                    tracing::warn!(%error, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.as_mut() => return None,
        }
    }
}

/// A short `text/plain` answer (errors, refusals), as every listener sends them.
pub fn plain(
    status: StatusCode,
    message: impl Into<String>,
) -> Response<http_body_util::Full<Bytes>> {
    let mut response = Response::new(http_body_util::Full::new(Bytes::from(message.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
