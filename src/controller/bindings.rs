//! Managed RoleBindings and ClusterRoleBindings: built from the policy's desired bindings, read
//! back into observed ones, created and deleted with bounded time.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::{ActivationRequest, RoleKind, labels};
use crate::policy::lifecycle::{BindingKind, DesiredBinding, ObservedBinding};

use super::Error;

use super::calls::{Refusal, bounded};

fn metadata(
    desired: &DesiredBinding,
    request: &ActivationRequest,
    expires_at: DateTime<Utc>,
) -> ObjectMeta {
    let request_name = request.name_any();
    let mut label_map = BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::REQUEST.to_string(), label_value(&request_name)),
        (labels::ROLE.to_string(), label_value(&request.spec.role)),
    ]);
    label_map.retain(|_, v| !v.is_empty());
    let annotations = BTreeMap::from([
        (
            labels::EXPIRES_AT.to_string(),
            expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        (
            labels::REQUEST_UID.to_string(),
            request.uid().unwrap_or_default(),
        ),
        (labels::REQUEST.to_string(), request_name),
    ]);
    // Backstop only: revocation never waits for garbage collection.
    let owner = request.controller_owner_ref(&()).map(|o| OwnerReference {
        block_owner_deletion: Some(false),
        ..o
    });
    ObjectMeta {
        name: Some(desired.name.clone()),
        namespace: desired.namespace.clone(),
        labels: Some(label_map),
        annotations: Some(annotations),
        owner_references: owner.map(|o| vec![o]),
        ..Default::default()
    }
}

/// Label values are at most 63 characters; longer request names are found by annotation.
fn label_value(value: &str) -> String {
    if value.len() <= 63 {
        value.to_string()
    } else {
        String::new()
    }
}

fn role_ref(desired: &DesiredBinding) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: match desired.role_kind {
            RoleKind::Role => "Role".into(),
            RoleKind::ClusterRole => "ClusterRole".into(),
        },
        name: desired.role_name.clone(),
    }
}

/// What a create came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This call created it (with the server's `creationTimestamp`, when it gave one).
    Now(Option<DateTime<Utc>>),
    /// This request's binding was there already: an earlier attempt made it, with that attempt's
    /// expiry annotation.
    Earlier,
}

/// Creates one desired binding; this request's own binding already there counts as success.
pub async fn create(
    client: &Client,
    desired: &DesiredBinding,
    request: &ActivationRequest,
    expires_at: DateTime<Utc>,
) -> Result<Created, Error> {
    let meta = metadata(desired, request, expires_at);
    let subjects = Some(vec![desired.subject.clone()]);
    let result = match (desired.kind, &desired.namespace) {
        (BindingKind::ClusterRoleBinding, _) => {
            let api: Api<ClusterRoleBinding> = Api::all(client.clone());
            let obj = ClusterRoleBinding {
                metadata: meta,
                role_ref: role_ref(desired),
                subjects,
            };
            bounded(
                "create ClusterRoleBinding",
                api.create(&PostParams::default(), &obj),
            )
            .await
            .map(|created| Created::Now(created_at(&created)))
        }
        (BindingKind::RoleBinding, Some(ns)) => {
            let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
            let obj = RoleBinding {
                metadata: meta,
                role_ref: role_ref(desired),
                subjects,
            };
            bounded(
                "create RoleBinding",
                api.create(&PostParams::default(), &obj),
            )
            .await
            .map(|created| Created::Now(created_at(&created)))
        }
        (BindingKind::RoleBinding, None) => {
            return Err(Error::Invariant("RoleBinding without namespace"));
        }
    };
    match result {
        Err(error) if error.refusal() == Refusal::Conflict => {
            // Ours from an earlier attempt: fine, the next observation compares it with what is
            // desired. Anyone else's: never adopt it, and say why the grant cannot be made.
            match uid_if_owned(
                client,
                desired.kind,
                desired.namespace.as_deref(),
                &desired.name,
                request,
            )
            .await?
            {
                Some(_) => Ok(Created::Earlier),
                None => Err(Error::NameTaken {
                    kind: desired.kind.as_str(),
                    namespace: desired.namespace.clone(),
                    name: desired.name.clone(),
                }),
            }
        }
        other => other,
    }
}

