//! Risk flags of a PrivilegedRole: what the referenced Role or ClusterRole lets its holder do
//! beyond its own rules (escalate to more privilege, or reach kubepim itself).
//!
//! Pure: the caller passes the rules it read (for an aggregated ClusterRole, the `rules` the
//! aggregation controller filled in) and where the role is granted. Rules are matched the way the
//! RBAC authorizer matches them (`k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go`):
//! `*` in verbs, apiGroups or resources matches everything; `*/sub` matches that subresource of
//! any resource; `pods/*` is not a wildcard. `resourceNames` are ignored on purpose: `bind` on one
//! role or `get` on one secret is still a way up, and a flag is a prompt to look, not a verdict.
use k8s_openapi::api::rbac::v1::PolicyRule;

/// One way the referenced role reaches beyond its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskFlag {
    /// `bind` on roles or clusterroles: may grant a role it does not hold.
    Bind,
    /// `escalate` on roles or clusterroles: may write rules it does not hold.
    Escalate,
    /// `impersonate` users, groups, ServiceAccounts, uids or extra attributes.
    Impersonate,
    /// create/update/patch/delete on roles, clusterroles, rolebindings or clusterrolebindings.
    RbacWrite,
    /// get/list/watch on secrets, granted cluster-wide (ServiceAccount tokens of every namespace).
    ClusterSecretsRead,
    /// Creates pods (directly, through exec/attach/ephemeral containers, or through workload
    /// controllers) granted cluster-wide: runs as any ServiceAccount of any namespace.
    ClusterPodCreate,
    /// Secrets, pods (read, create, exec) or ServiceAccount tokens in kubepim's own namespace,
    /// where its identity lives: that identity can bind every role PrivilegedRoles reference.
    /// The self-protection policies refuse the writes; reads of Secrets no admission sees.
    OperatorNamespace,
    /// Writes (or custom verbs such as `approve`, `manage`) on kubepim.io resources: may change
    /// policy or act as an approver or as the controller.
    KubepimWrite,
    /// Writes ValidatingAdmissionPolicies, their bindings, or admission webhook configurations.
    /// Admission is never consulted for those objects, so kubepim's self-protection cannot stop
    /// such a holder from switching its policies or its webhook off.
    AdmissionConfigWrite,
}

impl RiskFlag {
    pub const ALL: [RiskFlag; 9] = [
        RiskFlag::Bind,
        RiskFlag::Escalate,
        RiskFlag::Impersonate,
        RiskFlag::RbacWrite,
        RiskFlag::ClusterSecretsRead,
        RiskFlag::ClusterPodCreate,
        RiskFlag::OperatorNamespace,
        RiskFlag::KubepimWrite,
        RiskFlag::AdmissionConfigWrite,
    ];

    /// The value in `status.riskFlags`.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskFlag::Bind => "Bind",
            RiskFlag::Escalate => "Escalate",
            RiskFlag::Impersonate => "Impersonate",
            RiskFlag::RbacWrite => "RBACWrite",
            RiskFlag::ClusterSecretsRead => "ClusterSecretsRead",
            RiskFlag::ClusterPodCreate => "ClusterPodCreate",
            RiskFlag::OperatorNamespace => "OperatorNamespace",
            RiskFlag::KubepimWrite => "KubepimWrite",
            RiskFlag::AdmissionConfigWrite => "AdmissionConfigWrite",
        }
    }

    /// A few words for the condition message.
    pub fn describe(self) -> &'static str {
        match self {
            RiskFlag::Bind => "can bind roles it does not hold",
            RiskFlag::Escalate => "can escalate roles",
            RiskFlag::Impersonate => "can impersonate",
            RiskFlag::RbacWrite => "writes RBAC objects",
            RiskFlag::ClusterSecretsRead => "reads secrets cluster-wide",
            RiskFlag::ClusterPodCreate => "creates pods in any namespace",
            RiskFlag::OperatorNamespace => {
                "reaches secrets, pods or ServiceAccount tokens in kubepim's namespace (reads of \
                 its Secrets are beyond the reach of admission)"
            }
            RiskFlag::KubepimWrite => "writes kubepim's own resources",
            RiskFlag::AdmissionConfigWrite => {
                "writes admission policies or webhook configurations, which no admission check \
                 protects: could switch kubepim's self-protection off"
            }
        }
    }
}

