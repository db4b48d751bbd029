//! `kubectl pim footholds`: what a grant left behind, as its foothold review recorded it
//! (`status.footholds`), and — with `--remove` — its removal with the caller's own rights. The
//! operator never deletes what it does not manage (its admission policy holds it to managed
//! bindings). For roles with `onFootholds: Remove` the foothold remover ([`crate::remover`])
//! deletes bindings and token Secrets on its own. Everything else is for a person to decide, and
//! the API server's audit log records who removed what.
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Preconditions};
use kube::{Api, Client};

use crate::api::{ActivationRequest, FootholdRef};

use super::OpsError;

/// Where a removable foothold lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespace: Option<String>,
}

/// The object behind `f` when it is one `--remove` deletes: RBAC bindings and roles, and
/// ServiceAccounts and Secrets (tokens). Certificates, webhooks, pods, minted tokens, streams and
/// other writes are listed for a person to judge, never deleted by this command.
pub fn removable(f: &FootholdRef) -> Option<Target> {
    let rbac = "rbac.authorization.k8s.io";
    let (group, kind, plural, namespaced) = match f.kind.as_str() {
        "RoleBinding" => (rbac, "RoleBinding", "rolebindings", true),
        "ClusterRoleBinding" => (rbac, "ClusterRoleBinding", "clusterrolebindings", false),
        // The audit record reports ClusterRoles as Roles without a namespace.
        "Role" if f.namespace.is_some() => (rbac, "Role", "roles", true),
        "Role" => (rbac, "ClusterRole", "clusterroles", false),
        "ServiceAccount" => ("", "ServiceAccount", "serviceaccounts", true),
        "Secret" => ("", "Secret", "secrets", true),
        _ => return None,
    };
    if namespaced && f.namespace.is_none() {
        return None;
    }
    Some(Target {
        group,
        kind,
        plural,
        namespace: namespaced.then(|| f.namespace.clone()).flatten(),
    })
}

/// What happened to one foothold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    AlreadyGone,
    /// Not this command's to delete (see [`removable`]).
    Kept,
    /// The object with that name is another one now (its uid changed): left alone.
    Replaced,
    Failed(String),
}

/// The footholds `request`'s review recorded.
pub async fn of(client: &Client, request: &str) -> Result<Vec<FootholdRef>, OpsError> {
    let api: Api<ActivationRequest> = Api::all(client.clone());
    let found = api
        .get_opt(request)
        .await
        .map_err(|e| OpsError::kube(format!("reading {request}"), e))?
        .ok_or_else(|| OpsError::NotFound(request.to_string()))?;
    Ok(found.status.map(|s| s.footholds).unwrap_or_default())
}

/// Deletes each removable foothold, conditional on the uid the review saw.
pub async fn remove(client: &Client, footholds: &[FootholdRef]) -> Vec<(FootholdRef, Removal)> {
    let mut out = Vec::new();
    for f in footholds {
        let outcome = match removable(f) {
            None => Removal::Kept,
            Some(target) => delete(client, &target, f).await,
        };
        out.push((f.clone(), outcome));
    }
    out
}

async fn delete(client: &Client, target: &Target, f: &FootholdRef) -> Removal {
    let version = "v1";
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(target.group, version, target.kind),
        target.plural,
    );
    let api: Api<DynamicObject> = match &target.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let params = DeleteParams {
        preconditions: f.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&f.name, &params).await {
        Ok(_) => Removal::Removed,
        Err(kube::Error::Api(e)) if e.code == 404 => Removal::AlreadyGone,
        Err(kube::Error::Api(e)) if e.code == 409 => Removal::Replaced,
        Err(e) => Removal::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foothold(kind: &str, namespace: Option<&str>) -> FootholdRef {
        FootholdRef {
            kind: kind.into(),
            namespace: namespace.map(Into::into),
            name: "x".into(),
            uid: None,
            why: String::new(),
        }
    }

    #[test]
    fn only_rbac_service_accounts_and_secrets_are_removed() {
        let cases = [
            (
                "RoleBinding",
                Some("payments"),
                Some(("rolebindings", true)),
            ),
            (
                "ClusterRoleBinding",
                None,
                Some(("clusterrolebindings", false)),
            ),
            ("Role", Some("payments"), Some(("roles", true))),
            ("Role", None, Some(("clusterroles", false))),
            (
                "ServiceAccount",
                Some("payments"),
                Some(("serviceaccounts", true)),
            ),
            ("Secret", Some("payments"), Some(("secrets", true))),
            // A namespaced kind without its namespace is not guessed at.
            ("RoleBinding", None, None),
            ("CertificateSigningRequest", None, None),
            ("ValidatingWebhookConfiguration", None, None),
            ("Pod", Some("payments"), None),
            ("ServiceAccount token", Some("payments"), None),
            ("stream", Some("payments"), None),
            ("write", None, None),
        ];
        for (kind, ns, want) in cases {
            let got = removable(&foothold(kind, ns)).map(|t| (t.plural, t.namespace.is_some()));
            assert_eq!(got, want, "{kind} in {ns:?}");
        }
    }
}
