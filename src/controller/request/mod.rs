//! The ActivationRequest reconciler, along the pipeline: observe the cached request, role,
//! eligibilities and bindings; let [`crate::policy::lifecycle::decide`] choose the step; apply it
//! to the bindings ([`apply`]); write the status and record what changed ([`record`]).
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::api::ActivationRequestStatus;
use crate::api::{ActivationRequest, Eligibility, Phase};
use crate::policy::cache_lag::wait_for_caches;
use crate::policy::extension::Related;
use crate::policy::idle::{record_in_status, with_idle};
use crate::policy::lifecycle::{
    Input, ObservedBinding, Step, decide, is_overdue, namespace_missing,
};
use crate::policy::role_integrity::{self, Verdict};
use crate::policy::status::request_status;
use crate::policy::{reasons, transition};
use crate::time::from_k8s;

use super::Error;
use super::calls::Refusal;
use super::context::{Context, FoundBinding};
use super::footholds;
use super::role_rules;

mod apply;
pub(super) mod record;

use apply::Applied;

/// Look again this soon when a conditional write found the request changed.
pub(crate) const STALE_REQUEUE: Duration = Duration::from_millis(200);

pub async fn reconcile(
    request: Arc<ActivationRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let result = reconcile_request(&request, &ctx).await;
    if let Err(error) = &result
        && let Some(reason) = error.persistent_reason()
    {
        record::report_stuck(&ctx, &request, reason, &error.to_string()).await;
    }
    result
}

async fn reconcile_request(request: &ActivationRequest, ctx: &Context) -> Result<Action, Error> {
    let name = request.name_any();
    let now = ctx.now();
    let old_status = request.status.clone().unwrap_or_default();
    let role = ctx.role(&request.spec.role);
    let found = ctx.bindings_of(request, role.as_deref());
    // Our own write of a moment ago may not be in the cache yet: acting on the older version
    // would only repeat work and meet a conflict. The watch delivers the newer one, unless the
    // grant is overdue and one of its bindings is still there: that revocation does not wait for
    // the watch. (Once the bindings are gone there is nothing to hurry: an expiry herd would
    // otherwise redo every revocation it had just done.)
    let still_bound = found.iter().any(|f| !f.foreign);
    if ctx.is_superseded(&name, request.resource_version().as_deref())
        && !(still_bound && is_overdue(&old_status, now))
    {
        return Ok(Action::requeue(STALE_REQUEUE));
    }
    if request.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, request, &found).await;
    }

    // Observe and decide.
    let eligibilities = ctx.eligibilities_for(&request.spec.role);
    let eligibility_refs: Vec<&Eligibility> = eligibilities.iter().map(AsRef::as_ref).collect();
    let observed: Vec<ObservedBinding> = found
        .iter()
        .filter(|f| !f.foreign)
        .map(|f| f.observed.clone())
        .collect();
    let created_at = request
        .metadata
        .creation_timestamp
        .as_ref()
        .map(from_k8s)
        .unwrap_or(now);
    // Extensions: the request this one extends, and an Active extension of this one.
    let original = request
        .spec
        .extends
        .as_deref()
        .and_then(|name| ctx.requests.get(&ObjectRef::new(name)));
    let successor = ctx.active_extension_of(&name);
    let original_parts = original.as_deref().map(Parts::of);
    let successor_parts = successor.as_deref().map(Parts::of);
    // What privilege budgets count, gathered only while the request is still to be judged.
    let history = if old_status
        .phase
        .is_none_or(|p| matches!(p, Phase::Pending | Phase::Scheduled))
    {
        ctx.requests_of(request.requester_name(), &request.spec.role)
    } else {
        Vec::new()
    };
    let history_parts: Vec<Parts> = history.iter().map(|r| Parts::of(r)).collect();
    let history_related: Vec<Related> = history_parts.iter().map(Parts::related).collect();
    let step = decide(&Input {
        original: original_parts.as_ref().map(Parts::related),
        successor: successor_parts.as_ref().map(Parts::related),
        history: &history_related,
        request_name: &name,
        spec: &request.spec,
        status: &old_status,
        created_at,
        role: role.as_deref(),
        eligibilities: &eligibility_refs,
        observed: &observed,
        now,
    });
    if let Some(delay) = wait_for_caches(&step, created_at, now) {
        tracing::debug!(request = %name, ?step, "refusal of a new request waits for the caches");
        return Ok(Action::requeue(delay));
    }
    // The audit record, where configured, ends a grant unused for the role's idle timeout.
    let ingest = ctx.activity.is_some();
    let mut step = with_idle(
        step,
        role.as_deref(),
        old_status.activity.as_ref(),
        ingest,
        now,
    );
    // Role integrity: a grant whose role widened ends; an activation records the role's rules.
    let role_label = role
        .as_deref()
        .map(role_rules::role_label)
        .unwrap_or_default();
    let verdict = match (&step, role.as_deref()) {
        (Step::KeepActive { .. }, Some(r)) => match ctx.role_rules.current(r) {
            // The role changed since the grant was made: compare with the recorded rules, which
            // the cache does not keep.
            Some(now_rules)
                if old_status
                    .role_digest
                    .as_deref()
                    .is_some_and(|d| d != now_rules.digest) =>
            {
                let recorded = role_rules::recorded(ctx, request, &old_status).await?;
                role_integrity::judge(&recorded, Some(&now_rules))
            }
            now_rules => role_integrity::judge(&old_status, now_rules.as_ref()),
        },
        _ => Verdict::Unknown,
    };
    if !matches!(step, Step::KeepActive { .. })
        && let Some(uid) = request.metadata.uid.as_deref()
    {
        ctx.role_rules.forget_record(uid);
    }
    step = role_integrity::check(&step, &verdict, &role_label);
    let activation_rules = match (&step, role.as_deref()) {
        (Step::Activate { .. }, Some(r)) => Some(role_rules::for_activation(ctx, r).await?),
        _ => None,
    };
    tracing::debug!(request = %name, ?step, ?verdict, "decided");

    // Apply.
    let resource_version = match apply::apply(ctx, request, &step, &found).await? {
        Applied::Done { resource_version } => resource_version,
        Applied::Stale => return Ok(Action::requeue(STALE_REQUEUE)),
        Applied::NamespaceMissing {
            namespace,
            resource_version,
        } => {
            step = namespace_missing(&step, &namespace);
            tracing::info!(request = %name, %namespace, ?step, "namespace missing");
            resource_version
        }
    };

    // Record. A grant that ends is reviewed for what it left behind after this write (by
    // `controller::foothold_review`), so that the revocation waits for no scan.
    let mut new_status = request_status(&old_status, &step, request.metadata.generation, now);
    role_integrity::record(
        &mut new_status,
        &step,
        activation_rules.as_ref(),
        &verdict,
        &role_label,
        request.metadata.generation,
        now,
    );
    if footholds::ends_grant(&old_status, &step) {
        crate::policy::footholds::mark_pending(&mut new_status, request.metadata.generation, now);
    }
    // At a grant's end, what the aggregator counted and has not written yet goes into this write.
    let pending = ends_grant(&old_status, &new_status)
        .then(|| ctx.activity.as_ref().and_then(|a| a.take(&name)))
        .flatten();
    let usage = record_in_status(
        &old_status,
        &mut new_status,
        pending.as_ref(),
        ingest,
        request.metadata.generation,
        now,
    );
    let restore = |delta: Option<crate::api::Activity>| {
        if let (Some(aggregator), Some(delta)) = (ctx.activity.as_ref(), delta) {
            aggregator.restore(&name, delta);
        }
    };
    if new_status != old_status {
        match record::patch_status(ctx, &name, resource_version, &new_status).await {
            Ok(()) => {
                record::status_changed(ctx, request, &old_status, &new_status, &step);
                if let Some(usage) = usage.filter(|u| u.reason == reasons::NEVER_USED) {
                    record::happened(ctx, request, &transition::never_used(&usage.message));
                }
            }
            // Someone (an approver, or our own earlier write) changed the request since we read
            // it: decide again on the newer version, which the watch delivers.
            Err(error) if error.refusal() == Refusal::Conflict => {
                restore(pending);
                return Ok(Action::requeue(STALE_REQUEUE));
            }
            Err(error) => {
                restore(pending);
                return Err(error);
            }
        }
    }
    Ok(requeue_at(step.wake_at(), now))
}