fn created_at<K: Resource>(obj: &K) -> Option<DateTime<Utc>> {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(crate::time::from_k8s)
}

/// Deletes a managed binding; already gone is success. The UID precondition makes sure we only
/// delete the object we observed. Returns whether this call deleted it.
pub async fn delete(
    client: &Client,
    kind: BindingKind,
    namespace: Option<&str>,
    name: &str,
    uid: Option<String>,
) -> Result<bool, Error> {
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    let result = match (kind, namespace) {
        (BindingKind::ClusterRoleBinding, _) => {
            let api: Api<ClusterRoleBinding> = Api::all(client.clone());
            bounded("delete ClusterRoleBinding", api.delete(name, &params))
                .await
                .map(|_| true)
        }
        (BindingKind::RoleBinding, Some(ns)) => {
            let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
            bounded("delete RoleBinding", api.delete(name, &params))
                .await
                .map(|_| true)
        }
        (BindingKind::RoleBinding, None) => {
            return Err(Error::Invariant("RoleBinding without namespace"));
        }
    };
    match result {
        Err(error) if error.refusal() == Refusal::NotFound => Ok(false),
        other => other,
    }
}

/// Is this object one kubepim manages?
pub fn is_managed<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGED_BY_VALUE)
}

/// The request a managed binding belongs to (annotation first: labels are cut at 63 chars).
pub fn request_name_of<K: Resource>(obj: &K) -> Option<String> {
    let meta = obj.meta();
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(labels::REQUEST))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(labels::REQUEST)))
        .cloned()
}

pub fn request_uid_of<K: Resource>(obj: &K) -> Option<String> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::REQUEST_UID))
        .cloned()
}

pub fn expires_at_of<K: Resource>(obj: &K) -> Option<DateTime<Utc>> {
    let raw = obj.meta().annotations.as_ref()?.get(labels::EXPIRES_AT)?;
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn observed(
    kind: BindingKind,
    meta: &ObjectMeta,
    role_ref: &RoleRef,
    subjects: &Option<Vec<Subject>>,
    expires_at: Option<DateTime<Utc>>,
) -> ObservedBinding {
    ObservedBinding {
        kind,
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        role_kind: role_ref.kind.clone(),
        role_name: role_ref.name.clone(),
        subjects: subjects.clone().unwrap_or_default(),
        expires_at,
    }
}

pub fn observe_role_binding(b: &RoleBinding) -> ObservedBinding {
    observed(
        BindingKind::RoleBinding,
        &b.metadata,
        &b.role_ref,
        &b.subjects,
        expires_at_of(b),
    )
}

pub fn observe_cluster_role_binding(b: &ClusterRoleBinding) -> ObservedBinding {
    observed(
        BindingKind::ClusterRoleBinding,
        &b.metadata,
        &b.role_ref,
        &b.subjects,
        expires_at_of(b),
    )
}

/// Reads a binding and returns its UID if it is managed and made for `request`.
pub async fn uid_if_owned(
    client: &Client,
    kind: BindingKind,
    namespace: Option<&str>,
    name: &str,
    request: &ActivationRequest,
) -> Result<Option<String>, Error> {
    let request_uid = request.uid();
    let meta = match (kind, namespace) {
        (BindingKind::ClusterRoleBinding, _) => {
            let api: Api<ClusterRoleBinding> = Api::all(client.clone());
            bounded("get ClusterRoleBinding", api.get_opt(name))
                .await?
                .map(|b| b.metadata)
        }
        (BindingKind::RoleBinding, Some(ns)) => {
            let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
            bounded("get RoleBinding", api.get_opt(name))
                .await?
                .map(|b| b.metadata)
        }
        (BindingKind::RoleBinding, None) => {
            return Err(Error::Invariant("RoleBinding without namespace"));
        }
    };
    let Some(meta) = meta else { return Ok(None) };
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGED_BY_VALUE);
    let made_for = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::REQUEST_UID))
        .cloned();
    Ok((managed && made_for.is_some() && made_for == request_uid)
        .then_some(meta.uid)
        .flatten())
}
