//! The last stage of a reconcile: the status written (conditional on the version decided upon),
//! then what the change means recorded (Event, audit line, notification).
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{ActivationRequest, ActivationRequestStatus};
use crate::policy::footholds::Foothold;
use crate::policy::lifecycle::Step;
use crate::policy::status::stuck_status;
use crate::policy::transition::{self, Occurrence};

use super::super::Error;
use super::super::calls;
use super::super::context::Context;
use super::super::record::{About, record};

/// Writes the controller-owned status fields, conditional on the version decided upon. Approvals
/// are left out of the patch so that concurrent approvers are never overwritten.
pub(in crate::controller) async fn patch_status(
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
    let updated: ActivationRequest =
        calls::patch_status_at(&ctx.client, name, resource_version, body, "patch status").await?;
    ctx.note_written(name, updated.resource_version().as_deref());
    Ok(())
}

/// Records every occurrence a status change from `old` to `new` means.
pub(super) fn status_changed(
    ctx: &Context,
    request: &ActivationRequest,
    old: &ActivationRequestStatus,
    new: &ActivationRequestStatus,
    step: &Step,
) {
    let name = request.name_any();
    for happened in transition::of_status_change(old, new, step) {
        record(ctx, request, About::request(request, &name), &happened);
    }
}

/// Records one occurrence about the request.
pub(super) fn happened(ctx: &Context, request: &ActivationRequest, happened: &Occurrence) {
    let name = request.name_any();
    record(ctx, request, About::request(request, &name), happened);
}

/// A request the controller cannot move on shows why: `Ready=False` with the reason, once per
/// distinct error (an identical condition is not written again), a Warning Event and an audit
/// line. Best effort: the reconcile is retried whatever happens here.
pub(super) async fn report_stuck(
    ctx: &Context,
    request: &ActivationRequest,
    reason: &'static str,
    message: &str,
) {
    // The reconcile may have written since it read (the finalizer): judge and write on the latest
    // version, conditional on it, so that nothing written meanwhile (an approval) is overwritten.
    let name = request.name_any();
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let Ok(Some(latest)) = calls::bounded("get request", api.get_opt(&name)).await else {
        return;
    };
    let old = latest.status.clone().unwrap_or_default();
    let new = stuck_status(&old, reason, message, latest.metadata.generation, ctx.now());
    if new == old {
        return;
    }
    if let Err(error) = patch_status(ctx, &name, latest.resource_version(), &new).await {
        tracing::debug!(%error, request = %name, "could not record why the request is stuck");
        return;
    }
    tracing::warn!(request = %name, reason, "{message}");
    happened(ctx, &latest, &transition::stuck(reason, message));
}

/// What a grant left behind: a Warning Event, an audit line, the security audience's
/// notification, and the metric per object.
pub(in crate::controller) fn footholds(
    ctx: &Context,
    request: &ActivationRequest,
    found: &[Foothold],
) {
    for foothold in found {
        ctx.metrics.observe_foothold(foothold.found.kind.as_str());
    }
    let message = crate::policy::footholds::summary(found);
    tracing::warn!(request = %request.name_any(), count = found.len(), "{message}");
    happened(ctx, request, &transition::footholds_found(&message));
}
