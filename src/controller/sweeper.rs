//! The sweeper: a periodic pass (and one at start-up, before any activation) that deletes every
//! managed binding whose request is missing, terminal, or past its expiry. It catches what the
//! request reconciler cannot see: force-removed finalizers, `--cascade=orphan`, lost requests.
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{ActivationRequest, labels};
use crate::policy::lifecycle::BindingKind;

use super::Error;
use super::bindings;
use super::context::Context;

/// Why a managed binding must go, if it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    RequestMissing,
    RequestReplaced,
    RequestTerminal,
    Expired,
    Unlabelled,
}

/// Pure verdict for one managed binding.
pub fn verdict(
    request_name: Option<&str>,
    binding_request_uid: Option<&str>,
    binding_expires_at: Option<DateTime<Utc>>,
    request: Option<&ActivationRequest>,
    now: DateTime<Utc>,
) -> Option<Orphan> {
    if request_name.is_none() || binding_request_uid.is_none() || binding_expires_at.is_none() {
        return Some(Orphan::Unlabelled);
    }
    if binding_expires_at.is_some_and(|at| now >= at) {
        return Some(Orphan::Expired);
    }
    let Some(request) = request else {
        return Some(Orphan::RequestMissing);
    };
    if request.uid().as_deref() != binding_request_uid {
        return Some(Orphan::RequestReplaced);
    }
    if request.phase().is_some_and(|p| p.is_terminal()) {
        return Some(Orphan::RequestTerminal);
    }
    None
}

/// One full pass over every managed binding, read page by page from the API server (not the
/// cache, so that a stale cache cannot hide one). Returns how many were deleted.
///
/// A binding that cannot be judged or deleted is logged and passed over; the pass goes on, and
/// its first error is returned at the end. One bad binding (a failing read, a forged annotation)
/// must not shield every binding listed after it.
pub async fn sweep(ctx: &Context) -> Result<usize, Error> {
    sweep_with(ctx, &KnownRequests::new()).await
}

/// Requests read in one list before the caches fill (start-up), by name.
pub type KnownRequests = HashMap<String, Arc<ActivationRequest>>;

/// The start-up sweep: all requests are listed once, page by page, so that judging each managed
/// binding does not cost a read of its request while the caches are still empty.
pub async fn startup_sweep(ctx: &Context) -> Result<usize, Error> {
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let mut known = KnownRequests::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = tokio::time::timeout(bindings::CALL_TIMEOUT, api.list(&params))
            .await
            .map_err(|_| Error::Timeout {
                what: "list requests",
            })?
            .map_err(|source| Error::Kube {
                what: "list requests",
                source,
            })?;
        for request in page.items {
            known.insert(request.name_any(), Arc::new(request));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    sweep_with(ctx, &known).await
}

async fn sweep_with(ctx: &Context, known: &KnownRequests) -> Result<usize, Error> {
    let rb: Api<RoleBinding> = Api::all(ctx.client.clone());
    let crb: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    let role_bindings = sweep_kind(ctx, known, &rb, BindingKind::RoleBinding).await;
    let cluster_role_bindings = sweep_kind(ctx, known, &crb, BindingKind::ClusterRoleBinding).await;
    Ok(role_bindings? + cluster_role_bindings?)
}

async fn sweep_kind<K>(
    ctx: &Context,
    known: &KnownRequests,
    api: &Api<K>,
    kind: BindingKind,
) -> Result<usize, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default()
        .labels(labels::MANAGED_SELECTOR)
        .limit(500);
    let mut deleted = 0;
    let mut first_error = None;
    loop {
        let page = tokio::time::timeout(bindings::CALL_TIMEOUT, api.list(&params))
            .await
            .map_err(|_| Error::Timeout {
                what: "list managed bindings",
            })?
            .map_err(|source| Error::Kube {
                what: "list managed bindings",
                source,
            })?;
        for binding in &page.items {
            match sweep_one(ctx, known, kind, binding).await {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, kind = kind.as_str(), namespace = ?binding.namespace(), name = %binding.name_any(), "could not sweep a managed binding; going on with the others");
                    first_error.get_or_insert(error);
                }
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return first_error.map_or(Ok(deleted), Err),
        }
    }
}

