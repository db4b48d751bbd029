//! AccessReview reconciler: open (fill the items from the caches), track progress, close at the
//! due time (record outcomes), and create the next review of a schedule.
//!
//! Every status write is a merge patch conditional on the resourceVersion the decision was made
//! on: a reviewer's decision arriving meanwhile makes it a 409, and the next reconcile decides
//! again with that decision in view. Removals take effect through the caches: the Eligibility
//! and request reconcilers consult closed reviews ([`Context::eligibilities_for`]), and the
//! runtime re-queues the Eligibilities and requests a review names when it changes.
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::api::{AccessReview, ActivationRequest, Eligibility, ReviewDecision};
use crate::audit::{self, AuditRecord};
use crate::policy::extension::Related;
use crate::policy::review::{self, ReviewStep};
use crate::policy::review_transition::{self, ReviewOccurrence};
use crate::policy::transition::Severity;

use super::Error;
use super::calls;
use super::context::Context;

/// A backstop: progress is written on decision writes (watch), the close is requeued for exactly.
pub const RECHECK: Duration = Duration::from_secs(600);

/// The Eligibilities whose status a change of `review` can change: those its removed items name.
pub fn eligibilities_of(review: &AccessReview) -> Vec<ObjectRef<Eligibility>> {
    let mut names: Vec<&str> = removed_items(review)
        .map(|i| i.eligibility.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(ObjectRef::new).collect()
}

/// The roles whose requests must be judged again when `review` changes: those of removed items.
pub fn roles_of(review: &AccessReview) -> Vec<String> {
    let mut roles: Vec<String> = removed_items(review).map(|i| i.role.clone()).collect();
    roles.sort_unstable();
    roles.dedup();
    roles
}

fn removed_items(review: &AccessReview) -> impl Iterator<Item = &crate::api::ReviewItem> {
    review
        .status
        .iter()
        .flat_map(|s| s.items.iter())
        .filter(|i| i.outcome == Some(ReviewDecision::Remove))
}

fn record(ctx: &Context, review: &AccessReview, name: &str, happened: &[ReviewOccurrence]) {
    for h in happened {
        if let Some(event) = &h.event {
            let type_ = match event.severity {
                Severity::Normal => kube::runtime::events::EventType::Normal,
                Severity::Warning => kube::runtime::events::EventType::Warning,
            };
            ctx.publish(
                review,
                type_,
                event.reason,
                event.action,
                event.note.clone(),
            );
        }
        audit::record(&AuditRecord {
            decision: h.decision,
            request: name,
            requester: &h.subject,
            role: &h.role,
            namespaces: &[],
            until: None,
            approvers: &[],
            reason: &h.reason,
            message: &h.message,
            break_glass: false,
        });
    }
}

fn requeue_until(at: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> Action {
    let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
    // A moment past the due time, so the next pass sees `now >= due`.
    Action::requeue(wait.min(RECHECK) + Duration::from_millis(200))
}

async fn write(
    ctx: &Context,
    review: &AccessReview,
    status: &crate::api::AccessReviewStatus,
    what: &'static str,
) -> Result<(), Error> {
    let status = serde_json::to_value(status).map_err(Error::Serialize)?;
    calls::patch_status_at::<AccessReview>(
        &ctx.client,
        &review.name_any(),
        review.resource_version(),
        status,
        what,
    )
    .await
    .map(drop)
}

pub async fn reconcile(review: Arc<AccessReview>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = review.name_any();
    let now = ctx.now();
    match review::step(&review, now) {
        ReviewStep::Unresolved => Ok(Action::requeue(RECHECK)),
        ReviewStep::Open { due } => {
            let eligibilities = ctx.eligibilities.state();
            let eligibilities: Vec<&Eligibility> = eligibilities.iter().map(Arc::as_ref).collect();
            let requests = ctx.requests.state();
            let history = history(&requests);
            let fill = review::fill(&review.spec, &eligibilities, &history, now);
            let (status, happened) = review_transition::opened(&review, fill, due, now);
            write(&ctx, &review, &status, "open access review").await?;
            tracing::info!(review = %name, items = status.items.len(), due = %due, "access review opened");
            record(&ctx, &review, &name, &happened);
            Ok(requeue_until(due, now))
        }
        ReviewStep::WaitUntil(due) => {
            if let Some(status) = review_transition::progressed(&review) {
                write(&ctx, &review, &status, "count access review decisions").await?;
            }
            Ok(requeue_until(due, now))
        }
        ReviewStep::Close { .. } => {
            let (status, happened) = review_transition::closed(&review, now);
            write(&ctx, &review, &status, "close access review").await?;
            tracing::info!(review = %name, "access review closed");
            record(&ctx, &review, &name, &happened);
            // The schedule's next review, on the pass this write triggers.
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        ReviewStep::Closed { next } => {
            let Some(next) = next else {
                return Ok(Action::await_change());
            };
            let next_name = next.name_any();
            if review
                .status
                .as_ref()
                .and_then(|s| s.next_review.as_deref())
                == Some(&next_name)
            {
                return Ok(Action::await_change());
            }
            let api = kube::Api::<AccessReview>::all(ctx.client.clone());
            match calls::bounded(
                "create next access review",
                api.create(&PostParams::default(), &next),
            )
            .await
            {
                Ok(_) => record(
                    &ctx,
                    &review,
                    &name,
                    &[review_transition::scheduled(&next_name)],
                ),
                // Created already (by an earlier pass whose status write was lost): just record it.
                Err(e) if e.api_code() == Some(409) => {}
                Err(e) => return Err(e),
            }
            let mut status = review.status.clone().unwrap_or_default();
            status.next_review = Some(next_name);
            write(&ctx, &review, &status, "record next access review").await?;
            Ok(Action::await_change())
        }
    }
}

/// The request history as the review policy reads it.
fn history(requests: &[Arc<ActivationRequest>]) -> Vec<Related<'_>> {
    requests
        .iter()
        .filter_map(|r| {
            Some(Related {
                name: r.metadata.name.as_deref()?,
                spec: &r.spec,
                status: r.status.as_ref()?,
            })
        })
        .collect()
}
