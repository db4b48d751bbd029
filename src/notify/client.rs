//! The HTTP client: hyper-util's pooled client over rustls (ring, system roots), HTTP/1.1.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use super::config::SinkConfig;
use super::error::NotifyError;
use super::retry::{Verdict, classify};

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

const USER_AGENT_VALUE: &str = concat!("kubepim/", env!("CARGO_PKG_VERSION"));
/// How much of a refusal's body is read, and how much of it is quoted in a message.
const BODY_LIMIT: usize = 4096;
const QUOTE_LIMIT: usize = 200;

/// Builds the client. The system roots are required only when some sink uses `https`.
pub(crate) fn build(need_tls: bool, connect_timeout: Duration) -> Result<HttpClient, NotifyError> {
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| NotifyError::Tls(e.to_string()))?;
    let tls = match builder.clone().with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) if need_tls => {
            return Err(NotifyError::Tls(format!(
                "no usable CA certificate in the system trust store ({e}); install one or point \
                 SSL_CERT_FILE at a PEM bundle"
            )));
        }
        Err(_) => builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

/// Every message of an error's chain, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// One POST of `body` to the sink. Returns what it means and a description that names no
/// secret (URL redacted, header values never quoted).
pub(crate) async fn attempt(
    client: &HttpClient,
    sink: &SinkConfig,
    body: Bytes,
    timeout: Duration,
) -> (Verdict, String) {
    let mut request = match Request::post(sink.url.uri().clone()).body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return (Verdict::GiveUp, sink.url.redact(&chain(&e))),
    };
    let headers = request.headers_mut();
    for name in sink.headers.keys() {
        for value in sink.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(USER_AGENT_VALUE));

    let exchange = async {
        let response = client.request(request).await.map_err(|e| chain(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Read (a bounded part of) the body so the connection can be reused and a refusal
        // can be quoted.
        let text = match Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        Ok::<_, String>((status, retry_after, text))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => (
            Verdict::Retry { after: None },
            format!("no response within {timeout:?}"),
        ),
        Ok(Err(e)) => (Verdict::Retry { after: None }, sink.url.redact(&e)),
        Ok(Ok((status, retry_after, text))) => {
            let verdict = classify(status, retry_after.as_deref(), Utc::now());
            let quoted: String = text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(QUOTE_LIMIT)
                .collect();
            let detail = if quoted.is_empty() || status.is_success() {
                format!("HTTP {status}")
            } else {
                sink.url.redact(&format!("HTTP {status}: {quoted}"))
            };
            (verdict, detail)
        }
    }
}
