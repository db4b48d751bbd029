//! Eligibility status: inside its window or not, role present or not, and how often it was used.
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::api::conditions::ACTIVE;
use crate::api::{Eligibility, EligibilityStatus};
use crate::policy::eligibility::{EligibilityWindow, window_state};
use crate::policy::identity::subject_matches;
use crate::policy::reasons;
use crate::policy::status::set_condition;
use crate::time::{from_k8s, to_k8s};

use super::Error;
use super::calls;
use super::context::Context;

/// Activation counts are derived from requests: refresh them this often.
const RECHECK: Duration = Duration::from_secs(60);

pub async fn reconcile(elig: Arc<Eligibility>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = elig.name_any();
    let now = ctx.now();
    let window = window_state(&elig.spec, now);
    let role_exists = ctx.role(&elig.spec.role).is_some();
    let (active, reason, message) = match window {
        _ if !role_exists => (
            false,
            reasons::ROLE_NOT_FOUND,
            format!("PrivilegedRole {} does not exist", elig.spec.role),
        ),
        EligibilityWindow::NotYetValid(at) => (
            false,
            reasons::NOT_YET_VALID,
            format!("valid from {}", at.to_rfc3339()),
        ),
        EligibilityWindow::Expired(at) => (
            false,
            reasons::EXPIRED,
            format!("ended at {}", at.to_rfc3339()),
        ),
        EligibilityWindow::Within(Some(until)) => (
            true,
            reasons::WITHIN_WINDOW,
            format!("valid until {}", until.to_rfc3339()),
        ),
        EligibilityWindow::Within(None) => (
            true,
            reasons::WITHIN_WINDOW,
            "valid without end".to_string(),
        ),
    };

    // Derived from the requests this eligibility could have allowed: no write on the grant path.
    let activations: Vec<_> = ctx
        .requests
        .state()
        .into_iter()
        .filter(|r| r.spec.role == elig.spec.role)
        .filter(|r| {
            r.spec
                .requester
                .as_ref()
                .is_some_and(|req| elig.spec.subjects.iter().any(|s| subject_matches(s, req)))
        })
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
        active,
        reason,
        &message,
        elig.metadata.generation,
        now,
    );
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