/// Does this write end a grant (Active before, terminal after)?
fn ends_grant(old: &ActivationRequestStatus, new: &ActivationRequestStatus) -> bool {
    old.phase == Some(Phase::Active) && new.phase.is_some_and(Phase::is_terminal)
}

/// Another request as the decision sees it (name and status owned; the spec borrowed).
struct Parts<'a> {
    name: String,
    spec: &'a crate::api::ActivationRequestSpec,
    status: ActivationRequestStatus,
}

impl<'a> Parts<'a> {
    fn of(request: &'a ActivationRequest) -> Self {
        Self {
            name: request.name_any(),
            spec: &request.spec,
            status: request.status.clone().unwrap_or_default(),
        }
    }

    fn related(&self) -> Related<'_> {
        Related {
            name: &self.name,
            spec: self.spec,
            status: &self.status,
        }
    }
}

/// Requeue at the persisted instant the policy named; watch events never postpone it because
/// every path returns it again.
fn requeue_at(wake: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Action {
    match wake {
        Some(at) => Action::requeue((at - now).to_std().unwrap_or(Duration::ZERO)),
        None => Action::await_change(),
    }
}

/// Deletion: revoke synchronously, then let the request go.
async fn finalize(
    ctx: &Context,
    request: &ActivationRequest,
    found: &[FoundBinding],
) -> Result<Action, Error> {
    if !request
        .finalizers()
        .iter()
        .any(|f| f == crate::api::FINALIZER)
    {
        return Ok(Action::await_change());
    }
    apply::revoke_all(ctx, request, found).await?;
    apply::release(ctx, request).await?;
    if let Some(uid) = request.metadata.uid.as_deref() {
        ctx.role_rules.forget_record(uid);
    }
    if request.phase() == Some(Phase::Active) {
        record::happened(ctx, request, &transition::deleted_with_grant());
    }
    Ok(Action::await_change())
}
