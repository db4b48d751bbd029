//! What the reconcilers remember between passes: the standing-privilege scan's findings, recent
//! answers to "may the operator bind this role?", and the versions our own writes produced. Kept
//! apart from [`super::context::Context`] so that the context and the reconcilers that fill
//! these do not depend on each other.
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::policy::role_readiness::Bindability;
use crate::policy::standing::RoleFindings;

/// Counts for one PrivilegedRole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StandingCounts {
    /// Standing bindings, break-glass ones not included: the value of
    /// `kubepim_unmanaged_privileged_bindings{role}`.
    pub unmanaged: u32,
    /// Standing bindings held by break-glass identities only.
    pub break_glass: u32,
}

/// What the latest successful scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandingSnapshot {
    /// When it finished (`None`: no scan has finished yet).
    pub scanned_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub duration: Duration,
    /// Bindings it looked at (our own excluded).
    pub bindings_seen: u64,
    /// Every PrivilegedRole known to that scan, zeros included (bounded by the PrivilegedRoles).
    pub roles: BTreeMap<String, StandingCounts>,
}

/// The scan's findings, shared through [`super::context::Context::standing`] (for metrics) and its memory of
/// the previous scan (to publish Events only on change).
///
/// For the metrics exporter: read [`StandingFindings::snapshot`] on each scrape and export, per entry of
/// `roles`, `kubepim_unmanaged_privileged_bindings{role="<name>"} = unmanaged` (and, if wanted,
/// the break-glass count as a separate series). An entry exists for every PrivilegedRole, so the
/// gauge is 0 rather than absent for a clean role; a deleted PrivilegedRole drops out at the next
/// scan.
#[derive(Debug, Default)]
pub struct StandingFindings {
    pub(super) latest: Mutex<StandingSnapshot>,
    /// Per PrivilegedRole, the findings last reported (status written, Event published).
    reported: Mutex<BTreeMap<String, RoleFindings>>,
}

impl StandingFindings {
    /// A copy of the latest successful scan's figures.
    pub fn snapshot(&self) -> StandingSnapshot {
        self.latest.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `(role, unmanaged)` pairs: the series of `kubepim_unmanaged_privileged_bindings`.
    pub fn unmanaged_privileged_bindings(&self) -> Vec<(String, u32)> {
        self.snapshot()
            .roles
            .into_iter()
            .map(|(role, counts)| (role, counts.unmanaged))
            .collect()
    }

    pub(super) fn reported(&self, role: &str) -> Option<RoleFindings> {
        self.reported.lock().ok()?.get(role).cloned()
    }

    pub(super) fn remember(&self, role: &str, findings: RoleFindings) {
        if let Ok(mut reported) = self.reported.lock() {
            reported.insert(role.to_string(), findings);
        }
    }

    pub(super) fn forget_all_but(&self, roles: &BTreeMap<String, StandingCounts>) {
        if let Ok(mut reported) = self.reported.lock() {
            reported.retain(|role, _| roles.contains_key(role));
        }
    }
}

/// How long a "no" is reused: below the reconciler's 60 s re-check, so every periodic pass asks
/// afresh and a `helm upgrade` that adds the role to `bindableRoles` shows within a minute.
pub const NOT_BINDABLE_TTL: Duration = Duration::from_secs(50);
/// How long a "yes" is reused. The operator's own RBAC rarely changes; a lost `bind` would also
/// surface at the next activation (as a failed binding create). Keeps an idle cluster's calls to
/// one review per referenced role per ten minutes.
pub const BINDABLE_TTL: Duration = Duration::from_secs(600);

/// Remembered access answers, by what was asked.
#[derive(Default)]
pub struct BindChecks {
    answers: Mutex<HashMap<String, (Instant, Bindability)>>,
}

fn ttl(answer: &Bindability) -> Duration {
    {
        match answer {
            Bindability::Bindable => BINDABLE_TTL,
            Bindability::NotBindable { .. } => NOT_BINDABLE_TTL,
        }
    }
}

impl BindChecks {
    pub(super) fn get(&self, key: &str) -> Option<Bindability> {
        let answers = self.answers.lock().ok()?;
        answers
            .get(key)
            .filter(|(at, answer)| at.elapsed() < ttl(answer))
            .map(|(_, answer)| answer.clone())
    }

