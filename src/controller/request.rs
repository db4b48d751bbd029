//! The ActivationRequest reconciler: observe, let the policy decide, carry out the step.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{ActivationRequest, ActivationRequestStatus, Eligibility, FINALIZER, Phase};
use crate::audit::{self, AuditRecord};
use crate::notify::{EventKind, Notification};
use crate::policy::lifecycle::{
    BindingKind, DesiredBinding, Input, ObservedBinding, Step, decide, namespace_missing,
    step_bindings,
};
use crate::policy::status::request_status;
use crate::time::from_k8s;

use super::Error;
use super::bindings;
use super::context::{Context, FoundBinding};

pub use super::calls::MANAGER;

/// Look again this soon when a conditional write found the request changed.
const STALE_REQUEUE: Duration = Duration::from_millis(200);

pub async fn reconcile(
    request: Arc<ActivationRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let result = reconcile_request(request.clone(), ctx.clone()).await;
    if let Err(error) = &result
        && let Some(reason) = error.persistent_reason()
    {
        report_stuck(&ctx, &request, reason, &error.to_string()).await;
    }
    result
}

/// A request the controller cannot move on shows why: `Ready=False` with the reason, once per
/// distinct error (an identical condition is not written again), a Warning Event and an audit
/// line. Best effort: the reconcile is retried whatever happens here.
async fn report_stuck(
    ctx: &Context,
    request: &ActivationRequest,
    reason: &'static str,
    message: &str,
) {
    // The reconcile may have written since it read (the finalizer): judge and write on the latest
    // version, conditional on it, so that nothing written meanwhile (an approval) is overwritten.
    let name = request.name_any();
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let Ok(Some(latest)) = bindings::bounded("get request", api.get_opt(&name)).await else {
        return;
    };
    let request = &latest;
    let old = request.status.clone().unwrap_or_default();
    let new = crate::policy::status::stuck_status(
        &old,
        reason,
        message,
        request.metadata.generation,
        ctx.now(),
    );
    if new == old {
        return;
    }
    if let Err(error) = patch_status(ctx, &name, request.resource_version(), &new).await {
        tracing::debug!(%error, request = %name, "could not record why the request is stuck");
        return;
    }
    tracing::warn!(request = %name, reason, "{message}");
    ctx.publish(
        request,
        EventType::Warning,
        reason,
        "Reconcile",
        message.to_string(),
    );
    let requester = request.requester_name();
    audit::record(&AuditRecord {
        decision: "stuck",
        request: &name,
        requester,
        role: &request.spec.role,
        namespaces: &request.spec.namespaces,
        until: None,
        approvers: &[],
        reason,
        message,
        break_glass: false,
    });
}

