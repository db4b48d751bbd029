//! PrivilegedRole status: is the referenced role there and may the operator bind it, how far it
//! reaches (risk flags), and how many grants are active.
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::api::conditions::{READY, RISK_ASSESSED};
use crate::api::{ActivationRequest, Phase, PrivilegedRole, PrivilegedRoleStatus};
use crate::policy::role_readiness::{readiness, risk_assessment};
use crate::policy::status::set_condition;

use super::Error;
use super::calls;
use super::context::Context;
use super::role_checks;
use super::role_rules;
use crate::policy::role_integrity::Observed;

/// Roles can appear or vanish without an event we watch: look again this often. (`activeGrants`
/// does not wait for it: request changes trigger a refresh, see [`affected_by`].)
const RECHECK: Duration = Duration::from_secs(60);

/// The PrivilegedRole whose `activeGrants` a change of `request` can change: its role, once the
/// request was activated (before that it is not counted, and it cannot be again after).
pub fn affected_by(request: &ActivationRequest) -> Option<ObjectRef<PrivilegedRole>> {
    let activated = request
        .status
        .as_ref()
        .is_some_and(|s| s.activated_at.is_some() || s.phase == Some(Phase::Active));
    activated.then(|| ObjectRef::new(&request.spec.role))
}

pub async fn reconcile(role: Arc<PrivilegedRole>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = role.name_any();
    let referenced = role_checks::referenced_role(&ctx, &role).await?;
    // Role integrity: what Active grants of this role are compared against.
    role_rules::refreshed(
        &ctx,
        &role,
        referenced.as_ref().map(|r| Observed::of(&r.rules)),
    );
    let bindable = match &referenced {
        Some(_) => Some(role_checks::may_bind(&ctx, &role).await?),
        None => None,
    };
    let active_grants = ctx
        .requests_for(&name)
        .iter()
        .filter(|r| r.phase() == Some(Phase::Active))
        .count() as u32;
    // `unmanagedBindings` and `separationFindings` belong to their scans: neither compared nor
    // written here.
    let old = PrivilegedRoleStatus {
        unmanaged_bindings: None,
        separation_findings: None,
        ..role.status.clone().unwrap_or_default()
    };
    let mut status = PrivilegedRoleStatus {
        active_grants,
        observed_generation: role.metadata.generation,
        ..old.clone()
    };
    let ready = readiness(&role, referenced.is_some(), bindable.as_ref());
    let risk = risk_assessment(
        &role,
        referenced.as_ref(),
        ctx.operator_namespace.as_deref(),
    );
    let now = ctx.now();
    for (kind, condition) in [(READY, &ready), (RISK_ASSESSED, &risk.condition)] {
        set_condition(
            &mut status.conditions,
            kind,
            condition.status,
            condition.reason,
            &condition.message,
            role.metadata.generation,
            now,
        );
    }
    status.risk_flags = risk.flags;
    if status != old {
        calls::patch_status::<PrivilegedRole>(&ctx.client, &name, &status, "patch role status")
            .await?;
    }
    Ok(Action::requeue(RECHECK))
}
