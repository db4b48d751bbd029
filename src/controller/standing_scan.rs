//! Standing-privilege detection (security contract I2): a periodic scan of every RoleBinding and
//! ClusterRoleBinding for bindings that grant a role some PrivilegedRole hands out just in time,
//! made outside kubepim.
//!
//! - **Uncached.** Bindings are listed page by page (`limit` [`PAGE_SIZE`]) straight from the API
//!   server, never watched into a cache: a cluster has tens of thousands of unrelated bindings and
//!   the operator's memory must not grow with them. Each page is classified
//!   ([`crate::policy::standing`]) and dropped; what is kept is per PrivilegedRole two counters,
//!   at most five names per class and a fingerprint of the set.
//! - **Reported** per PrivilegedRole in `status.unmanagedBindings` (written only when it changes,
//!   as a merge patch of that field alone), as a Warning Event when the set of bindings changes
//!   (not on every scan; a Normal Event when the last one goes), and as numbers for the metric
//!   `kubepim_unmanaged_privileged_bindings{role}` through [`Findings::snapshot`].
//! - **Break-glass** bindings (every subject a configured break-glass identity) are counted apart,
//!   in `status.unmanagedBindings.breakGlass`, in the Event and in the snapshot; never dropped.
//! - **Timing.** Scans start every `--standing-privilege-scan-interval` (30 s), the first when the
//!   operator starts (after its caches synced); a binding is reported within one interval plus one
//!   scan.
//!   A scan that fails (an API error, a call over its 5 s limit, an expired continue token) is
//!   logged and leaves every status as it was; the next one starts over.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::{BindingSample, PrivilegedRole, UnmanagedBindings, labels};
use crate::policy::legitimacy::judge;
use crate::policy::lifecycle::BindingKind;
use crate::policy::reasons;
use crate::policy::standing::{BindingView, BreakGlass, RoleFindings, RoleIndex, Sample, Tally};

use super::Error;
use super::bindings;
use super::calls::{self, Refusal};
use super::context::Context;
use super::memory::{StandingCounts, StandingSnapshot};
use super::sweeper::Candidate;

/// Bindings per list call.
pub const PAGE_SIZE: u32 = 500;
/// Our own bindings are left out by the API server (and checked again here, by the same label
/// [`bindings::is_managed`] reads).
fn unmanaged_selector() -> String {
    format!("{}!={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE)
}

/// Settings of the scan.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Time between the starts of two scans.
    pub interval: Duration,
    /// Identities whose bindings are reported apart.
    pub break_glass: BreakGlass,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            break_glass: BreakGlass::default(),
        }
    }
}

/// What one scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    pub bindings_seen: u64,
    /// PrivilegedRoles whose `status.unmanagedBindings` was written.
    pub statuses_written: usize,
    /// PrivilegedRoles that got an Event.
    pub events: usize,
}

/// Runs scans every `settings.interval` until `stop` resolves, the first at once.
///
/// Start it once the caches have synced (the wiring does). Before that a scan is harmless: the
/// PrivilegedRole cache is empty until its first list is complete (kube's reflector swaps it in
/// whole), so there is nothing to look for and nothing is written. It never waits on the store's
/// readiness itself: kube-runtime's readiness future wakes only its latest poller, and the
/// wiring's waiter must not be starved.
pub async fn run(ctx: Arc<Context>, settings: ScanSettings, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(settings.interval.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => return,
        }
        // A scan of many bindings takes seconds: shutting down does not wait for it (dropping it
        // half-way leaves every status either as it was or fully written).
        let outcome = tokio::select! {
            outcome = scan(&ctx, &settings.break_glass) => outcome,
            _ = &mut stop => return,
        };
        match outcome {
            Ok(outcome) => tracing::debug!(
                bindings = outcome.bindings_seen,
                written = outcome.statuses_written,
                events = outcome.events,
                "standing-privilege scan done"
            ),
            Err(error) => {
                tracing::warn!(%error, "standing-privilege scan failed; the next one starts over")
            }
        }
    }
}

