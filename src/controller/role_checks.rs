//! What the PrivilegedRole reconciler asks the API server about the referenced role: is it there
//! (and what are its rules), and may the operator bind it (a SelfSubjectAccessReview). Each call is
//! bounded by [`super::calls::CALL_TIMEOUT`]; access answers are remembered ([`NOT_BINDABLE_TTL`],
//! [`BINDABLE_TTL`]), so that neither the reconcile our own status write triggers nor the 60 s
//! re-check of a bindable role asks again.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::Api;
use kube::api::PostParams;

use crate::api::{PrivilegedRole, RoleKind};
use crate::policy::reasons;
use crate::policy::risk::{self, Reach};

use super::Error;
use super::calls::bounded;
use super::context::Context;
use super::memory::Bindability;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The referenced role as read from the API server.
#[derive(Debug, Clone, Default)]
pub struct Referenced {
    /// Its rules; for an aggregated ClusterRole, those the aggregation controller filled in.
    pub rules: Vec<PolicyRule>,
    /// A ClusterRole with an `aggregationRule`.
    pub aggregated: bool,
}

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

/// The `Ready` condition: (status, reason, message).
pub fn readiness(
    role: &PrivilegedRole,
    exists: bool,
    bindable: Option<&Bindability>,
) -> (bool, &'static str, String) {
    let role_ref = &role.spec.role_ref;
    let kind = format!("{:?}", role_ref.kind);
    let named = match &role_ref.namespace {
        Some(ns) => format!("{kind} {ns}/{}", role_ref.name),
        None => format!("{kind} {}", role_ref.name),
    };
    if !exists {
        return (
            false,
            reasons::REFERENCED_ROLE_NOT_FOUND,
            format!("{named} does not exist: activations would grant nothing"),
        );
    }
    match bindable {
        Some(Bindability::NotBindable { namespace }) => (
            false,
            reasons::NOT_BINDABLE,
            not_bindable_message(role, namespace.as_deref()),
        ),
        _ => (
            true,
            reasons::ROLE_READY,
            format!("{named} exists and the operator may bind it"),
        ),
    }
}

/// Which chart value grants the missing `bind`.
pub fn not_bindable_message(role: &PrivilegedRole, namespace: Option<&str>) -> String {
    let role_ref = &role.spec.role_ref;
    let name = &role_ref.name;
    match role_ref.kind {
        RoleKind::ClusterRole => {
            let place = match namespace {
                Some(ns) => format!(" in namespace {ns}"),
                None => String::new(),
            };
            format!(
                "the operator may not bind ClusterRole {name}{place}, so activations would fail: \
                 add {name:?} to bindableRoles.clusterRoles in the kubepim chart's values (or grant \
                 its ServiceAccount `bind` on clusterroles/{name})"
            )
        }
        RoleKind::Role => {
            let ns = role_ref.namespace.as_deref().unwrap_or_default();
            format!(
                "the operator may not bind Role {ns}/{name}, so activations would fail: add \
                 {{namespace: {ns}, name: {name}}} to bindableRoles.roles in the kubepim chart's \
                 values (or grant its ServiceAccount `bind` on roles/{name} in {ns})"
            )
        }
    }
}

