//! Reading secrets (sink URLs, header values) from files and the environment. Messages name
//! where a secret came from, never the secret.
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::raw::{RawHeader, RawSink, RawSource};
use super::secret::SecretUrl;

/// Where a secret came from, for messages (never the secret itself).
fn describe(source: &RawSource, base: &Path) -> String {
    match (&source.file, &source.env) {
        (Some(f), _) => format!("file {}", base.join(f).display()),
        (None, Some(e)) => format!("environment variable {e}"),
        (None, None) => "nowhere".into(),
    }
}

/// Reads a secret from exactly one of `file` and `env`; `what` names it in messages.
fn read_source(
    what: &str,
    source: &RawSource,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<String> {
    let value = match (&source.file, &source.env) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push(format!("{what}: set exactly one of `file` and `env`"));
            return None;
        }
        (Some(file), None) => {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{what}: cannot read file {}: {e}", path.display()));
                    return None;
                }
            }
        }
        (None, Some(var)) => match env(var) {
            Some(v) => v,
            None => {
                problems.push(format!("{what}: environment variable {var} is not set"));
                return None;
            }
        },
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        problems.push(format!("{what}: {} is empty", describe(source, base)));
        return None;
    }
    Some(value)
}

pub(super) fn resolve_url(
    sink: &str,
    raw: &RawSink,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<SecretUrl> {
    if raw.url.is_some() {
        problems.push(format!(
            "sink {sink:?}: `url` is not accepted because sink URLs are secrets; mount it from a \
             Secret and use `urlFrom: {{file: PATH}}` or `urlFrom: {{env: VARIABLE}}`"
        ));
        return None;
    }
    let Some(source) = &raw.url_from else {
        problems.push(format!(
            "sink {sink:?} has no URL: set `urlFrom: {{file: PATH}}` or `urlFrom: {{env: VARIABLE}}`"
        ));
        return None;
    };
    let text = read_source(
        &format!("sink {sink:?} urlFrom"),
        source,
        base,
        env,
        problems,
    )?;
    match SecretUrl::parse(&text) {
        Ok(url) => Some(url),
        Err(why) => {
            problems.push(format!(
                "sink {sink:?}: the URL in {} {why}",
                describe(source, base)
            ));
            None
        }
    }
}

pub(super) fn resolve_headers(
    sink: &str,
    raw: &[RawHeader],
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for h in raw {
        let Ok(name) = HeaderName::from_bytes(h.name.trim().as_bytes()) else {
            problems.push(format!(
                "sink {sink:?}: {:?} is not a valid header name",
                h.name
            ));
            continue;
        };
        let what = format!("sink {sink:?} header {name}");
        let value = match (&h.value, &h.value_from) {
            (Some(v), None) => Some(v.clone()),
            (None, Some(source)) => read_source(&what, source, base, env, problems),
            _ => {
                problems.push(format!(
                    "{what}: set exactly one of `value` and `valueFrom`"
                ));
                None
            }
        };
        let Some(value) = value else { continue };
        match HeaderValue::from_str(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                headers.append(name, v);
            }
            Err(_) => problems.push(format!(
                "{what}: the value is not a valid HTTP header value (control characters?)"
            )),
        }
    }
    headers
}