/// Where the role is granted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    /// One ClusterRoleBinding (a ClusterRole granted in every namespace).
    pub cluster_wide: bool,
    /// The namespaces RoleBindings are made in (for a Role: its own namespace).
    pub namespaces: &'a [String],
    /// kubepim's own namespace, when known (`POD_NAMESPACE`).
    pub operator_namespace: Option<&'a str>,
}

impl Reach<'_> {
    fn operator_namespace(&self) -> bool {
        match self.operator_namespace {
            Some(ns) => self.cluster_wide || self.namespaces.iter().any(|n| n == ns),
            None => false,
        }
    }
}

const CORE: &str = "";
const RBAC: &str = "rbac.authorization.k8s.io";
const AUTHENTICATION: &str = "authentication.k8s.io";
const KUBEPIM: &str = crate::api::GROUP;
const ADMISSION: &str = "admissionregistration.k8s.io";
const ADMISSION_CONFIG: &[&str] = &[
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
];

const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ: &[&str] = &["get", "list", "watch"];
const RBAC_KINDS: &[&str] = &[
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// Does one rule allow `verb` on `resource` (possibly `resource/subresource`) in `group`? As the
/// RBAC authorizer decides it.
pub fn allows(rule: &PolicyRule, group: &str, resource: &str, verb: &str) -> bool {
    let verbs = rule.verbs.iter().any(|v| v == "*" || v == verb);
    let groups = rule
        .api_groups
        .iter()
        .flatten()
        .any(|g| g == "*" || g == group);
    verbs && groups && resource_matches(rule, resource)
}

fn resource_matches(rule: &PolicyRule, resource: &str) -> bool {
    let subresource = resource.split_once('/').map(|(_, sub)| sub);
    rule.resources.iter().flatten().any(|r| {
        r == "*"
            || r == resource
            || subresource.is_some_and(|sub| r.strip_prefix("*/") == Some(sub))
    })
}

fn any(rules: &[PolicyRule], groups: &[&str], resources: &[&str], verbs: &[&str]) -> bool {
    rules.iter().any(|rule| {
        groups.iter().any(|g| {
            resources
                .iter()
                .any(|r| verbs.iter().any(|v| allows(rule, g, r, v)))
        })
    })
}

/// Impersonating extra attributes is `impersonate` on `userextras/<key>` for any key.
fn impersonates_extras(rules: &[PolicyRule]) -> bool {
    rules.iter().any(|rule| {
        let verb = rule.verbs.iter().any(|v| v == "*" || v == "impersonate");
        let group = rule
            .api_groups
            .iter()
            .flatten()
            .any(|g| g == "*" || g == AUTHENTICATION);
        let resource = rule
            .resources
            .iter()
            .flatten()
            .any(|r| r == "*" || r.starts_with("userextras/") || r.starts_with("*/"));
        verb && group && resource
    })
}

/// Pods, and what makes pods run a spec of the holder's choosing.
fn creates_pods(rules: &[PolicyRule]) -> bool {
    any(rules, &[CORE], &["pods"], &["create"])
        || any(
            rules,
            &[CORE],
            &["pods/exec", "pods/attach"],
            // `get` opens exec/attach over WebSockets on API servers before 1.31 (and later
            // ones with AuthorizePodWebsocketUpgradeCreatePermission off).
            &["create", "get"],
        )
        || any(
            rules,
            &[CORE],
            &["pods/ephemeralcontainers"],
            &["update", "patch"],
        )
        || any(
            rules,
            &[CORE],
            &["replicationcontrollers"],
            &["create", "update", "patch"],
        )
        || any(
            rules,
            &["apps"],
            &["deployments", "daemonsets", "statefulsets", "replicasets"],
            &["create", "update", "patch"],
        )
        || any(
            rules,
            &["batch"],
            &["jobs", "cronjobs"],
            &["create", "update", "patch"],
        )
}

fn reads_secrets(rules: &[PolicyRule]) -> bool {
    any(rules, &[CORE], &["secrets"], READ)
}

/// Every kubepim.io resource and subresource a holder could act through.
const KUBEPIM_RESOURCES: &[&str] = &[
    "privilegedroles",
    "privilegedroles/status",
    "eligibilities",
    "eligibilities/status",
    "activationrequests",
    "activationrequests/status",
    "activationrequests/finalizers",
];

/// Verbs on kubepim.io that change something or carry authority (the admission policies
/// recognise approvers by `approve` and the controller by `manage`).
const KUBEPIM_ACTIONS: &[&str] = &[
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "approve",
    "manage",
];

/// The flags of a role with these rules, granted this way; sorted, without duplicates.
pub fn assess(rules: &[PolicyRule], reach: Reach<'_>) -> Vec<RiskFlag> {
    let mut flags = Vec::new();
    let roles = &["roles", "clusterroles"];
    if any(rules, &[RBAC], roles, &["bind"]) {
        flags.push(RiskFlag::Bind);
    }
    if any(rules, &[RBAC], roles, &["escalate"]) {
        flags.push(RiskFlag::Escalate);
    }
    if any(
        rules,
        &[CORE],
        &["users", "groups", "serviceaccounts"],
        &["impersonate"],
    ) || any(rules, &[AUTHENTICATION], &["uids"], &["impersonate"])
        || impersonates_extras(rules)
    {
        flags.push(RiskFlag::Impersonate);
    }
    if any(rules, &[RBAC], RBAC_KINDS, WRITE) {
        flags.push(RiskFlag::RbacWrite);
    }
    let secrets = reads_secrets(rules);
    let pods = creates_pods(rules);
    if reach.cluster_wide && secrets {
        flags.push(RiskFlag::ClusterSecretsRead);
    }
    if reach.cluster_wide && pods {
        flags.push(RiskFlag::ClusterPodCreate);
    }
    let tokens = any(rules, &[CORE], &["serviceaccounts/token"], &["create"]);
    if reach.operator_namespace() && (secrets || pods || tokens) {
        flags.push(RiskFlag::OperatorNamespace);
    }
    if any(rules, &[KUBEPIM], KUBEPIM_RESOURCES, KUBEPIM_ACTIONS) {
        flags.push(RiskFlag::KubepimWrite);
    }
    // Cluster-scoped objects: only a ClusterRoleBinding reaches them.
    if reach.cluster_wide && any(rules, &[ADMISSION], ADMISSION_CONFIG, WRITE) {
        flags.push(RiskFlag::AdmissionConfigWrite);
    }
    flags.sort();
    flags
}

/// Status `reason` and message of the `RiskAssessed` condition for these flags.
pub fn summary(flags: &[RiskFlag]) -> (&'static str, String) {
    if flags.is_empty() {
        return (
            super::reasons::RISK_LOW,
            "the referenced role cannot bind, escalate, impersonate, write RBAC or kubepim objects, \
             or reach secrets and pods beyond its scope"
                .into(),
        );
    }
    let listed: Vec<String> = flags
        .iter()
        .map(|f| format!("{} ({})", f.as_str(), f.describe()))
        .collect();
    (
        super::reasons::RISK_ELEVATED,
        format!(
            "holders can reach beyond the referenced role: {}",
            listed.join(", ")
        ),
    )
}

#[cfg(test)]
#[path = "tests/risk_table.rs"]
mod tests;
