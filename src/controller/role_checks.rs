//! What the PrivilegedRole reconciler asks the API server about the referenced role: is it there
//! (and what are its rules), and may the operator bind it (a SelfSubjectAccessReview). Each call is
//! bounded by [`super::calls::CALL_TIMEOUT`]; access answers are remembered ([`NOT_BINDABLE_TTL`],
//! [`BINDABLE_TTL`]), so that neither the reconcile our own status write triggers nor the 60 s
//! re-check of a bindable role asks again.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::Api;
use kube::api::PostParams;

use crate::api::{PrivilegedRole, RoleKind};

use super::Error;
use super::calls::bounded;
use super::context::Context;
use crate::policy::role_readiness::{Bindability, Referenced};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Reads the referenced Role or ClusterRole (`None`: it does not exist).
pub async fn referenced_role(
    ctx: &Context,
    role: &PrivilegedRole,
) -> Result<Option<Referenced>, Error> {
    let name = &role.spec.role_ref.name;
    let what = "get referenced role";
    let found = match (role.spec.role_ref.kind, &role.spec.role_ref.namespace) {
        (RoleKind::ClusterRole, _) => {
            let api: Api<ClusterRole> = Api::all(ctx.client.clone());
            bounded(what, api.get_opt(name)).await?.map(|r| Referenced {
                rules: r.rules.unwrap_or_default(),
                aggregated: r.aggregation_rule.is_some(),
            })
        }
        (RoleKind::Role, Some(ns)) => {
            let api: Api<Role> = Api::namespaced(ctx.client.clone(), ns);
            bounded(what, api.get_opt(name)).await?.map(|r| Referenced {
                rules: r.rules.unwrap_or_default(),
                aggregated: false,
            })
        }
        (RoleKind::Role, None) => None,
    };
    Ok(found)
}

/// One SelfSubjectAccessReview: may the operator `bind` this role (in this namespace)?
async fn may_bind_in(
    ctx: &Context,
    resource: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<bool, Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("bind".into()),
                group: Some(RBAC_GROUP.into()),
                resource: Some(resource.into()),
                name: Some(name.into()),
                namespace: namespace.map(Into::into),
                ..Default::default()
            }),
            non_resource_attributes: None,
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(ctx.client.clone());
    let answer = bounded(
        "self subject access review",
        api.create(&PostParams::default(), &review),
    )
    .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Asks the API server whether the operator may bind the referenced role everywhere the
/// PrivilegedRole grants it: one review cluster-wide, and for a ClusterRole granted through
/// RoleBindings, one per namespace only when the cluster-wide answer is no (`bind` may be granted
/// per namespace). A Role is asked about in its own namespace.
///
/// The API server also lets a binding through when its author already holds every permission of
/// the role; that path is not asked about: the chart grants `bind` by name, which is what counts.
pub async fn may_bind(ctx: &Context, role: &PrivilegedRole) -> Result<Bindability, Error> {
    let role_ref = &role.spec.role_ref;
    let scope = &role.spec.scope;
    let key = format!(
        "{:?}/{}/{}/{}/{}",
        role_ref.kind,
        role_ref.namespace.as_deref().unwrap_or(""),
        role_ref.name,
        scope.cluster_wide,
        scope.namespaces.join(",")
    );
    if let Some(answer) = ctx.bind_checks.get(&key) {
        return Ok(answer);
    }
    let answer = match (role_ref.kind, &role_ref.namespace) {
        (RoleKind::Role, namespace) => {
            if may_bind_in(ctx, "roles", &role_ref.name, namespace.as_deref()).await? {
                Bindability::Bindable
            } else {
                Bindability::NotBindable {
                    namespace: namespace.clone(),
                }
            }
        }
        (RoleKind::ClusterRole, _) => {
            if may_bind_in(ctx, "clusterroles", &role_ref.name, None).await? {
                Bindability::Bindable
            } else if scope.cluster_wide || scope.namespaces.is_empty() {
                Bindability::NotBindable { namespace: None }
            } else {
                let mut answer = Bindability::Bindable;
                for ns in &scope.namespaces {
                    if !may_bind_in(ctx, "clusterroles", &role_ref.name, Some(ns)).await? {
                        answer = Bindability::NotBindable {
                            namespace: Some(ns.clone()),
                        };
                        break;
                    }
                }
                answer
            }
        }
    };
    ctx.bind_checks.put(key, answer.clone());
    Ok(answer)
}
