//! Role integrity: the rules a grant bound, recorded at activation, against the referenced role's
//! rules now. Widening ends the grant (`RoleChanged`); narrowing is recorded and the grant kept.
//!
//! Rules are compared by what they allow, not by their text: each rule is read as the set of
//! requests it matches, with RBAC's own wildcards (`*` for API groups, resources, verbs and
//! non-resource URLs, `*/sub` for a subresource of any resource, a trailing `*` on a URL, an
//! empty `resourceNames` for every name). A literal `*` in the new rules is only covered by a `*`
//! in the recorded ones, so replacing `get, list` with `*` is a widening. Nothing else is
//! expanded: which verbs a resource supports, or what an aggregated ClusterRole may later pick
//! up, are not known here; an aggregated ClusterRole is judged by the `rules` the API server's
//! aggregation controller wrote into it, like any other.
use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::api::conditions::ROLE_NARROWED;
use crate::api::{ActivationRequestStatus, GrantedRule};

use super::lifecycle::Step;
use super::reasons;
use super::status::set_condition;

/// At most this many rules are recorded in a request's status...
pub const MAX_RECORDED_RULES: usize = 64;
/// ... with at most this many entries in each of a rule's lists...
pub const MAX_RULE_ITEMS: usize = 64;
/// ... each at most this long...
pub const MAX_ITEM_LEN: usize = 253;
/// ... and this many bytes in all (JSON), so that 10,000 cached grants stay small. A role past
/// any bound is recorded by its digest only, and then any change of it ends the grant.
pub const MAX_RECORDED_BYTES: usize = 8 * 1024;
/// A comparison that would look at more single permissions than this gives up, as a widening.
pub const MAX_PERMISSIONS: usize = 200_000;

/// The role's rules as read now: canonical, and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub rules: Vec<GrantedRule>,
    pub digest: String,
}

impl Observed {
    pub fn of(rules: &[PolicyRule]) -> Self {
        let rules = canonical(rules);
        let digest = digest(&rules);
        Self { rules, digest }
    }

    /// Small enough to be recorded in full?
    pub fn recordable(&self) -> bool {
        self.rules.len() <= MAX_RECORDED_RULES
            && self.rules.iter().all(|r| {
                lists(r)
                    .iter()
                    .all(|l| l.len() <= MAX_RULE_ITEMS && l.iter().all(|i| i.len() <= MAX_ITEM_LEN))
            })
            && serde_json::to_vec(&self.rules).is_ok_and(|b| b.len() <= MAX_RECORDED_BYTES)
    }
}

fn lists(rule: &GrantedRule) -> [&Vec<String>; 5] {
    [
        &rule.api_groups,
        &rule.resources,
        &rule.verbs,
        &rule.resource_names,
        &rule.non_resource_urls,
    ]
}

fn sorted(items: &Option<Vec<String>>) -> Vec<String> {
    let mut items = items.clone().unwrap_or_default();
    items.sort();
    items.dedup();
    items
}

