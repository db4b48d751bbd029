//! The referenced roles' rules as last read, per PrivilegedRole: what role integrity compares a
//! running grant against ([`crate::policy::role_integrity`]).
//!
//! Only the roles PrivilegedRoles name are read, one GET each, by the PrivilegedRole reconciler:
//! when its PrivilegedRole changes, every 60 s, and at once when the watch on Roles and
//! ClusterRoles (metadata only, nothing cached; see `runtime::term`) reports a change of the role
//! it names. When the rules it reads differ from those an Active grant recorded, that grant's
//! request is reconciled at once. An activation reads from here too, and asks the API server
//! itself when nothing was read yet, so a grant is never made without its rules recorded.
use std::collections::HashMap;
use std::sync::Mutex;

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::{ActivationRequest, Phase, PrivilegedRole, RoleKind};
use crate::policy::role_integrity::Observed;

use super::Error;
use super::context::Context;
use super::role_checks;

/// "ClusterRole admin", "Role payments/db": the role a PrivilegedRole references, as messages
/// name it (and the key that tells a changed roleRef from the role it referenced before).
pub fn role_label(role: &PrivilegedRole) -> String {
    let r = &role.spec.role_ref;
    match (r.kind, &r.namespace) {
        (RoleKind::ClusterRole, _) => format!("ClusterRole {}", r.name),
        (RoleKind::Role, Some(ns)) => format!("Role {ns}/{}", r.name),
        (RoleKind::Role, None) => format!("Role {}", r.name),
    }
}

#[derive(Debug, Clone)]
struct Seen {
    role: String,
    /// `None`: the role does not exist.
    rules: Option<Observed>,
}

/// Per PrivilegedRole, the rules of the role it referenced when last read, and where to send
/// the requests whose grants that reading concerns.
#[derive(Debug, Default)]
pub struct RoleRules {
    seen: Mutex<HashMap<String, Seen>>,
    changes: Option<UnboundedSender<ObjectRef<ActivationRequest>>>,
}

impl RoleRules {
    /// Requests to reconcile because their role's rules changed go to `changes`.
    pub fn with_changes(changes: UnboundedSender<ObjectRef<ActivationRequest>>) -> Self {
        Self {
            seen: Mutex::default(),
            changes: Some(changes),
        }
    }

    /// The rules last read for `role`'s referenced role (`None`: not read yet, missing, or
    /// read while the PrivilegedRole referenced another role).
    pub fn current(&self, role: &PrivilegedRole) -> Option<Observed> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&role.name_any())
            .filter(|s| s.role == role_label(role))
            .and_then(|s| s.rules.clone())
    }

    /// Remembers what was read (tests fill it by hand, as the role reconciler would).
    pub fn remember(&self, role: &PrivilegedRole, rules: Option<Observed>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(
            role.name_any(),
            Seen {
                role: role_label(role),
                rules,
            },
        );
    }

    fn notify(&self, request: ObjectRef<ActivationRequest>) {
        if let Some(changes) = &self.changes {
            let _ = changes.unbounded_send(request);
        }
    }
}

/// The role reconciler read `rules` (`None`: the role is gone) for `role`: remember them, and
/// have every Active grant of `role` whose recorded digest differs reconciled now.
pub fn refreshed(ctx: &Context, role: &PrivilegedRole, rules: Option<Observed>) {
    let name = role.name_any();
    let digest = rules.as_ref().map(|r| r.digest.clone());
    ctx.role_rules.remember(role, rules);
    let Some(digest) = digest else {
        return;
    };
    for request in ctx.requests.state() {
        let differs = request.spec.role == name
            && request.phase() == Some(Phase::Active)
            && request
                .status
                .as_ref()
                .and_then(|s| s.role_digest.as_deref())
                .is_some_and(|recorded| recorded != digest);
        if differs {
            tracing::info!(request = %request.name_any(), role = %name, "referenced role changed: re-checking the grant");
            ctx.role_rules.notify(ObjectRef::from_obj(request.as_ref()));
        }
    }
}

/// The rules to record for an activation: as last read, or read now (a missing role has none).
pub async fn for_activation(ctx: &Context, role: &PrivilegedRole) -> Result<Observed, Error> {
    if let Some(rules) = ctx.role_rules.current(role) {
        return Ok(rules);
    }
    let referenced = role_checks::referenced_role(ctx, role).await?;
    let rules = Observed::of(referenced.map(|r| r.rules).as_deref().unwrap_or_default());
    ctx.role_rules.remember(role, Some(rules.clone()));
    Ok(rules)
}

#[cfg(test)]
impl RoleRules {
    /// As before the role reconciler first read `role`.
    pub fn forget(&self, role: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(role);
    }
}