/// One scan: every binding in the cluster, then one report per PrivilegedRole in the cache.
pub async fn scan(ctx: &Context, break_glass: &BreakGlass) -> Result<ScanOutcome, Error> {
    let started = tokio::time::Instant::now();
    let mut roles = ctx.roles.state();
    // A fixed order: the same statuses are written in the same order every time.
    roles.sort_by_key(|r| r.name_any());
    let index = RoleIndex::new(roles.iter().map(|r| r.as_ref()));
    let mut tally = Tally::default();
    if !index.is_empty() {
        let rb: Api<RoleBinding> = Api::all(ctx.client.clone());
        let crb: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
        list_all(&rb, &index, break_glass, &mut tally, |b: &RoleBinding| {
            view(
                b,
                BindingKind::RoleBinding,
                &b.role_ref,
                b.subjects.as_deref(),
            )
        })
        .await?;
        list_all(
            &crb,
            &index,
            break_glass,
            &mut tally,
            |b: &ClusterRoleBinding| {
                view(
                    b,
                    BindingKind::ClusterRoleBinding,
                    &b.role_ref,
                    b.subjects.as_deref(),
                )
            },
        )
        .await?;
        // kubepim's label hides nothing: a labelled binding no Active request accounts for is
        // standing privilege too (the binding guard deletes it; until then it is reported).
        for candidate in illegitimate_managed(ctx) {
            let view = candidate_view(&candidate);
            tally.add(&view, &index, break_glass);
        }
    }

    let mut outcome = ScanOutcome {
        bindings_seen: tally.seen,
        ..Default::default()
    };
    let mut counts = BTreeMap::new();
    let mut first_error = None;
    for role in &roles {
        let name = role.name_any();
        let found = tally.of(&name);
        counts.insert(
            name.clone(),
            StandingCounts {
                unmanaged: found.unmanaged.count,
                break_glass: found.break_glass.count,
            },
        );
        match report(ctx, role, &found).await {
            Ok((written, event)) => {
                outcome.statuses_written += usize::from(written);
                outcome.events += usize::from(event);
                ctx.standing.remember(&name, found);
            }
            Err(error) => {
                tracing::warn!(%error, role = %name, "could not report standing privilege; the next scan retries");
                first_error.get_or_insert(error);
            }
        }
    }
    ctx.standing.forget_all_but(&counts);
    if let Ok(mut latest) = ctx.standing.latest.lock() {
        *latest = StandingSnapshot {
            scanned_at: Some(ctx.now()),
            duration: started.elapsed(),
            bindings_seen: tally.seen,
            roles: counts,
        };
    }
    first_error.map_or(Ok(outcome), Err)
}

/// The cached managed-labelled bindings that [`crate::policy::legitimacy::judge`] would remove.
fn illegitimate_managed(ctx: &Context) -> Vec<Candidate> {
    let now = ctx.now();
    let role_bindings = ctx
        .role_bindings
        .state()
        .into_iter()
        .map(|b| Candidate::of_role_binding(&b));
    let cluster_role_bindings = ctx
        .cluster_role_bindings
        .state()
        .into_iter()
        .map(|b| Candidate::of_cluster_role_binding(&b));
    role_bindings
        .chain(cluster_role_bindings)
        .filter(|candidate| {
            let request = candidate
                .request_name
                .as_ref()
                .and_then(|name| ctx.requests.get(&ObjectRef::new(name)));
            let role = request.as_ref().and_then(|r| ctx.role(&r.spec.role));
            judge(&candidate.view(), request.as_deref(), role.as_deref(), now)
                .must_go()
                .is_some()
        })
        .collect()
}

fn candidate_view(candidate: &Candidate) -> BindingView<'_> {
    let observed = &candidate.observed;
    BindingView {
        kind: observed.kind,
        namespace: observed.namespace.as_deref(),
        name: &observed.name,
        uid: candidate.uid.as_deref(),
        managed: false,
        role_ref_kind: &observed.role_kind,
        role_ref_name: &observed.role_name,
        subjects: &observed.subjects,
    }
}

