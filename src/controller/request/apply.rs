//! Carrying out the policy's step on the bindings: the finalizer first, then exactly the desired
//! bindings (surplus ones deleted, missing ones created), or every binding revoked.
use kube::ResourceExt;
use serde_json::json;

use crate::api::{ActivationRequest, FINALIZER, Phase};
use crate::policy::lifecycle::{BindingKind, DesiredBinding, Step, step_bindings};
use crate::time::from_k8s;

use super::super::Error;
use super::super::bindings::{self, Created};
use super::super::calls::{self, MANAGER, Refusal};
use super::super::context::{Context, FoundBinding};

/// What carrying out a step came to.
#[derive(Debug)]
pub(super) enum Applied {
    /// Done; the status write that follows is conditional on this version.
    Done { resource_version: Option<String> },
    /// The request changed since it was observed (a conditional write failed): decide again on
    /// the newer version, which the watch delivers.
    Stale,
    /// A namespace the step binds in does not exist; whatever this pass created is gone again
    /// (never a grant in part).
    NamespaceMissing {
        namespace: String,
        resource_version: Option<String>,
    },
}

/// Carries out `step` against what was `found`; a same-named binding left by an earlier request
/// of this name is never ours to keep, whatever the step.
pub(super) async fn apply(
    ctx: &Context,
    request: &ActivationRequest,
    step: &Step,
    found: &[FoundBinding],
) -> Result<Applied, Error> {
    for stale in found.iter().filter(|f| f.foreign) {
        delete_found(ctx, stale).await?;
    }
    let ours = || found.iter().filter(|f| !f.foreign);
    let mut resource_version = request.resource_version();
    match step {
        Step::Activate {
            activation,
            bindings: desired,
            ..
        }
        | Step::KeepActive {
            activation,
            bindings: desired,
            ..
        } => {
            match ensure_finalizer(ctx, request).await {
                Ok(Some(rv)) => resource_version = Some(rv),
                Ok(None) => {}
                Err(error) if matches!(error.refusal(), Refusal::Conflict | Refusal::Invalid) => {
                    return Ok(Applied::Stale);
                }
                Err(error) => return Err(error),
            }
            for extra in ours().filter(|f| !desired.iter().any(|d| d.is_satisfied_by(&f.observed)))
            {
                delete_found(ctx, extra).await?;
            }
            let mut first_created = None;
            let mut met_unobserved = false;
            for missing in desired
                .iter()
                .filter(|d| !ours().any(|f| d.is_satisfied_by(&f.observed)))
            {
                match bindings::create(&ctx.client, missing, request, activation.expires_at).await {
                    Ok(Created::Now(at)) => first_created = first_created.or(at),
                    Ok(Created::Earlier) => met_unobserved = true,
                    Err(error) => match missing_namespace(&error, missing) {
                        Some(namespace) => {
                            undo(ctx, step).await?;
                            return Ok(Applied::NamespaceMissing {
                                namespace,
                                resource_version,
                            });
                        }
                        None => return Err(error),
                    },
                }
            }
            // Our binding from an earlier attempt whose answer was lost (a timeout, a crash) is
            // annotated with that attempt's expiry, which this decision could not see. Recording
            // this decision's later expiry would promise access the binding will not give; decide
            // again once the cache shows the binding, so the expiry fixed on it is the one kept.
            if met_unobserved && matches!(step, Step::Activate { .. }) {
                return Ok(Applied::Stale);
            }
            // Approving write → binding: only for the activation itself, not for a binding put
            // back later, and only when someone approved.
            if matches!(step, Step::Activate { .. })
                && let Some(created) = first_created
                && let Some(approved) =
                    crate::policy::approvals::approving_write_at(request, MANAGER)
            {
                ctx.metrics
                    .observe_approval_to_binding(seconds(created - approved));
            }
        }
        Step::End { phase, .. } => {
            let deleted = revoke_all(ctx, request, found).await?;
            let expires_at = request.status.as_ref().and_then(|s| s.expires_at.as_ref());
            if *phase == Phase::Expired
                && let Some(expires_at) = expires_at.map(from_k8s)
            {
                let lateness = seconds(ctx.now() - expires_at);
                for _ in 0..deleted {
                    ctx.metrics.observe_revocation_lateness(lateness);
                }
            }
        }
        // Nothing is granted while Pending or Scheduled, nor once terminal: any binding observed
        // for the request (forged, or left over) goes.
        Step::Settled | Step::Wait { .. } => {
            for leftover in ours() {
                delete_found(ctx, leftover).await?;
            }
        }
    }
    Ok(Applied::Done { resource_version })
}

