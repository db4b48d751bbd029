//! PrivilegedRole status: is the referenced role there, and how many grants are active.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::conditions::READY;
use crate::api::{Phase, PrivilegedRole, PrivilegedRoleStatus, RoleKind};
use crate::policy::reasons;
use crate::policy::status::set_condition;

use super::Error;
use super::bindings::CALL_TIMEOUT;
use super::context::Context;
use super::request::MANAGER;

/// Roles can appear or vanish without an event we watch: look again this often.
const RECHECK: Duration = Duration::from_secs(60);

async fn referenced_role_exists(ctx: &Context, role: &PrivilegedRole) -> Result<bool, Error> {
    let name = &role.spec.role_ref.name;
    let found = match (role.spec.role_ref.kind, &role.spec.role_ref.namespace) {
        (RoleKind::ClusterRole, _) => {
            let api: Api<ClusterRole> = Api::all(ctx.client.clone());
            tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name))
                .await
                .map(|r| r.map(|o| o.is_some()))
        }
        (RoleKind::Role, Some(ns)) => {
            let api: Api<Role> = Api::namespaced(ctx.client.clone(), ns);
            tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name))
                .await
                .map(|r| r.map(|o| o.is_some()))
        }
        (RoleKind::Role, None) => return Ok(false),
    };
    found
        .map_err(|_| Error::Timeout {
            what: "get referenced role",
        })?
        .map_err(|source| Error::Kube {
            what: "get referenced role",
            source,
        })
}

pub async fn reconcile(role: Arc<PrivilegedRole>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = role.name_any();
    let exists = referenced_role_exists(&ctx, &role).await?;
    let active_grants = ctx
        .requests
        .state()
        .iter()
        .filter(|r| r.spec.role == name && r.phase() == Some(Phase::Active))
        .count() as u32;
    let old = role.status.clone().unwrap_or_default();
    let mut status = PrivilegedRoleStatus {
        active_grants,
        observed_generation: role.metadata.generation,
        ..old.clone()
    };
    let kind = format!("{:?}", role.spec.role_ref.kind);
    let (reason, message) = if exists {
        (
            reasons::ROLE_READY,
            format!("{kind} {} exists", role.spec.role_ref.name),
        )
    } else {
        (
            reasons::REFERENCED_ROLE_NOT_FOUND,
            format!(
                "{kind} {} does not exist: activations would grant nothing",
                role.spec.role_ref.name
            ),
        )
    };
    set_condition(
        &mut status.conditions,
        READY,
        exists,
        reason,
        &message,
        role.metadata.generation,
        ctx.now(),
    );
    if status != old {
        let api: Api<PrivilegedRole> = Api::all(ctx.client.clone());
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let patch = Patch::Merge(json!({ "status": status }));
        let call = api.patch_status(&name, &params, &patch);
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| Error::Timeout {
                what: "patch role status",
            })?
            .map_err(|source| Error::Kube {
                what: "patch role status",
                source,
            })?;
    }
    Ok(Action::requeue(RECHECK))
}
