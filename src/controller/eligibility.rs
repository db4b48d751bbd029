//! Eligibility status: inside its window or not, role present or not, and how often it was used.
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::api::conditions::{ACTIVE, REVIEW_REMOVED};
use crate::api::{ActivationRequest, Eligibility, EligibilityStatus, Phase, RemovedSubject};
use crate::policy::eligibility::{active_condition, window_state};
use crate::policy::identity::subject_matches;
use crate::policy::status::set_condition;
use crate::time::{from_k8s, to_k8s};

use super::Error;
use super::calls;
use super::context::Context;

/// A backstop only: window changes are requeued for exactly, and request and PrivilegedRole
/// changes trigger a refresh ([`affected_by`], [`of_role`]). Every reconcile scans the request
/// role's requests, so a short period costs CPU on an idle cluster: with 5,000 eligibilities and
/// 10,000 requests, a 60 s period was most of the operator's idle CPU (BENCHMARKS.md, scale).
pub const RECHECK: Duration = Duration::from_secs(600);

/// The Eligibilities that name `role`: their `Active` condition says whether it exists.
pub fn of_role(eligibilities: &[Arc<Eligibility>], role: &str) -> Vec<ObjectRef<Eligibility>> {
    eligibilities
        .iter()
        .filter(|e| e.spec.role == role)
        .map(|e| ObjectRef::from_obj(e.as_ref()))
        .collect()
}

/// Whether an activation of `request` may have rested on `elig`: the same role, and one of its
/// subjects names the requester. Such activations are what `status.activations` counts.
pub fn counts(elig: &Eligibility, request: &ActivationRequest) -> bool {
    request.spec.role == elig.spec.role
        && request
            .spec
            .requester
            .as_ref()
            .is_some_and(|req| elig.spec.subjects.iter().any(|s| subject_matches(s, req)))
}

/// The Eligibilities whose status a change of `request` can change: none until it was activated
/// (only activations are counted), then those it [`counts`] for.
pub fn affected_by(
    eligibilities: &[Arc<Eligibility>],
    request: &ActivationRequest,
) -> Vec<ObjectRef<Eligibility>> {
    let activated = request
        .status
        .as_ref()
        .is_some_and(|s| s.activated_at.is_some() || s.phase == Some(Phase::Active));
    if !activated {
        return Vec::new();
    }
    eligibilities
        .iter()
        .filter(|elig| counts(elig, request))
        .map(|elig| ObjectRef::from_obj(elig.as_ref()))
        .collect()
}

pub async fn reconcile(elig: Arc<Eligibility>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = elig.name_any();
    let now = ctx.now();
    let window = window_state(&elig.spec, now);
    let role_exists = ctx.role(&elig.spec.role).is_some();
    let active = active_condition(&window, &elig.spec.role, role_exists);

    // Derived from the requests this eligibility could have allowed: no write on the grant path.
    let activations: Vec<_> = ctx
        .requests_for(&elig.spec.role)
        .into_iter()
        .filter(|r| counts(&elig, r))
        .filter_map(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.activated_at.as_ref())
                .map(from_k8s)
        })
        .collect();

    let old = elig.status.clone().unwrap_or_default();
    let mut status = EligibilityStatus {
        activations: activations.len() as u64,
        last_activated_at: activations.iter().max().copied().map(to_k8s),
        observed_generation: elig.metadata.generation,
        ..old.clone()
    };
    set_condition(
        &mut status.conditions,
        ACTIVE,
        active.status,
        active.reason,
        &active.message,
        elig.metadata.generation,
        now,
    );
    // Subjects closed reviews removed: shown, and (through `Context::eligibilities_for`) no
    // longer honoured for any request. The condition appears with the first removal only, so
    // eligibilities never reviewed are not rewritten.
    let removed = ctx.removals_for(&elig);
    status.removed_by_review = removed
        .iter()
        .take(64)
        .map(|r| RemovedSubject {
            subject: r.subject.clone(),
            review: r.review.clone(),
            at: to_k8s(r.closed_at),
        })
        .collect();
    let had_condition = status.conditions.iter().any(|c| c.type_ == REVIEW_REMOVED);
    if !removed.is_empty() || had_condition {
        let (reason, message) = match removed.as_slice() {
            [] => (
                "NoneRemoved",
                "no subject is removed by an access review".to_string(),
            ),
            removed => (
                "SubjectsRemoved",
                format!(
                    "not honoured, removed by access review: {}; they stay removed until this Eligibility changes in Git",
                    removed
                        .iter()
                        .map(|r| format!("{:?} {} ({})", r.subject.kind, r.subject.name, r.review))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        set_condition(
            &mut status.conditions,
            REVIEW_REMOVED,
            !removed.is_empty(),
            reason,
            &message,
            elig.metadata.generation,
            now,
        );
    }
    if status != old {
        calls::patch_status::<Eligibility>(&ctx.client, &name, &status, "patch eligibility status")
            .await?;
    }
    let next = window
        .next_change()
        .and_then(|at| (at - now).to_std().ok())
        .map_or(RECHECK, |d| d.min(RECHECK));
    Ok(Action::requeue(next))
}