fn view<'a, K: Resource>(
    binding: &'a K,
    kind: BindingKind,
    role_ref: &'a k8s_openapi::api::rbac::v1::RoleRef,
    subjects: Option<&'a [k8s_openapi::api::rbac::v1::Subject]>,
) -> BindingView<'a> {
    let meta = binding.meta();
    BindingView {
        kind,
        namespace: meta.namespace.as_deref(),
        name: meta.name.as_deref().unwrap_or_default(),
        uid: meta.uid.as_deref(),
        managed: bindings::is_managed(binding),
        role_ref_kind: &role_ref.kind,
        role_ref_name: &role_ref.name,
        subjects: subjects.unwrap_or_default(),
    }
}

/// Lists every binding of one kind, page by page, into `tally`. Only one page is held at a time.
async fn list_all<K>(
    api: &Api<K>,
    index: &RoleIndex,
    break_glass: &BreakGlass,
    tally: &mut Tally,
    to_view: impl for<'a> Fn(&'a K) -> BindingView<'a>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().labels(&unmanaged_selector());
    let mut pages = calls::pages(api, params, "list bindings (standing-privilege scan)");
    while let Some(listed) = pages.next().await? {
        for binding in &listed {
            tally.add(&to_view(binding), index, break_glass);
        }
    }
    Ok(())
}

fn status_of(found: &RoleFindings) -> UnmanagedBindings {
    let sample = |s: &Sample| BindingSample {
        count: s.count,
        names: s.names.clone(),
    };
    UnmanagedBindings {
        count: found.unmanaged.count,
        names: found.unmanaged.names.clone(),
        break_glass: sample(&found.break_glass),
    }
}

/// Writes the role's `status.unmanagedBindings` if it differs, and publishes an Event if the set
/// of bindings changed. Returns (status written, Event published).
async fn report(
    ctx: &Context,
    role: &PrivilegedRole,
    found: &RoleFindings,
) -> Result<(bool, bool), Error> {
    let name = role.name_any();
    let shown = role
        .status
        .as_ref()
        .and_then(|s| s.unmanaged_bindings.clone())
        .unwrap_or_default();
    let wanted = status_of(found);
    let written = wanted != shown;
    if written {
        // This field only: the role reconciler owns the rest of the status.
        let status = json!({ "unmanagedBindings": wanted });
        let what = "patch role status (standing privilege)";
        match calls::patch_status::<PrivilegedRole>(&ctx.client, &name, &status, what).await {
            // Deleted since the scan began: nothing to report on.
            Err(error) if error.refusal() == Refusal::NotFound => return Ok((false, false)),
            Err(error) => return Err(error),
            Ok(_) => {}
        }
    }
    // After a restart there is no memory of the last scan: the status is what was last reported.
    let changed = match ctx.standing.reported(&name) {
        Some(before) => found.changed_since(&before),
        None => {
            !(found.unmanaged.shows_like(shown.count, &shown.names)
                && found
                    .break_glass
                    .shows_like(shown.break_glass.count, &shown.break_glass.names))
        }
    };
    if changed {
        let role_ref = &role.spec.role_ref;
        let described = match &role_ref.namespace {
            Some(ns) => format!("{:?} {ns}/{}", role_ref.kind, role_ref.name),
            None => format!("{:?} {}", role_ref.kind, role_ref.name),
        };
        let note = found.note(&name, &described);
        if found.is_empty() {
            tracing::info!(role = %name, "{note}");
            ctx.publish(
                role,
                EventType::Normal,
                reasons::UNMANAGED_BINDINGS_GONE,
                "Scan",
                note,
            );
        } else {
            tracing::warn!(
                role = %name,
                unmanaged = found.unmanaged.count,
                break_glass = found.break_glass.count,
                "{note}"
            );
            ctx.publish(
                role,
                EventType::Warning,
                reasons::UNMANAGED_BINDINGS,
                "Scan",
                note,
            );
        }
    }
    Ok((written, changed))
}
