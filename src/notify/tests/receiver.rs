//! A local HTTP receiver on 127.0.0.1 (only loopback) that answers from a script and records
//! every request it gets.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Slept before answering.
    pub delay: Duration,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn ok() -> Self {
        Self::status(200)
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_string();
        self
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// When it arrived (before any scripted delay).
    pub at: Instant,
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

pub struct Receiver {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    count: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering request number `i` (from 0) with `script(i)`.
    pub async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let (count_tx, count) = watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let script: Script = Arc::new(script);
        let task = {
            let hits = hits.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (hits, count_tx, script) = (hits.clone(), count_tx.clone(), script.clone());
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (hits, count_tx, script) =
                            (hits.clone(), count_tx.clone(), script.clone());
                        async move {
                            let at = Instant::now();
                            let path = req.uri().to_string();
                            let headers = req.headers().clone();
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let index = {
                                let mut hits = hits.lock().unwrap();
                                hits.push(Hit {
                                    path,
                                    headers,
                                    body,
                                    at,
                                });
                                hits.len() - 1
                            };
                            count_tx.send_replace(index + 1);
                            let reply = script(index);
                            tokio::time::sleep(reply.delay).await;
                            let mut response = Response::builder()
                                .status(StatusCode::from_u16(reply.status).unwrap());
                            for (name, value) in &reply.headers {
                                response = response.header(*name, value);
                            }
                            Ok::<_, Infallible>(
                                response.body(Full::new(Bytes::from(reply.body))).unwrap(),
                            )
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self {
            addr,
            hits,
            count,
            task,
        }
    }

    /// A receiver that answers everything with `reply`.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits (at most 5 s) until `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(5), count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} requests expected, {} arrived", self.hits().len()))
            .unwrap();
        self.hits()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