/// Every list sorted and de-duplicated, the rules sorted and de-duplicated. Nothing is merged or
/// expanded, so the same role always has the same canonical form and digest.
pub fn canonical(rules: &[PolicyRule]) -> Vec<GrantedRule> {
    let mut out: Vec<GrantedRule> = rules
        .iter()
        .map(|r| {
            let mut verbs = r.verbs.clone();
            verbs.sort();
            verbs.dedup();
            GrantedRule {
                api_groups: sorted(&r.api_groups),
                resources: sorted(&r.resources),
                verbs,
                resource_names: sorted(&r.resource_names),
                non_resource_urls: sorted(&r.non_resource_urls),
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// sha256 (lower-case hex) of the canonical rules' JSON.
pub fn digest(rules: &[GrantedRule]) -> String {
    let bytes = serde_json::to_vec(rules).unwrap_or_default();
    let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The role now, against the rules recorded at activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// It allows exactly what it did.
    Unchanged,
    /// It allows less, and nothing more: what it no longer allows.
    Narrowed { removed: Vec<String> },
    /// It allows something it did not: what was added (the grant ends).
    Widened { added: Vec<String> },
}

/// One permission: a verb on a resource (with a name, or every name), or on a URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Permission<'a> {
    Resource {
        group: &'a str,
        resource: &'a str,
        name: Option<&'a str>,
        verb: &'a str,
    },
    Url {
        url: &'a str,
        verb: &'a str,
    },
}

impl Permission<'_> {
    fn describe(&self) -> String {
        match self {
            Permission::Resource {
                group,
                resource,
                name,
                verb,
            } => {
                let group = if group.is_empty() {
                    String::new()
                } else {
                    format!(".{group}")
                };
                let name = name.map(|n| format!(" named {n}")).unwrap_or_default();
                format!("{verb} {resource}{group}{name}")
            }
            Permission::Url { url, verb } => format!("{verb} {url}"),
        }
    }
}

/// How many permissions a rule spells out (saturating).
fn size(rule: &GrantedRule) -> usize {
    let names = rule.resource_names.len().max(1);
    let resource = rule
        .api_groups
        .len()
        .saturating_mul(rule.resources.len())
        .saturating_mul(names);
    resource
        .saturating_add(rule.non_resource_urls.len())
        .saturating_mul(rule.verbs.len())
}

fn permissions(rule: &GrantedRule) -> impl Iterator<Item = Permission<'_>> {
    let names: Vec<Option<&str>> = if rule.resource_names.is_empty() {
        vec![None]
    } else {
        rule.resource_names
            .iter()
            .map(|n| Some(n.as_str()))
            .collect()
    };
    let resources = rule.verbs.iter().flat_map(move |verb| {
        let names = names.clone();
        rule.api_groups.iter().flat_map(move |group| {
            let names = names.clone();
            rule.resources.iter().flat_map(move |resource| {
                names
                    .clone()
                    .into_iter()
                    .map(move |name| Permission::Resource {
                        group,
                        resource,
                        name,
                        verb,
                    })
            })
        })
    });
    let urls = rule.verbs.iter().flat_map(move |verb| {
        rule.non_resource_urls
            .iter()
            .map(move |url| Permission::Url { url, verb })
    });
    resources.chain(urls)
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|i| i == "*" || i == item)
}

/// RBAC's resource match: `*`, the same resource, or `*/sub` for a subresource `sub` of any
/// resource.
fn resource_matches(list: &[String], resource: &str) -> bool {
    list.iter().any(|r| {
        r == "*"
            || r == resource
            || r.strip_prefix("*/").is_some_and(|sub| {
                resource
                    .split_once('/')
                    .is_some_and(|(_, requested)| requested == sub)
            })
    })
}

/// RBAC's non-resource URL match: `*`, the same URL, or a prefix ending in `*`.
fn url_matches(list: &[String], url: &str) -> bool {
    list.iter()
        .any(|u| u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p)))
}

fn covers(rule: &GrantedRule, p: &Permission<'_>) -> bool {
    match p {
        Permission::Resource {
            group,
            resource,
            name,
            verb,
        } => {
            has(&rule.verbs, verb)
                && has(&rule.api_groups, group)
                && resource_matches(&rule.resources, resource)
                && (rule.resource_names.is_empty()
                    || name.is_some_and(|n| rule.resource_names.iter().any(|r| r == n)))
        }
        Permission::Url { url, verb } => {
            has(&rule.verbs, verb) && url_matches(&rule.non_resource_urls, url)
        }
    }
}

/// What `rules` allow that `base` does not (`None`: too large to tell).
fn uncovered(base: &[GrantedRule], rules: &[GrantedRule]) -> Option<Vec<String>> {
    let total = rules.iter().fold(0usize, |n, r| n.saturating_add(size(r)));
    if total > MAX_PERMISSIONS {
        return None;
    }
    let mut out: Vec<Permission<'_>> = rules
        .iter()
        .flat_map(permissions)
        .filter(|p| !base.iter().any(|b| covers(b, p)))
        .collect();
    out.sort();
    out.dedup();
    Some(out.iter().map(Permission::describe).collect())
}

/// Compares the role's rules now with those recorded when the grant was made.
pub fn compare(granted: &[GrantedRule], now: &[GrantedRule]) -> Integrity {
    let Some(added) = uncovered(granted, now) else {
        return Integrity::Widened {
            added: vec![format!(
                "rules too large to compare (over {MAX_PERMISSIONS} permissions)"
            )],
        };
    };
    if !added.is_empty() {
        return Integrity::Widened { added };
    }
    match uncovered(now, granted) {
        Some(removed) if !removed.is_empty() => Integrity::Narrowed { removed },
        // Nothing allowed that was not; a recorded side too large to list removals from is
        // reported as unchanged rather than guessed at.
        _ => Integrity::Unchanged,
    }
}