/// Whatever this step would have created goes again, by its deterministic name.
async fn undo(ctx: &Context, step: &Step) -> Result<(), Error> {
    for made in step_bindings(step) {
        bindings::delete(
            &ctx.client,
            made.kind,
            made.namespace.as_deref(),
            &made.name,
            None,
        )
        .await?;
    }
    Ok(())
}

/// The namespace a RoleBinding create was refused for because the namespace does not exist (the
/// API server answers 404 with the namespace as the missing object).
fn missing_namespace(error: &Error, binding: &DesiredBinding) -> Option<String> {
    let Error::Kube {
        source: kube::Error::Api(status),
        ..
    } = error
    else {
        return None;
    };
    let namespace = binding.namespace.as_ref()?;
    let details = status.details.as_ref()?;
    (error.refusal() == Refusal::NotFound
        && details.kind == "namespaces"
        && details.name == *namespace)
        .then(|| namespace.clone())
}

pub(super) fn seconds(d: chrono::Duration) -> f64 {
    d.num_microseconds()
        .map_or(d.num_seconds() as f64, |us| us as f64 / 1e6)
}

async fn delete_found(ctx: &Context, found: &FoundBinding) -> Result<bool, Error> {
    let b = &found.observed;
    bindings::delete(
        &ctx.client,
        b.kind,
        b.namespace.as_deref(),
        &b.name,
        found.uid.clone(),
    )
    .await
}

/// Deletes every binding the request has or had: those observed, and those its status lists
/// (the cache may not have caught up with a creation yet). Returns how many this call deleted.
pub(super) async fn revoke_all(
    ctx: &Context,
    request: &ActivationRequest,
    found: &[FoundBinding],
) -> Result<usize, Error> {
    let mut deleted = 0;
    let mut done: Vec<(BindingKind, Option<String>, String)> = Vec::new();
    for f in found.iter().filter(|f| !f.foreign) {
        deleted += usize::from(delete_found(ctx, f).await?);
        done.push((
            f.observed.kind,
            f.observed.namespace.clone(),
            f.observed.name.clone(),
        ));
    }
    let listed = request.status.iter().flat_map(|s| s.bindings.iter());
    for b in listed {
        let kind = if b.kind == BindingKind::ClusterRoleBinding.as_str() {
            BindingKind::ClusterRoleBinding
        } else {
            BindingKind::RoleBinding
        };
        if done
            .iter()
            .any(|(k, ns, n)| *k == kind && *ns == b.namespace && *n == b.name)
        {
            continue;
        }
        // Not in the cache: only delete it if it is still this request's (checked by a read).
        if let Some(uid) =
            bindings::uid_if_owned(&ctx.client, kind, b.namespace.as_deref(), &b.name, request)
                .await?
        {
            let gone = bindings::delete(
                &ctx.client,
                kind,
                b.namespace.as_deref(),
                &b.name,
                Some(uid),
            )
            .await?;
            deleted += usize::from(gone);
        }
    }
    Ok(deleted)
}

/// Adds the finalizer before the first binding exists, so deletion always revokes first.
/// Returns the new resourceVersion when it wrote.
///
/// The patch is conditional on the resourceVersion the decision was made on. The status patch
/// that follows is conditional on the version this write returns, so without the test an
/// approval, denial or cancellation that arrived in between would be carried along unseen: the
/// grant made anyway, and an approval list written as `[]` wiping the new entry.
async fn ensure_finalizer(
    ctx: &Context,
    request: &ActivationRequest,
) -> Result<Option<String>, Error> {
    if request.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(None);
    }
    let add = if request.metadata.finalizers.is_none() {
        json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    } else {
        json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
    };
    let ops = match request.resource_version() {
        Some(rv) => json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv}, add]),
        None => json!([add]),
    };
    let name = request.name_any();
    let updated: ActivationRequest =
        calls::json_patch(&ctx.client, &name, ops, "add finalizer").await?;
    ctx.note_written(&name, updated.resource_version().as_deref());
    Ok(updated.resource_version())
}

/// Removes the finalizer once every binding is gone; already gone, or the list changed under us
/// (the test op failed), leaves nothing to do.
pub(super) async fn release(ctx: &Context, request: &ActivationRequest) -> Result<(), Error> {
    let Some(index) = request.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ops = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    let removed: Result<ActivationRequest, Error> =
        calls::json_patch(&ctx.client, &request.name_any(), ops, "remove finalizer").await;
    match removed {
        Err(error) if matches!(error.refusal(), Refusal::NotFound | Refusal::Invalid) => Ok(()),
        Err(error) => Err(error),
        Ok(_) => Ok(()),
    }
}
