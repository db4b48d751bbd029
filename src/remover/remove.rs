//! One removal: the live check, the deletion conditional on the uid the review saw, and its
//! record.
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::ActivationRequest;
use crate::audit::{self, AuditRecord};
use crate::controller::footholds::found;
use crate::events::Recorder;
use crate::policy::foothold_removal::{RemovableKind, Removal, binding_still_a_foothold};
use crate::policy::footholds::{Found, FoundKind};
use crate::policy::identity::service_account_parts;
use crate::policy::reasons;
use crate::policy::transition::AuditDecision;

/// What became of one removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Removed,
    /// Gone already (removed by a person, or by an earlier run of the remover).
    AlreadyGone,
    /// An object of that name exists but it is another one (its uid differs): left alone.
    Replaced,
    /// Not a foothold of this grant as it is now: left alone, and why.
    NoLongerAFoothold(&'static str),
    /// The API server refused the deletion (the remover's admission policy, or its RBAC).
    Refused(String),
    /// The call failed; tried again later.
    Failed(String),
}

fn conditional_on(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

fn outcome_of_delete<T>(result: Result<T, kube::Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Removed,
        Err(kube::Error::Api(e)) if e.code == 404 => Outcome::AlreadyGone,
        // The uid precondition failed: the name belongs to another object now.
        Err(kube::Error::Api(e)) if e.code == 409 => Outcome::Replaced,
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => Outcome::Refused(e.message),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Carries out `removal` of `request`'s verdict.
pub async fn one(client: &Client, request: &ActivationRequest, removal: &Removal) -> Outcome {
    match (removal.kind, removal.namespace.as_deref()) {
        (RemovableKind::RoleBinding, Some(ns)) => {
            let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
            binding(client, api, request, removal, FoundKind::RoleBinding, |b| {
                b.subjects.clone()
            })
            .await
        }
        (RemovableKind::ClusterRoleBinding, None) => {
            let api: Api<ClusterRoleBinding> = Api::all(client.clone());
            binding(
                client,
                api,
                request,
                removal,
                FoundKind::ClusterRoleBinding,
                |b| b.subjects.clone(),
            )
            .await
        }
        // The remover may not read Secrets (that would be every Secret's data): the deletion is
        // conditional on the uid the scan saw, and the remover's admission policy refuses it
        // unless the Secret is a ServiceAccount token.
        (RemovableKind::TokenSecret, Some(ns)) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            outcome_of_delete(
                api.delete(&removal.name, &conditional_on(&removal.uid))
                    .await,
            )
        }
        _ => Outcome::NoLongerAFoothold("malformed foothold"),
    }
}

/// Reads the binding, judges it again as it is now, and deletes it conditional on its uid.
async fn binding<K>(
    client: &Client,
    api: Api<K>,
    request: &ActivationRequest,
    removal: &Removal,
    kind: FoundKind,
    subjects_of: impl Fn(&K) -> Option<Vec<Subject>>,
) -> Outcome
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let live = match api.get_opt(&removal.name).await {
        Ok(Some(live)) => live,
        Ok(None) => return Outcome::AlreadyGone,
        Err(e) => return outcome_of_delete::<()>(Err(e)),
    };
    if live.meta().uid.as_deref() != Some(removal.uid.as_str()) {
        return Outcome::Replaced;
    }
    let seen = Found {
        kind,
        subjects: subjects_of(&live).unwrap_or_default(),
        ..found(kind, &live)
    };
    let accounts = match service_accounts_named(client, &seen.subjects).await {
        Ok(accounts) => accounts,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if let Err(why) = binding_still_a_foothold(request, &seen, &accounts, chrono::Utc::now()) {
        return Outcome::NoLongerAFoothold(why);
    }
    outcome_of_delete(
        api.delete(&removal.name, &conditional_on(&removal.uid))
            .await,
    )
}

/// The ServiceAccounts `subjects` name that exist (by kind, or as a `system:serviceaccount:`
/// user), for the rule "binds a ServiceAccount created during the grant".
async fn service_accounts_named(
    client: &Client,
    subjects: &[Subject],
) -> Result<Vec<Found>, kube::Error> {
    let mut out = Vec::new();
    for s in subjects {
        let named = match s.kind.as_str() {
            "ServiceAccount" => s.namespace.clone().map(|ns| (ns, s.name.clone())),
            "User" => service_account_parts(&s.name).map(|(ns, n)| (ns.to_string(), n.to_string())),
            _ => None,
        };
        let Some((ns, name)) = named else { continue };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        if let Some(account) = api.get_opt(&name).await? {
            out.push(found(FoundKind::ServiceAccount, &account));
        }
    }
    Ok(out)
}

/// The Event on the request and the audit line (nothing for what was gone already).
pub async fn record(
    recorder: &Recorder,
    request: &ActivationRequest,
    removal: &Removal,
    outcome: &Outcome,
) {
    let what = removal.describe();
    let name = request.name_any();
    let (decision, type_, reason, note) = match outcome {
        Outcome::Removed => (
            AuditDecision::FootholdRemoved,
            EventType::Normal,
            reasons::FOOTHOLD_REMOVED,
            format!("removed {what} ({}), left behind by the grant", removal.why),
        ),
        Outcome::NoLongerAFoothold(why) => (
            AuditDecision::FootholdKept,
            EventType::Warning,
            reasons::FOOTHOLD_KEPT,
            format!("kept {what}: {why}"),
        ),
        Outcome::Refused(message) => (
            AuditDecision::FootholdKept,
            EventType::Warning,
            reasons::FOOTHOLD_KEPT,
            format!("kept {what}: the API server refused its deletion: {message}"),
        ),
        Outcome::Failed(error) => {
            tracing::warn!(request = %name, object = %what, %error, "foothold removal failed; will retry");
            return;
        }
        Outcome::AlreadyGone | Outcome::Replaced => {
            tracing::debug!(request = %name, object = %what, ?outcome, "nothing to remove");
            return;
        }
    };
    audit::record(&AuditRecord {
        decision,
        request: &name,
        requester: request.requester_name(),
        role: &request.spec.role,
        namespaces: &request.spec.namespaces,
        until: None,
        approvers: &[],
        reason,
        message: &note,
        break_glass: false,
    });
    // The object is the Event's `related`: the recorder folds Events that differ only in
    // their note into one series, and each removal is an Event of its own.
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "RemoveFoothold".into(),
        secondary: Some(removal.object_reference()),
    };
    if let Err(error) = recorder.publish(&event, &request.object_ref(&())).await {
        tracing::warn!(%error, request = %name, "could not publish event");
    }
}
