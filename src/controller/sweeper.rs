//! The sweeper and the binding guard: every binding that carries kubepim's managed label is judged
//! by [`crate::policy::legitimacy::judge`] and deleted unless it is exactly a binding recorded for
//! an Active, unexpired request (or one being created for it this moment).
//!
//! - The **guard** judges each managed binding the watch delivers, as it is created or changed: a
//!   forged binding (copied labels, a far-off `expires-at`, a name no request has) goes at once.
//! - The **sweep** runs at start-up (before any activation) and periodically, over the API
//!   server's list rather than the cache: it catches what the request reconciler cannot see
//!   (force-removed finalizers, `--cascade=orphan`, lost requests) and anything the guard missed.
//!
//! Exactly the binding a not-yet-Active request would get is left to that request's reconciler,
//! which records the activation or deletes it at once. Nothing a binding says about itself is
//! trusted: its annotations only point at the request to compare with. An `expires-at` annotation in the past is the one claim acted on, because acting
//! on it can only remove access.
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::api::{ActivationRequest, labels};
use crate::policy::legitimacy::{Illegitimate, ManagedBinding, judge};
use crate::policy::lifecycle::{BindingKind, ObservedBinding};

use super::Error;
use super::bindings;
use super::calls;
use super::context::Context;
use super::record::{About, record};
use crate::policy::transition;

/// One full pass over every managed binding, read page by page from the API server (not the
/// cache, so that a stale cache cannot hide one). Returns how many were deleted.
///
/// A binding that cannot be judged or deleted is logged and passed over; the pass goes on, and
/// its first error is returned at the end. One bad binding (a failing read, a forged annotation)
/// must not shield every binding listed after it.
pub async fn sweep(ctx: &Context) -> Result<usize, Error> {
    let rb: Api<RoleBinding> = Api::all(ctx.client.clone());
    let crb: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    let role_bindings = sweep_kind(ctx, &rb, Candidate::of_role_binding).await;
    let cluster_role_bindings = sweep_kind(ctx, &crb, Candidate::of_cluster_role_binding).await;
    Ok(role_bindings? + cluster_role_bindings?)
}

/// Deletions in flight at once during a sweep.
const SWEEP_CONCURRENCY: usize = 16;

/// The start-up sweep, before any request is acted on: the same pass as the periodic one. A term
/// starts only once the caches have synced (`runtime::term`), so each binding's request is judged
/// from the request cache, with no read per binding. (It used to list every request again: a
/// second, untrimmed copy of all of them, managedFields included, that was most of a restart's
/// memory peak at 10,000 grants; issue 11.)
pub async fn startup_sweep(ctx: &Context) -> Result<usize, Error> {
    sweep(ctx).await
}

async fn sweep_kind<K>(
    ctx: &Context,
    api: &Api<K>,
    candidate: fn(&K) -> Candidate,
) -> Result<usize, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().labels(labels::MANAGED_SELECTOR);
    let mut pages = calls::pages(api, params, "list managed bindings");
    let mut deleted = 0;
    let mut first_error = None;
    while let Some(listed) = pages.next().await? {
        // A page's deletions run side by side: after an outage every expired grant waits here,
        // and one at a time a thousand of them took seconds.
        let mut judged = futures::stream::iter(listed.iter().map(candidate))
            .map(|candidate| async move {
                let outcome = judge_and_remove(ctx, &candidate).await;
                (candidate, outcome)
            })
            .buffer_unordered(SWEEP_CONCURRENCY);
        while let Some((candidate, outcome)) = judged.next().await {
            match outcome {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, kind = candidate.observed.kind.as_str(), namespace = ?candidate.observed.namespace, name = %candidate.observed.name, "could not judge a managed binding; going on with the others");
                    first_error.get_or_insert(error);
                }
            }
        }
    }
    first_error.map_or(Ok(deleted), Err)
}

/// A managed-labelled binding as listed or watched: what the judge compares, and the pointers
/// its annotations hold.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub observed: ObservedBinding,
    /// The object's uid: the deletion is conditional on it.
    pub uid: Option<String>,
    /// The request the annotations (or the label) name; `None` when empty.
    pub request_name: Option<String>,
    pub claimed_request_uid: Option<String>,
}