/// The `RiskAssessed` condition and `status.riskFlags`: (status, reason, message, flags).
pub fn risk_assessment(
    role: &PrivilegedRole,
    referenced: Option<&Referenced>,
    operator_namespace: Option<&str>,
) -> (bool, &'static str, String, Vec<String>) {
    let Some(referenced) = referenced else {
        return (
            false,
            reasons::REFERENCED_ROLE_NOT_FOUND,
            "the referenced role does not exist: nothing to assess".into(),
            vec![],
        );
    };
    if referenced.aggregated && referenced.rules.is_empty() {
        return (
            false,
            reasons::AGGREGATION_PENDING,
            "aggregated ClusterRole without rules yet: assessed once the aggregation controller \
             fills them in"
                .into(),
            vec![],
        );
    }
    let own_namespace;
    let namespaces: &[String] = match &role.spec.role_ref.namespace {
        Some(ns) => {
            own_namespace = [ns.clone()];
            &own_namespace
        }
        None => &role.spec.scope.namespaces,
    };
    let reach = Reach {
        cluster_wide: role.spec.scope.cluster_wide,
        namespaces,
        operator_namespace,
    };
    let flags = risk::assess(&referenced.rules, reach);
    let (reason, message) = risk::summary(&flags);
    let names = flags.iter().map(|f| f.as_str().to_string()).collect();
    (true, reason, message, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pr(role_ref: serde_json::Value, scope: serde_json::Value) -> PrivilegedRole {
        let spec = serde_json::from_value(json!({"roleRef": role_ref, "scope": scope}))
            .expect("a valid spec");
        PrivilegedRole::new("p", spec)
    }

    #[test]
    fn readiness_prefers_missing_then_not_bindable() {
        let admin = pr(
            json!({"kind": "ClusterRole", "name": "admin"}),
            json!({"namespaces": ["payments"]}),
        );
        let (ok, reason, message) = readiness(&admin, false, None);
        assert_eq!((ok, reason), (false, reasons::REFERENCED_ROLE_NOT_FOUND));
        assert!(
            message.starts_with("ClusterRole admin does not exist"),
            "{message}"
        );

        let not = Bindability::NotBindable {
            namespace: Some("payments".into()),
        };
        let (ok, reason, message) = readiness(&admin, true, Some(&not));
        assert_eq!((ok, reason), (false, reasons::NOT_BINDABLE));
        assert!(
            message.contains("bind ClusterRole admin in namespace payments"),
            "{message}"
        );
        assert!(
            message.contains("add \"admin\" to bindableRoles.clusterRoles"),
            "{message}"
        );

        let (ok, reason, _) = readiness(&admin, true, Some(&Bindability::Bindable));
        assert_eq!((ok, reason), (true, reasons::ROLE_READY));
    }

    #[test]
    fn a_role_names_the_roles_value() {
        let deployer = pr(
            json!({"kind": "Role", "name": "deployer", "namespace": "payments"}),
            json!({"namespaces": ["payments"]}),
        );
        let not = Bindability::NotBindable {
            namespace: Some("payments".into()),
        };
        let (_, _, message) = readiness(&deployer, true, Some(&not));
        assert!(
            message.contains("add {namespace: payments, name: deployer} to bindableRoles.roles"),
            "{message}"
        );
        let (_, _, missing) = readiness(&deployer, false, None);
        assert!(
            missing.starts_with("Role payments/deployer does not exist"),
            "{missing}"
        );
    }

    #[test]
    fn risk_of_a_role_counts_its_own_namespace() {
        let deployer = pr(
            json!({"kind": "Role", "name": "deployer", "namespace": "kubepim-system"}),
            json!({"namespaces": ["kubepim-system"]}),
        );
        let referenced = Referenced {
            rules: vec![PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["secrets".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            }],
            aggregated: false,
        };
        let (ok, reason, _, flags) =
            risk_assessment(&deployer, Some(&referenced), Some("kubepim-system"));
        assert_eq!((ok, reason), (true, reasons::RISK_ELEVATED));
        assert_eq!(flags, ["OperatorNamespace"]);
        let (_, reason, _, flags) = risk_assessment(&deployer, Some(&referenced), None);
        assert_eq!((reason, flags.len()), (reasons::RISK_LOW, 0));
    }

    #[test]
    fn no_role_or_no_rules_yet_is_not_assessed() {
        let admin = pr(
            json!({"kind": "ClusterRole", "name": "admin"}),
            json!({"clusterWide": true}),
        );
        let (ok, reason, _, flags) = risk_assessment(&admin, None, None);
        assert_eq!(
            (ok, reason, flags.len()),
            (false, reasons::REFERENCED_ROLE_NOT_FOUND, 0)
        );
        let pending = Referenced {
            rules: vec![],
            aggregated: true,
        };
        let (ok, reason, _, _) = risk_assessment(&admin, Some(&pending), None);
        assert_eq!((ok, reason), (false, reasons::AGGREGATION_PENDING));
        let plain_empty = Referenced::default();
        let (ok, reason, _, _) = risk_assessment(&admin, Some(&plain_empty), None);
        assert_eq!((ok, reason), (true, reasons::RISK_LOW));
    }
}
