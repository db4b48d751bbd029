//! The config file as written, and its validation into a [`NotifyConfig`].
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::config::{
    Audience, DEFAULT_QUEUE_SIZE, MAX_QUEUE_SIZE, NotifyConfig, SinkConfig, SinkKind,
};
use super::event::EventKind;
use super::secret::SecretUrl;
use super::sources::{resolve_headers, resolve_url};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    queue_size: Option<usize>,
    // Options throughout, so that an explicit `null` (as templating tends to write) means
    // "absent" rather than a type error.
    #[serde(default)]
    sinks: Option<Vec<RawSink>>,
    #[serde(default)]
    audiences: Option<RawAudiences>,
    #[serde(default)]
    routes: Option<RawRoutes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawSink {
    name: String,
    #[serde(rename = "type")]
    kind: SinkKind,
    #[serde(default)]
    pub(super) url_from: Option<RawSource>,
    /// Accepted only to refuse it with a helpful message, never read.
    #[serde(default)]
    pub(super) url: Option<IgnoredAny>,
    #[serde(default)]
    headers: Option<Vec<RawHeader>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawSource {
    #[serde(default)]
    pub(super) file: Option<PathBuf>,
    #[serde(default)]
    pub(super) env: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawHeader {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value: Option<String>,
    #[serde(default)]
    pub(super) value_from: Option<RawSource>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAudiences {
    approvers: Option<Vec<String>>,
    requester: Option<Vec<String>>,
    audit: Option<Vec<String>>,
    security: Option<Vec<String>>,
}

impl RawAudiences {
    fn get(&self, a: Audience) -> (&'static str, Option<&Vec<String>>) {
        match a {
            Audience::Approvers => ("approvers", self.approvers.as_ref()),
            Audience::Requester => ("requester", self.requester.as_ref()),
            Audience::Audit => ("audit", self.audit.as_ref()),
            Audience::Security => ("security", self.security.as_ref()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRoutes {
    requested: Option<Vec<String>>,
    approved: Option<Vec<String>>,
    denied: Option<Vec<String>>,
    activated: Option<Vec<String>>,
    expired: Option<Vec<String>>,
    cancelled: Option<Vec<String>>,
    revoked: Option<Vec<String>>,
    failed: Option<Vec<String>>,
    break_glass: Option<Vec<String>>,
}

impl RawRoutes {
    fn get(&self, kind: EventKind) -> Option<&Vec<String>> {
        match kind {
            EventKind::Requested => self.requested.as_ref(),
            EventKind::Approved => self.approved.as_ref(),
            EventKind::Denied => self.denied.as_ref(),
            EventKind::Activated => self.activated.as_ref(),
            EventKind::Expired => self.expired.as_ref(),
            EventKind::Cancelled => self.cancelled.as_ref(),
            EventKind::Revoked => self.revoked.as_ref(),
            EventKind::Failed => self.failed.as_ref(),
            EventKind::BreakGlass => self.break_glass.as_ref(),
        }
    }
}

impl RawConfig {
    pub(super) fn validate(
        self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<String>,
    ) -> NotifyConfig {
        let queue_size = self.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
        if !(1..=MAX_QUEUE_SIZE).contains(&queue_size) {
            problems.push(format!(
                "queueSize must be between 1 and {MAX_QUEUE_SIZE}, not {queue_size}"
            ));
        }
        let mut sinks: Vec<SinkConfig> = Vec::new();
        let audiences_raw = self.audiences.unwrap_or_default();
        let routes_raw = self.routes.unwrap_or_default();
        for (i, raw) in self.sinks.unwrap_or_default().into_iter().enumerate() {
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
            cluster: self.cluster.filter(|c| !c.trim().is_empty()),
            queue_size,
            sinks,
            routes,
        }
    }
}
