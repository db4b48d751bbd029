//! The referenced roles' rules as last read, per PrivilegedRole: what role integrity compares a
//! running grant against ([`crate::policy::role_integrity`]).
//!
//! Only the roles PrivilegedRoles name are read, one GET each, by the PrivilegedRole reconciler:
//! when its PrivilegedRole changes, every 60 s, and at once when the watch on Roles and
//! ClusterRoles (metadata only, nothing cached; see `runtime::term`) reports a change of the role
//! it names. When the rules it reads differ from those an Active grant recorded, that grant's
//! request is reconciled at once. An activation reads from here too, and asks the API server
//! itself when nothing was read yet, so a grant is never made without its rules recorded.
//!
//! The cache of requests keeps `status.roleDigest` but drops `status.grantedRules`
//! ([`trim_cached`]): up to 8 KiB per grant would be most of a cached request. They are read
//! back from the API server (one GET) only for a grant whose role's digest differs from the
//! recorded one, and kept here while that grant is Active.
use std::collections::HashMap;
use std::sync::Mutex;

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::{
    ActivationRequest, ActivationRequestStatus, GrantedRule, Phase, PrivilegedRole, RoleKind,
};
use crate::policy::role_integrity::Observed;

use super::Error;
use super::calls;
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
    /// Per request uid: the recorded digest and rules read back for it (see [`recorded`]).
    records: Mutex<HashMap<String, (String, Vec<GrantedRule>)>>,
    changes: Option<UnboundedSender<ObjectRef<ActivationRequest>>>,
}

impl RoleRules {
    /// Requests to reconcile because their role's rules changed go to `changes`.
    pub fn with_changes(changes: UnboundedSender<ObjectRef<ActivationRequest>>) -> Self {
        Self {
            changes: Some(changes),
            ..Self::default()
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

    /// The grant of `uid` is no longer Active: its read-back record is not needed any more.
    pub fn forget_record(&self, uid: &str) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.remove(uid);
    }

    fn notify(&self, request: ObjectRef<ActivationRequest>) {
        if let Some(changes) = &self.changes {
            let _ = changes.unbounded_send(request);
        }
    }
}

/// The role reconciler read `rules` (`None`: the role is gone) for `role`: remember them, and
/// have every Active grant of `role` whose recorded digest differs reconciled now. The requests
/// are only looked through when the reading differs from the previous one (or is the first):
/// the 60 s re-check of an unchanged role costs nothing per grant. (A grant activated on an
/// older reading meanwhile is judged by the reconcile its own activation write triggers.)
pub fn refreshed(ctx: &Context, role: &PrivilegedRole, rules: Option<Observed>) {
    let name = role.name_any();
    let digest = rules.as_ref().map(|r| r.digest.clone());
    let previous = ctx.role_rules.current(role).map(|r| r.digest);
    ctx.role_rules.remember(role, rules);
    let Some(digest) = digest else {
        return;
    };
    if previous.as_deref() == Some(digest.as_str()) {
        return;
    }
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

/// What the request cache drops: the recorded rules (the digest stays).
pub fn trim_cached(request: &mut ActivationRequest) {
    if let Some(status) = request.status.as_mut() {
        status.granted_rules = Vec::new();
    }
}

/// `status` with the rules recorded at activation, which the cache drops: as remembered for this
/// grant, or read back from the API server. Only the record matching the cached digest is used
/// (the controller never rewrites it); a request gone meanwhile keeps what the cache had.
pub async fn recorded(
    ctx: &Context,
    request: &ActivationRequest,
    status: &ActivationRequestStatus,
) -> Result<ActivationRequestStatus, Error> {
    let mut status = status.clone();
    let (Some(digest), Some(uid)) = (status.role_digest.clone(), request.uid()) else {
        return Ok(status);
    };
    if !status.granted_rules.is_empty() {
        return Ok(status);
    }
    {
        let records = ctx
            .role_rules
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, rules)) = records.get(&uid).filter(|(d, _)| *d == digest) {
            status.granted_rules = rules.clone();
            return Ok(status);
        }
    }
    let api: kube::Api<ActivationRequest> = kube::Api::all(ctx.client.clone());
    let fresh = calls::bounded("get request", api.get_opt(&request.name_any())).await?;
    let Some(fresh) = fresh.filter(|f| f.uid().as_deref() == Some(uid.as_str())) else {
        return Ok(status);
    };
    let Some(fresh) = fresh
        .status
        .filter(|s| s.role_digest.as_deref() == Some(digest.as_str()))
    else {
        return Ok(status);
    };
    let mut records = ctx
        .role_rules
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    records.insert(uid, (digest, fresh.granted_rules.clone()));
    status.granted_rules = fresh.granted_rules;
    Ok(status)
}

#[cfg(test)]
impl RoleRules {
    /// As before the role reconciler first read `role`.
    pub fn forget(&self, role: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(role);
    }
}
