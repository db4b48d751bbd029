//! Is a PrivilegedRole usable, and how risky is it: the `Ready` and `RiskAssessed` conditions,
//! from what the API server said about the referenced role (it exists, its rules, whether the
//! operator may bind it).
use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::api::{PrivilegedRole, RoleKind};

use super::reasons;
use super::risk::{self, Reach};

/// The referenced role as read from the API server.
#[derive(Debug, Clone, Default)]
pub struct Referenced {
    /// Its rules; for an aggregated ClusterRole, those the aggregation controller filled in.
    pub rules: Vec<PolicyRule>,
    /// A ClusterRole with an `aggregationRule`.
    pub aggregated: bool,
}

/// May the operator bind the referenced role where the PrivilegedRole grants it?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bindability {
    Bindable,
    /// Not in this namespace (`None`: not cluster-wide, or not at all for a Role).
    NotBindable {
        namespace: Option<String>,
    },
}

/// A condition as the role reconciler writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

fn condition(status: bool, reason: &'static str, message: String) -> ConditionState {
    ConditionState {
        status,
        reason,
        message,
    }
}

/// The `RiskAssessed` condition and the flags for `status.riskFlags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskAssessment {
    pub condition: ConditionState,
    pub flags: Vec<String>,
}

/// The `Ready` condition: does the referenced role exist, and may the operator bind it?
pub fn readiness(
    role: &PrivilegedRole,
    exists: bool,
    bindable: Option<&Bindability>,
) -> ConditionState {
    let role_ref = &role.spec.role_ref;
    let kind = format!("{:?}", role_ref.kind);
    let named = match &role_ref.namespace {
        Some(ns) => format!("{kind} {ns}/{}", role_ref.name),
        None => format!("{kind} {}", role_ref.name),
    };
    if !exists {
        return condition(
            false,
            reasons::REFERENCED_ROLE_NOT_FOUND,
            format!("{named} does not exist: activations would grant nothing"),
        );
    }
    match bindable {
        Some(Bindability::NotBindable { namespace }) => condition(
            false,
            reasons::NOT_BINDABLE,
            not_bindable_message(role, namespace.as_deref()),
        ),
        _ => condition(
            true,
            reasons::ROLE_BINDABLE,
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

/// The `RiskAssessed` condition and `status.riskFlags`.
pub fn risk_assessment(
    role: &PrivilegedRole,
    referenced: Option<&Referenced>,
    operator_namespace: Option<&str>,
) -> RiskAssessment {
    let unassessed = |reason, message: &str| RiskAssessment {
        condition: condition(false, reason, message.to_string()),
        flags: vec![],
    };
    let Some(referenced) = referenced else {
        return unassessed(
            reasons::REFERENCED_ROLE_NOT_FOUND,
            "the referenced role does not exist: nothing to assess",
        );
    };
    if referenced.aggregated && referenced.rules.is_empty() {
        return unassessed(
            reasons::AGGREGATION_PENDING,
            "aggregated ClusterRole without rules yet: assessed once the aggregation controller \
             fills them in",
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
    RiskAssessment {
        condition: condition(true, reason, message),
        flags: names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::reasons;
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
        let ConditionState {
            status: ok,
            reason,
            message,
        } = readiness(&admin, false, None);
        assert_eq!((ok, reason), (false, reasons::REFERENCED_ROLE_NOT_FOUND));
        assert!(
            message.starts_with("ClusterRole admin does not exist"),
            "{message}"
        );

        let not = Bindability::NotBindable {
            namespace: Some("payments".into()),
        };
        let ConditionState {
            status: ok,
            reason,
            message,
        } = readiness(&admin, true, Some(&not));
        assert_eq!((ok, reason), (false, reasons::NOT_BINDABLE));
        assert!(
            message.contains("bind ClusterRole admin in namespace payments"),
            "{message}"
        );
        assert!(
            message.contains("add \"admin\" to bindableRoles.clusterRoles"),
            "{message}"
        );

        let ConditionState {
            status: ok, reason, ..
        } = readiness(&admin, true, Some(&Bindability::Bindable));
        assert_eq!((ok, reason), (true, reasons::ROLE_BINDABLE));
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
        let message = readiness(&deployer, true, Some(&not)).message;
        assert!(
            message.contains("add {namespace: payments, name: deployer} to bindableRoles.roles"),
            "{message}"
        );
        let missing = readiness(&deployer, false, None).message;
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
        let assessed = risk_assessment(&deployer, Some(&referenced), Some("kubepim-system"));
        let (ok, reason, flags) = (
            assessed.condition.status,
            assessed.condition.reason,
            assessed.flags,
        );
        assert_eq!((ok, reason), (true, reasons::RISK_ELEVATED));
        assert_eq!(flags, ["OperatorNamespace"]);
        let assessed = risk_assessment(&deployer, Some(&referenced), None);
        let (_, reason, flags) = (
            assessed.condition.status,
            assessed.condition.reason,
            assessed.flags,
        );
        assert_eq!((reason, flags.len()), (reasons::RISK_LOW, 0));
    }

    #[test]
    fn no_role_or_no_rules_yet_is_not_assessed() {
        let admin = pr(
            json!({"kind": "ClusterRole", "name": "admin"}),
            json!({"clusterWide": true}),
        );
        let assessed = risk_assessment(&admin, None, None);
        let (ok, reason, flags) = (
            assessed.condition.status,
            assessed.condition.reason,
            assessed.flags,
        );
        assert_eq!(
            (ok, reason, flags.len()),
            (false, reasons::REFERENCED_ROLE_NOT_FOUND, 0)
        );
        let pending = Referenced {
            rules: vec![],
            aggregated: true,
        };
        let assessed = risk_assessment(&admin, Some(&pending), None);
        let (ok, reason, _) = (
            assessed.condition.status,
            assessed.condition.reason,
            assessed.flags,
        );
        assert_eq!((ok, reason), (false, reasons::AGGREGATION_PENDING));
        let plain_empty = Referenced::default();
        let assessed = risk_assessment(&admin, Some(&plain_empty), None);
        let (ok, reason, _) = (
            assessed.condition.status,
            assessed.condition.reason,
            assessed.flags,
        );
        assert_eq!((ok, reason), (true, reasons::RISK_LOW));
    }
}
