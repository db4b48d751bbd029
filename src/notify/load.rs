//! Reading the file described in [`super::config`] and validating it into a [`NotifyConfig`].
//! Validation collects every problem instead of stopping at the first, so that one failed
//! start-up names all of them.
use std::path::Path;

use super::config::{Audience, DEFAULT_QUEUE_SIZE, MAX_QUEUE_SIZE, NotifyConfig, SinkConfig};
use super::error::NotifyError;
use super::event::EventKind;
use super::raw::RawConfig;
use super::secret::{SecretUrl, scrub_urls};
use super::sources::{resolve_headers, resolve_url};

impl NotifyConfig {
    /// Reads and validates the file, resolving URLs and headers from files and the environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, NotifyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| NotifyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Validates `text` as if read from `path`, looking environment variables up with `env`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, NotifyError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| NotifyError::Parse {
            path: path.to_path_buf(),
            message: scrub_urls(&e.to_string()),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        let config = validate(raw, base, env, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(NotifyError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }
}

/// The validated config; what is wrong goes to `problems`, and the config is unusable unless
/// that stays empty.
fn validate(
    file: RawConfig,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> NotifyConfig {
    let queue_size = file.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
    if !(1..=MAX_QUEUE_SIZE).contains(&queue_size) {
        problems.push(format!(
            "queueSize must be between 1 and {MAX_QUEUE_SIZE}, not {queue_size}"
        ));
    }
    let mut sinks: Vec<SinkConfig> = Vec::new();
    let audiences_raw = file.audiences.unwrap_or_default();
    let routes_raw = file.routes.unwrap_or_default();
    for (i, raw) in file.sinks.unwrap_or_default().into_iter().enumerate() {
        let name = raw.name.trim().to_string();
        if name.is_empty() {
            problems.push(format!("sink #{} has an empty name", i + 1));
            continue;
        }
        if sinks.iter().any(|s| s.name == name) {
            problems.push(format!("sink name {name:?} is used more than once"));
            continue;
        }
        let url = resolve_url(&name, &raw, base, env, problems);
        let headers = resolve_headers(
            &name,
            raw.headers.as_deref().unwrap_or_default(),
            base,
            env,
            problems,
        );
        if let Some(url) = url {
            sinks.push(SinkConfig {
                name,
                kind: raw.kind,
                url,
                headers,
            });
        } else {
            // Keep the name so routes naming it are not reported as unknown as well.
            sinks.push(SinkConfig {
                name,
                kind: raw.kind,
                url: SecretUrl::parse("http://invalid").expect("static URL"),
                headers,
            });
        }
    }
    let find = |name: &str| sinks.iter().position(|s| s.name == name);
    let mut lookup = |names: &[String], context: &dyn Fn() -> String| -> Vec<usize> {
        let mut out = Vec::new();
        for n in names {
            match find(n) {
                Some(i) if !out.contains(&i) => out.push(i),
                Some(_) => {}
                None => problems.push(format!("{} names unknown sink {n:?}", context())),
            }
        }
        out
    };
    let mut audiences: Vec<(Audience, Vec<usize>)> = Vec::new();
    for a in [
        Audience::Approvers,
        Audience::Requester,
        Audience::Audit,
        Audience::Security,
    ] {
        let (key, names) = audiences_raw.get(a);
        let ids = names
            .map(|n| lookup(n, &|| format!("audiences.{key}")))
            .unwrap_or_default();
        audiences.push((a, ids));
    }
    let mut routes: [Vec<usize>; EventKind::ALL.len()] = Default::default();
    for kind in EventKind::ALL {
        routes[kind.index()] = match routes_raw.get(kind) {
            Some(names) => lookup(names, &|| format!("routes.{kind}")),
            None => {
                let mut ids: Vec<usize> = Vec::new();
                for a in Audience::defaults_for(kind) {
                    let (_, of) = audiences.iter().find(|(x, _)| x == a).expect("all");
                    for i in of {
                        if !ids.contains(i) {
                            ids.push(*i);
                        }
                    }
                }
                ids
            }
        };
    }
    NotifyConfig {
        cluster: file.cluster.filter(|c| !c.trim().is_empty()),
        queue_size,
        sinks,
        routes,
    }
}