    pub(super) fn put(&self, key: String, answer: Bindability) {
        if let Ok(mut answers) = self.answers.lock() {
            // Bounded by the roles referenced within the last TTL.
            answers.retain(|_, (at, answer)| at.elapsed() < ttl(answer));
            answers.insert(key, (Instant::now(), answer));
        }
    }
}

/// Per request, the newest resourceVersion our own writes produced: a cached version older than
/// that is superseded (see [`WrittenVersions::is_superseded`]).
#[derive(Debug, Default)]
pub struct WrittenVersions {
    newest: Mutex<HashMap<String, u64>>,
}

impl WrittenVersions {
    /// Remembers the version a write of ours produced.
    pub fn note_written(&self, request: &str, resource_version: Option<&str>) {
        let Some(rv) = resource_version.and_then(|rv| rv.parse::<u64>().ok()) else {
            return;
        };
        if let Ok(mut written) = self.newest.lock() {
            let entry = written.entry(request.to_string()).or_insert(rv);
            *entry = (*entry).max(rv);
        }
    }

    /// Is this version older than one our own writes produced? resourceVersions are opaque by
    /// contract but are etcd revisions in practice; anything unparsable is never called stale.
    pub fn is_superseded(&self, request: &str, resource_version: Option<&str>) -> bool {
        let Some(rv) = resource_version.and_then(|rv| rv.parse::<u64>().ok()) else {
            return false;
        };
        let Ok(mut written) = self.newest.lock() else {
            return false;
        };
        match written.get(request) {
            Some(&newest) if rv < newest => true,
            Some(_) => {
                // The cache has caught up: forget, so the map only holds requests in flight.
                written.remove(request);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_roles_for_the_metric() {
        let findings = StandingFindings::default();
        assert_eq!(findings.snapshot(), StandingSnapshot::default());
        *findings.latest.lock().unwrap() = StandingSnapshot {
            roles: BTreeMap::from([
                (
                    "a".to_string(),
                    StandingCounts {
                        unmanaged: 2,
                        break_glass: 1,
                    },
                ),
                ("b".to_string(), StandingCounts::default()),
            ]),
            ..Default::default()
        };
        assert_eq!(
            findings.unmanaged_privileged_bindings(),
            [("a".to_string(), 2), ("b".to_string(), 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_no_is_asked_again_within_a_minute_a_yes_after_ten() {
        let checks = BindChecks::default();
        let not = Bindability::NotBindable { namespace: None };
        checks.put("no".into(), not.clone());
        checks.put("yes".into(), Bindability::Bindable);
        assert_eq!(checks.get("no"), Some(not));
        assert_eq!(checks.get("other"), None);
        tokio::time::advance(Duration::from_secs(51)).await;
        assert_eq!(checks.get("no"), None, "the 60 s re-check asks again");
        assert_eq!(checks.get("yes"), Some(Bindability::Bindable));
        tokio::time::advance(Duration::from_secs(550)).await;
        assert_eq!(checks.get("yes"), None);
        // Stale answers are dropped on the next insert.
        checks.put("new".into(), Bindability::Bindable);
        assert_eq!(checks.answers.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_version_older_than_our_own_write_is_superseded_until_the_cache_catches_up() {
        let written = WrittenVersions::default();
        written.note_written("r", Some("10"));
        assert!(written.is_superseded("r", Some("9")));
        assert!(!written.is_superseded("r", Some("10")));
        // Caught up: forgotten, so an older version is no longer judged against it.
        assert!(!written.is_superseded("r", Some("9")));
        assert!(!written.is_superseded("r", Some("not-a-number")));
    }
}