/// Judges one managed binding and deletes it if it must go. Returns whether it was deleted.
async fn sweep_one<K>(
    ctx: &Context,
    known: &KnownRequests,
    kind: BindingKind,
    binding: &K,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()>,
{
    // An empty name names no request: unlabelled.
    let request_name = bindings::request_name_of(binding).filter(|n| !n.is_empty());
    let expires_at = bindings::expires_at_of(binding);
    let now = ctx.now();
    // A binding past its own expiry goes whatever its request says: no lookup that could fail
    // or wait stands between it and its deletion.
    let expired = expires_at.is_some_and(|at| now >= at);
    let request = match &request_name {
        Some(name) if !expired => lookup_request(ctx, known, name).await?,
        _ => None,
    };
    let why = verdict(
        request_name.as_deref(),
        bindings::request_uid_of(binding).as_deref(),
        expires_at,
        request.as_deref(),
        now,
    );
    if let Some(why) = why {
        let namespace = binding.namespace();
        tracing::info!(kind = kind.as_str(), namespace = ?namespace, name = %binding.name_any(), request = ?request_name, ?why, "sweeping managed binding");
        let gone = bindings::delete(
            &ctx.client,
            kind,
            namespace.as_deref(),
            &binding.name_any(),
            binding.uid(),
        )
        .await?;
        // An expired grant revoked here (at start-up, or after a missed wake-up) is a revocation
        // like any other for the lateness figure.
        if gone
            && why == Orphan::Expired
            && let Some(at) = expires_at
            && let Some(late) = (ctx.now() - at).num_microseconds()
        {
            ctx.metrics.observe_revocation_lateness(late as f64 / 1e6);
        }
        crate::audit::record(&crate::audit::AuditRecord {
            decision: "swept",
            request: request_name.as_deref().unwrap_or(""),
            requester: "",
            role: "",
            namespaces: &namespace.into_iter().collect::<Vec<_>>(),
            until: bindings::expires_at_of(binding),
            approvers: &[],
            reason: &format!("{why:?}"),
            message: &format!("deleted orphaned {} {}", kind.as_str(), binding.name_any()),
            break_glass: false,
        });
        return Ok(true);
    }
    Ok(false)
}

/// The request from the cache, confirmed by a read when the cache does not have it (a missing
/// entry in a cache is not proof that the request is gone).
async fn lookup_request(
    ctx: &Context,
    known: &KnownRequests,
    name: &str,
) -> Result<Option<Arc<ActivationRequest>>, Error> {
    if let Some(found) = known
        .get(name)
        .cloned()
        .or_else(|| ctx.requests.get(&ObjectRef::new(name)))
    {
        return Ok(Some(found));
    }
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let read = tokio::time::timeout(bindings::CALL_TIMEOUT, api.get_opt(name))
        .await
        .map_err(|_| Error::Timeout {
            what: "get request",
        })?
        .map_err(|source| Error::Kube {
            what: "get request",
            source,
        })?;
    Ok(read.map(Arc::new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ActivationRequestSpec, ActivationRequestStatus, Phase};
    use chrono::TimeZone;

    fn request(uid: &str, phase: Option<Phase>) -> ActivationRequest {
        let mut r = ActivationRequest::new(
            "r1",
            ActivationRequestSpec {
                role: "x".into(),
                namespaces: vec![],
                duration: None,
                justification: None,
                ticket: None,
                start_at: None,
                cancel: false,
                requester: None,
            },
        );
        r.metadata.uid = Some(uid.into());
        r.status = Some(ActivationRequestStatus {
            phase,
            ..Default::default()
        });
        r
    }

    #[test]
    fn verdicts() {
        let now = Utc.timestamp_opt(1000, 0).unwrap();
        let later = Some(Utc.timestamp_opt(2000, 0).unwrap());
        let earlier = Some(Utc.timestamp_opt(500, 0).unwrap());
        let active = request("u1", Some(Phase::Active));
        assert_eq!(
            verdict(Some("r1"), Some("u1"), later, Some(&active), now),
            None
        );
        assert_eq!(
            verdict(Some("r1"), Some("u1"), earlier, Some(&active), now),
            Some(Orphan::Expired)
        );
        assert_eq!(
            verdict(Some("r1"), Some("u1"), later, None, now),
            Some(Orphan::RequestMissing)
        );
        assert_eq!(
            verdict(Some("r1"), Some("u0"), later, Some(&active), now),
            Some(Orphan::RequestReplaced)
        );
        let done = request("u1", Some(Phase::Expired));
        assert_eq!(
            verdict(Some("r1"), Some("u1"), later, Some(&done), now),
            Some(Orphan::RequestTerminal)
        );
        assert_eq!(
            verdict(None, Some("u1"), later, Some(&active), now),
            Some(Orphan::Unlabelled)
        );
        assert_eq!(
            verdict(Some("r1"), Some("u1"), None, Some(&active), now),
            Some(Orphan::Unlabelled)
        );
        // exactly at expiry counts as expired
        assert_eq!(
            verdict(Some("r1"), Some("u1"), Some(now), Some(&active), now),
            Some(Orphan::Expired)
        );
    }
}