async fn reconcile_request(
    request: Arc<ActivationRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = request.name_any();
    // Our own write of a moment ago may not be in the cache yet: acting on the older version
    // would only repeat work and meet a conflict. The watch delivers the newer one.
    if ctx.is_superseded(&name, request.resource_version().as_deref()) {
        return Ok(Action::requeue(STALE_REQUEUE));
    }
    let role = ctx.role(&request.spec.role);
    let found = ctx.bindings_of(&request, role.as_deref());

    if request.metadata.deletion_timestamp.is_some() {
        return finalize(&request, &ctx, &found).await;
    }

    let now = ctx.now();
    let eligibilities = ctx.eligibilities_for(&request.spec.role);
    let eligibility_refs: Vec<&Eligibility> = eligibilities.iter().map(AsRef::as_ref).collect();
    let observed: Vec<ObservedBinding> = found
        .iter()
        .filter(|f| !f.foreign)
        .map(|f| f.observed.clone())
        .collect();
    let old_status = request.status.clone().unwrap_or_default();
    let created_at = request
        .metadata
        .creation_timestamp
        .as_ref()
        .map(from_k8s)
        .unwrap_or(now);
    let input = Input {
        request_name: &name,
        spec: &request.spec,
        status: &old_status,
        created_at,
        role: role.as_deref(),
        eligibilities: &eligibility_refs,
        observed: &observed,
        now,
    };
    let mut step = decide(&input);
    tracing::debug!(request = %name, ?step, "decided");

    // A same-named binding left by an earlier request of this name is never ours to keep.
    for stale in found.iter().filter(|f| f.foreign) {
        delete_found(&ctx, stale).await?;
    }

    let mut resource_version = request.resource_version();
    // A namespace the step binds in that the API server says does not exist.
    let mut absent_namespace: Option<String> = None;
    match &step {
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
            match ensure_finalizer(&request, &ctx).await {
                Ok(Some(rv)) => resource_version = Some(rv),
                Ok(None) => {}
                // The request changed since it was observed (the patch's test op failed): decide
                // again on the newer version, which the watch delivers.
                Err(Error::Kube {
                    source: kube::Error::Api(status),
                    ..
                }) if status.code == 409 || status.code == 422 => {
                    return Ok(Action::requeue(STALE_REQUEUE));
                }
                Err(e) => return Err(e),
            }
            for extra in found
                .iter()
                .filter(|f| !f.foreign && !desired.iter().any(|d| d.is_satisfied_by(&f.observed)))
            {
                delete_found(&ctx, extra).await?;
            }
            let mut first_created = None;
            for missing in desired.iter().filter(|d| {
                !found
                    .iter()
                    .any(|f| !f.foreign && d.is_satisfied_by(&f.observed))
            }) {
                match bindings::create(&ctx.client, missing, &request, activation.expires_at).await
                {
                    Ok(created) => first_created = first_created.or(created),
                    Err(error) => match missing_namespace(&error, missing) {
                        Some(namespace) => {
                            absent_namespace = Some(namespace);
                            break;
                        }
                        None => return Err(error),
                    },
                }
            }
            // Approving write → binding: only for the activation itself, not for a binding put
            // back later, and only when someone approved.
            if absent_namespace.is_none()
                && matches!(step, Step::Activate { .. })
                && let Some(created) = first_created
                && let Some(approved) = crate::metrics::approving_write_at(&request, MANAGER)
            {
                ctx.metrics
                    .observe_approval_to_binding(seconds(created - approved));
            }
        }
        Step::End { phase, .. } => {
            let deleted = revoke_all(&ctx, &request, &found).await?;
            if *phase == Phase::Expired
                && let Some(expires_at) = old_status.expires_at.as_ref().map(from_k8s)
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
            for leftover in found.iter().filter(|f| !f.foreign) {
                delete_found(&ctx, leftover).await?;
            }
        }
    }

    if let Some(namespace) = absent_namespace {
        // Never a grant in part: whatever this pass created goes again, by its deterministic name.
        for made in step_bindings(&step) {
            bindings::delete(
                &ctx.client,
                made.kind,
                made.namespace.as_deref(),
                &made.name,
                None,
            )
            .await?;
        }
        step = namespace_missing(&step, &namespace);
        tracing::info!(request = %name, %namespace, ?step, "namespace missing");
    }

    let new_status = request_status(&old_status, &step, request.metadata.generation, now);
    if new_status != old_status {
        match patch_status(&ctx, &name, resource_version, &new_status).await {
            Ok(()) => record_transition(&ctx, &request, &old_status, &new_status, &step),
            // Someone (an approver, or our own earlier write) changed the request since we read
            // it: decide again on the newer version, which the watch delivers.
            Err(Error::Kube {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 409 => {
                return Ok(Action::requeue(STALE_REQUEUE));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(requeue_at(step.wake_at(), now))
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
    (status.code == 404 && details.kind == "namespaces" && details.name == *namespace)
        .then(|| namespace.clone())
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_microseconds()
        .map_or(d.num_seconds() as f64, |us| us as f64 / 1e6)
}

/// Requeue at the persisted instant the policy named; watch events never postpone it because
/// every path returns it again.
fn requeue_at(wake: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Action {
    match wake {
        Some(at) => Action::requeue((at - now).to_std().unwrap_or(Duration::ZERO)),
        None => Action::await_change(),
    }
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
async fn revoke_all(
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

/// Deletion: revoke synchronously, then let the request go.
async fn finalize(
    request: &ActivationRequest,
    ctx: &Context,
    found: &[FoundBinding],
) -> Result<Action, Error> {
    let Some(index) = request.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Action::await_change());
    };
    revoke_all(ctx, request, found).await?;
    let had_grant = request.phase() == Some(Phase::Active);
    let ops = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    match json_patch_request(ctx, &request.name_any(), ops, "remove finalizer").await {
        // Already gone, or the list changed under us (the test op failed): nothing left to do here.
        Err(Error::Kube {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 404 || status.code == 422 => {}
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    if had_grant {
        let message = "request deleted: bindings revoked".to_string();
        ctx.publish(
            request,
            EventType::Normal,
            "Revoked",
            "Revoke",
            message.clone(),
        );
        audit_record(
            ctx,
            request,
            "deleted",
            "RequestDeleted",
            &message,
            None,
            &[],
            Some(EventKind::Revoked),
        );
    }
    Ok(Action::await_change())
}

/// Adds the finalizer before the first binding exists, so deletion always revokes first.
/// Returns the new resourceVersion when it wrote.
///
/// The patch is conditional on the resourceVersion the decision was made on. The status patch
/// that follows is conditional on the version this write returns, so without the test an
/// approval, denial or cancellation that arrived in between would be carried along unseen: the
/// grant made anyway, and an approval list written as `[]` wiping the new entry.
async fn ensure_finalizer(
    request: &ActivationRequest,
    ctx: &Context,
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
    let updated = json_patch_request(ctx, &request.name_any(), ops, "add finalizer").await?;
    ctx.note_written(&request.name_any(), updated.resource_version().as_deref());
    Ok(updated.resource_version())
}

async fn json_patch_request(
    ctx: &Context,
    name: &str,
    ops: serde_json::Value,
    what: &'static str,
) -> Result<ActivationRequest, Error> {
    let ops: json_patch::Patch = serde_json::from_value(ops).map_err(Error::Serialize)?;
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let patch = Patch::Json::<()>(ops);
    match tokio::time::timeout(bindings::CALL_TIMEOUT, api.patch(name, &params, &patch)).await {
        Err(_) => Err(Error::Timeout { what }),
        Ok(Err(source)) => Err(Error::Kube { what, source }),
        Ok(Ok(updated)) => Ok(updated),
    }
}

/// Writes the controller-owned status fields, conditional on the version decided upon. Approvals
/// are left out of the patch so that concurrent approvers are never overwritten.
async fn patch_status(
    ctx: &Context,
    name: &str,
    resource_version: Option<String>,
    status: &ActivationRequestStatus,
) -> Result<(), Error> {
    let mut body = serde_json::to_value(status).map_err(Error::Serialize)?;
    if let Some(map) = body.as_object_mut() {
        // Approvals are the approvers' field. An empty list is written once, so that approving is
        // a single JSON-patch append to /status/approvals/- (guarded by the resourceVersion).
        if status.approvals.is_empty() {
            map.insert("approvals".into(), json!([]));
        } else {
            map.remove("approvals");
        }
    }
    let patch = json!({"metadata": {"resourceVersion": resource_version}, "status": body});
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let patch = Patch::Merge(&patch);
    let call = api.patch_status(name, &params, &patch);
    match tokio::time::timeout(bindings::CALL_TIMEOUT, call).await {
        Err(_) => Err(Error::Timeout {
            what: "patch status",
        }),
        Ok(Err(source)) => Err(Error::Kube {
            what: "patch status",
            source,
        }),
        Ok(Ok(updated)) => {
            ctx.note_written(name, updated.resource_version().as_deref());
            Ok(())
        }
    }
}

/// One audit line; and, when `notify_as` names an event, the same facts as a notification.
#[allow(clippy::too_many_arguments)]
fn audit_record(
    ctx: &Context,
    request: &ActivationRequest,
    decision: &str,
    reason: &str,
    message: &str,
    until: Option<DateTime<Utc>>,
    approvers: &[String],
    notify_as: Option<EventKind>,
) {
    let requester = request.requester_name();
    let name = request.name_any();
    let record = AuditRecord {
        decision,
        request: &name,
        requester,
        role: &request.spec.role,
        namespaces: &request.spec.namespaces,
        until,
        approvers,
        reason,
        message,
        break_glass: reason == crate::policy::reasons::BREAK_GLASS,
    };
    audit::record(&record);
    if let Some(kind) = notify_as {
        ctx.notifier
            .notify(Notification::from_audit(kind, &record, ctx.now()));
    }
}

/// One Event and one audit line for every phase change.
fn record_transition(
    ctx: &Context,
    request: &ActivationRequest,
    old: &ActivationRequestStatus,
    new: &ActivationRequestStatus,
    step: &Step,
) {
    if old.phase == new.phase {
        return;
    }
    let Some(phase) = new.phase else { return };
    let reason = new.reason.clone().unwrap_or_default();
    let message = new.message.clone().unwrap_or_default();
    let until = new.expires_at.as_ref().map(from_k8s);
    let approvers: Vec<String> = match step {
        Step::Wait { tally, .. }
        | Step::Activate { tally, .. }
        | Step::KeepActive { tally, .. } => tally.approved_by.clone(),
        _ => vec![],
    };
    let approved_now = !approvers.is_empty()
        && matches!(phase, Phase::Scheduled | Phase::Active)
        && !matches!(old.phase, Some(Phase::Scheduled | Phase::Active));
    if approved_now {
        let note = format!("approved by {}", approvers.join(", "));
        ctx.publish(
            request,
            EventType::Normal,
            "Approved",
            "Approve",
            note.clone(),
        );
        let requester = request.requester_name().to_string();
        ctx.notifier.notify(Notification {
            kind: EventKind::Approved,
            request: request.name_any(),
            requester,
            role: request.spec.role.clone(),
            namespaces: request.spec.namespaces.clone(),
            until,
            approvers: approvers.clone(),
            reason: crate::policy::reasons::APPROVED.to_string(),
            message: note,
            break_glass: false,
            time: ctx.now(),
        });
    }
    // Decided on first sight (activated, denied…): an audit line for the request itself, and one
    // Event for the outcome below — a separate Event would be an API write saying nothing new.
    // Approvers are told about requests that wait for them, not about ones decided at once.
    if old.phase.is_none() && phase != Phase::Pending {
        audit_record(
            ctx,
            request,
            "requested",
            "Requested",
            "request received",
            None,
            &[],
            None,
        );
    }
    let (type_, event_reason, action, decision) = match phase {
        Phase::Pending => (EventType::Normal, "Requested", "Request", "requested"),
        Phase::Scheduled => (EventType::Normal, "Scheduled", "Schedule", "scheduled"),
        Phase::Active if reason == crate::policy::reasons::BREAK_GLASS || is_break_glass(step) => (
            EventType::Warning,
            "BreakGlassActivated",
            "Activate",
            "activated",
        ),
        Phase::Active => (EventType::Normal, "Activated", "Activate", "activated"),
        Phase::Expired => (EventType::Normal, "Expired", "Revoke", "expired"),
        Phase::Cancelled => (EventType::Normal, "Cancelled", "Revoke", "cancelled"),
        Phase::Revoked => (EventType::Normal, "Revoked", "Revoke", "revoked"),
        Phase::Denied => (EventType::Warning, "Denied", "Deny", "denied"),
        Phase::Failed => (EventType::Warning, "Failed", "Fail", "failed"),
    };
    ctx.publish(request, type_, event_reason, action, message.clone());
    let audit_reason = if is_break_glass(step) {
        crate::policy::reasons::BREAK_GLASS
    } else {
        reason.as_str()
    };
    let notify_as = EventKind::for_decision(decision, is_break_glass(step));
    audit_record(
        ctx,
        request,
        decision,
        audit_reason,
        &message,
        until,
        &approvers,
        notify_as,
    );
}

fn is_break_glass(step: &Step) -> bool {
    matches!(step, Step::Activate { reason, .. } if *reason == crate::policy::reasons::BREAK_GLASS)
}