impl Candidate {
    fn new<K: Resource>(binding: &K, observed: ObservedBinding) -> Self {
        Self {
            observed,
            uid: binding.meta().uid.clone(),
            request_name: bindings::request_name_of(binding).filter(|n| !n.is_empty()),
            claimed_request_uid: bindings::request_uid_of(binding),
        }
    }

    pub fn of_role_binding(binding: &RoleBinding) -> Self {
        Self::new(binding, bindings::observe_role_binding(binding))
    }

    pub fn of_cluster_role_binding(binding: &ClusterRoleBinding) -> Self {
        Self::new(binding, bindings::observe_cluster_role_binding(binding))
    }

    pub fn view(&self) -> ManagedBinding<'_> {
        ManagedBinding {
            kind: self.observed.kind,
            namespace: self.observed.namespace.as_deref(),
            name: &self.observed.name,
            role_ref_kind: &self.observed.role_kind,
            role_ref_name: &self.observed.role_name,
            subjects: &self.observed.subjects,
            claimed_request_uid: self.claimed_request_uid.as_deref(),
        }
    }
}

/// Judges one managed-labelled binding and deletes it if it must go. Returns whether this call
/// deleted it.
pub async fn judge_and_remove(ctx: &Context, candidate: &Candidate) -> Result<bool, Error> {
    let now = ctx.now();
    let (why, request) = match &candidate.request_name {
        None => (Illegitimate::NoRequest, None),
        // Past the expiry the binding itself claims: it goes whatever its request says, with no
        // lookup that could fail or wait standing between it and its deletion.
        Some(_) if candidate.observed.expires_at.is_some_and(|at| now >= at) => {
            (Illegitimate::Expired, None)
        }
        Some(name) => {
            let request = lookup_request(ctx, name).await?;
            let role = request.as_ref().and_then(|r| ctx.role(&r.spec.role));
            match judge(&candidate.view(), request.as_deref(), role.as_deref(), now).must_go() {
                Some(why) => (why.clone(), request),
                None => return Ok(false),
            }
        }
    };
    let observed = &candidate.observed;
    let gone = bindings::delete(
        &ctx.client,
        observed.kind,
        observed.namespace.as_deref(),
        &observed.name,
        candidate.uid.clone(),
    )
    .await?;
    if gone {
        report_removed(ctx, candidate, request.as_deref(), &why);
    }
    Ok(gone)
}