/// A grant's recorded rules against the role now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing recorded (a grant made before kubepim recorded rules), or the role not read yet.
    Unknown,
    Unchanged,
    Narrowed {
        removed: Vec<String>,
    },
    Widened {
        added: Vec<String>,
    },
    /// The role changed, and the rules recorded at activation were digest-only (too large) or do
    /// not match their digest: what changed cannot be told, so the grant ends.
    ChangedUnrecorded,
}

/// Judges the grant recorded in `status` against the role `now`.
pub fn judge(status: &ActivationRequestStatus, now: Option<&Observed>) -> Verdict {
    let (Some(recorded), Some(now)) = (status.role_digest.as_deref(), now) else {
        return Verdict::Unknown;
    };
    if recorded == now.digest {
        return Verdict::Unchanged;
    }
    // Only the controller writes these fields (admission refuses everyone else), but a record
    // that does not hash to its digest is no record.
    if digest(&status.granted_rules) != recorded {
        return Verdict::ChangedUnrecorded;
    }
    match compare(&status.granted_rules, &now.rules) {
        Integrity::Unchanged => Verdict::Unchanged,
        Integrity::Narrowed { removed } => Verdict::Narrowed { removed },
        Integrity::Widened { added } => Verdict::Widened { added },
    }
}

/// "a, b, c and 4 more".
pub fn summary(items: &[String], shown: usize) -> String {
    let mut text = items
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > shown {
        text.push_str(&format!(" and {} more", items.len() - shown));
    }
    text
}

/// The step once the role's rules were compared: a grant whose role widened ends (`RoleChanged`,
/// naming what was added); every other step is unchanged. `role` names the role ("ClusterRole
/// admin").
pub fn check(step: &Step, verdict: &Verdict, role: &str) -> Step {
    if !matches!(step, Step::KeepActive { .. }) {
        return step.clone();
    }
    let message = match verdict {
        Verdict::Widened { added } => format!(
            "{role} now allows more than when the grant was made: added {}; the grant ends",
            summary(added, 10)
        ),
        Verdict::ChangedUnrecorded => format!(
            "{role} changed during the grant, and its rules at activation were too large to \
             record in full: the grant ends"
        ),
        _ => return step.clone(),
    };
    Step::End {
        phase: crate::api::Phase::Revoked,
        reason: reasons::ROLE_CHANGED,
        message,
    }
}

/// Records in the new status what integrity needs: at activation the role's rules (in full when
/// they fit, always their digest); while Active, a narrowing as the `RoleNarrowed` condition
/// (True with what was removed; False again once the role allows all it did). The recorded rules
/// are never rewritten, so a later widening is judged against what the grant was made with.
pub fn record(
    status: &mut ActivationRequestStatus,
    step: &Step,
    activation_rules: Option<&Observed>,
    verdict: &Verdict,
    role: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    match step {
        Step::Activate { .. } => {
            if let Some(observed) = activation_rules {
                status.granted_rules = if observed.recordable() {
                    observed.rules.clone()
                } else {
                    Vec::new()
                };
                status.role_digest = Some(observed.digest.clone());
            }
        }
        Step::KeepActive { .. } => {
            let narrowed = status
                .conditions
                .iter()
                .any(|c| c.type_ == ROLE_NARROWED && c.status == "True");
            match verdict {
                Verdict::Narrowed { removed } => set_condition(
                    &mut status.conditions,
                    ROLE_NARROWED,
                    true,
                    reasons::ROLE_NARROWED,
                    &format!(
                        "{role} now allows less than when the grant was made: removed {}; the \
                         grant is kept",
                        summary(removed, 10)
                    ),
                    generation,
                    now,
                ),
                Verdict::Unchanged if narrowed => set_condition(
                    &mut status.conditions,
                    ROLE_NARROWED,
                    false,
                    reasons::ROLE_UNCHANGED,
                    &format!("{role} allows again exactly what it did when the grant was made"),
                    generation,
                    now,
                ),
                _ => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "role_integrity_tests.rs"]
mod tests;
