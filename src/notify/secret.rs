//! Sink URLs are credentials: only their scheme and host may be shown.
use std::fmt;
use std::sync::LazyLock;

use http::Uri;
use regex::Regex;

/// A sink URL. `Display` and `Debug` show `scheme://host[:port]` only; the path, query and any
/// user-info (where Slack and most webhook services keep the secret) are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    uri: Uri,
    /// The text as read, kept so that [`SecretUrl::redact`] can scrub it from foreign messages.
    raw: String,
}

impl SecretUrl {
    /// Parses an absolute `http` or `https` URL with a host. The error never contains the input.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if !raw.contains("://") {
            return Err("is not an absolute URL (expected http:// or https://)");
        }
        let uri: Uri = raw.parse().map_err(|_| "is not a valid URL")?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(_) => return Err("must use the http or https scheme"),
            None => return Err("is not an absolute URL (expected http:// or https://)"),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err("has no host");
        }
        Ok(Self {
            uri,
            raw: raw.to_string(),
        })
    }

    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }

    /// `scheme://host[:port]`: the most any message may say about this URL.
    pub fn redacted(&self) -> String {
        let scheme = self.uri.scheme_str().unwrap_or("?");
        let host = self.uri.host().unwrap_or("?");
        match self.uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }
    }

    /// Removes this URL and every secret-looking part of it (user-info, path and query, and
    /// each of their longer segments, which is where tokens live) from a message written by
    /// someone else (an HTTP library's error, a response body that echoes the request), then
    /// cuts any other URL down to scheme and host.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.raw, &self.redacted());
        let mut parts: Vec<&str> = Vec::new();
        if let Some(pq) = self.uri.path_and_query() {
            parts.push(pq.as_str());
            parts.push(pq.path());
            parts.extend(pq.query());
            let pieces = pq.path().split('/');
            let query = pq.query().unwrap_or("").split(['&', '=']);
            parts.extend(pieces.chain(query).filter(|p| p.len() >= SECRET_PIECE));
        }
        if let Some(authority) = self.uri.authority().map(|a| a.as_str())
            && let Some((userinfo, _)) = authority.rsplit_once('@')
        {
            parts.push(userinfo);
            parts.extend(userinfo.split(':').filter(|p| p.len() >= SECRET_PIECE));
        }
        parts.retain(|p| p.len() > 1);
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for part in parts {
            out = out.replace(part, "[redacted]");
        }
        scrub_urls(&out)
    }
}

/// Path, query and user-info pieces at least this long are treated as possible secrets.
const SECRET_PIECE: usize = 6;

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({}/[redacted])", self.redacted())
    }
}

static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b([a-z][a-z0-9+.-]*)://(?:[^\s/?#@"'`<>]*@)?([^\s/?#"'`<>]*)[^\s"'`<>]*"#)
        .expect("static regex")
});

/// Cuts every URL in `text` down to `scheme://host` (used on parse errors, which may quote a
/// value the user put in the wrong place).
pub fn scrub_urls(text: &str) -> String {
    URL.replace_all(text, "$1://$2/[redacted]").into_owned()
}