/// The record of one deletion: an audit line and a metric always; for a binding kubepim never
/// granted, also a Warning Event on the binding and a warning in the log.
fn report_removed(
    ctx: &Context,
    candidate: &Candidate,
    request: Option<&ActivationRequest>,
    why: &Illegitimate,
) {
    let observed = &candidate.observed;
    let request_name = candidate.request_name.as_deref().unwrap_or("");
    let leftover = why.is_leftover();
    let described = match &observed.namespace {
        Some(ns) => format!("{} {ns}/{}", observed.kind.as_str(), observed.name),
        None => format!("{} {}", observed.kind.as_str(), observed.name),
    };
    let message = format!(
        "deleted {described} (carries kubepim's managed label): {}",
        why.message(request_name)
    );
    ctx.metrics.observe_binding_removed(why.reason(), leftover);
    // An expired grant revoked here (at start-up, or after a missed wake-up) is a revocation
    // like any other for the lateness figure.
    if *why == Illegitimate::Expired
        && let Some(at) = observed.expires_at
        && let Some(late) = (ctx.now() - at).num_microseconds()
    {
        ctx.metrics.observe_revocation_lateness(late as f64 / 1e6);
    }
    let subjects: Vec<String> = observed
        .subjects
        .iter()
        .map(|s| format!("{} {}", s.kind, s.name))
        .collect();
    let granted_to = if subjects.is_empty() {
        "nobody".to_string()
    } else {
        subjects.join(", ")
    };
    // Who and what, from the request where there is one, else from the binding itself: the audit
    // line never names nobody.
    let role_ref = format!("{} {}", observed.role_kind, observed.role_name);
    let namespaces: Vec<String> = observed.namespace.iter().cloned().collect();
    let about = About {
        request: request_name,
        requester: request.map_or(granted_to.as_str(), ActivationRequest::requester_name),
        role: request.map_or(role_ref.as_str(), |r| r.spec.role.as_str()),
        namespaces: &namespaces,
    };
    if leftover {
        tracing::info!(kind = observed.kind.as_str(), namespace = ?observed.namespace, name = %observed.name, request = %request_name, reason = why.reason(), "swept managed binding");
    } else {
        tracing::warn!(kind = observed.kind.as_str(), namespace = ?observed.namespace, name = %observed.name, request = %request_name, reason = why.reason(), subjects = ?subjects, role_ref = %observed.role_name, "removed a binding kubepim never granted");
    }
    let note = format!("{message}; it granted {role_ref} to {granted_to}");
    let happened =
        transition::binding_removed(leftover, why.reason(), &message, observed.expires_at, &note);
    let reference = kube::core::ObjectMeta {
        name: Some(observed.name.clone()),
        namespace: observed.namespace.clone(),
        uid: candidate.uid.clone(),
        ..Default::default()
    };
    match observed.kind {
        BindingKind::RoleBinding => {
            let binding = RoleBinding {
                metadata: reference,
                ..Default::default()
            };
            record(ctx, &binding, about, &happened)
        }
        BindingKind::ClusterRoleBinding => {
            let binding = ClusterRoleBinding {
                metadata: reference,
                ..Default::default()
            };
            record(ctx, &binding, about, &happened)
        }
    }
}

/// The request from the cache, confirmed by a read when the cache does not have it (a missing
/// entry in a cache is not proof that the request is gone).
async fn lookup_request(
    ctx: &Context,
    name: &str,
) -> Result<Option<Arc<ActivationRequest>>, Error> {
    if let Some(found) = ctx.requests.get(&ObjectRef::new(name)) {
        return Ok(Some(found));
    }
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let read = calls::bounded("get request", api.get_opt(name)).await?;
    Ok(read.map(Arc::new))
}

/// The binding guard: judges every managed-labelled binding the watch creates or changes, until
/// the streams end (the term's stop). Deletions are passed over: there is nothing left to judge.
pub async fn guard(
    ctx: Arc<Context>,
    role_bindings: impl Stream<Item = Arc<RoleBinding>> + Send,
    cluster_role_bindings: impl Stream<Item = Arc<ClusterRoleBinding>> + Send,
) {
    let rb_ctx = ctx.clone();
    let role_bindings = role_bindings.filter_map(move |b| {
        let live = Some(b).filter(|b| {
            rb_ctx
                .role_bindings
                .get(&ObjectRef::from_obj(b.as_ref()))
                .is_some()
        });
        std::future::ready(live.map(|b| Candidate::of_role_binding(&b)))
    });
    let crb_ctx = ctx.clone();
    let cluster_role_bindings = cluster_role_bindings.filter_map(move |b| {
        let live = Some(b).filter(|b| {
            crb_ctx
                .cluster_role_bindings
                .get(&ObjectRef::from_obj(b.as_ref()))
                .is_some()
        });
        std::future::ready(live.map(|b| Candidate::of_cluster_role_binding(&b)))
    });
    futures::stream::select(role_bindings, cluster_role_bindings)
        .for_each_concurrent(GUARD_CONCURRENCY, |candidate| {
            let ctx = ctx.clone();
            async move {
                if let Err(error) = judge_and_remove(&ctx, &candidate).await {
                    // The periodic sweep judges it again.
                    tracing::warn!(%error, kind = candidate.observed.kind.as_str(), namespace = ?candidate.observed.namespace, name = %candidate.observed.name, "could not judge a managed binding");
                }
            }
        })
        .await;
}

/// Bindings judged at once by the guard.
const GUARD_CONCURRENCY: usize = 8;
