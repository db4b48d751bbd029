//! `PrivilegedRole`: what may be granted, and under which rules.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema, core::Duration};
use serde::{Deserialize, Serialize};

fn default_duration() -> Duration {
    Duration::from(std::time::Duration::from_secs(3600))
}
fn default_max_duration() -> Duration {
    Duration::from(std::time::Duration::from_secs(4 * 3600))
}
fn default_pending_timeout() -> Duration {
    Duration::from(std::time::Duration::from_secs(24 * 3600))
}
fn default_required_approvals() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

/// A privileged Role or ClusterRole that people can be made eligible for and activate.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubepim.io",
    version = "v1alpha1",
    kind = "PrivilegedRole",
    shortname = "prole",
    category = "pim",
    status = "PrivilegedRoleStatus",
    doc = "A Role or ClusterRole that can be granted just in time, and the rules for granting it.",
    cel,
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.roleRef.name"),
    printcolumn(
        name = "Approvals",
        type_ = "integer",
        json_path = ".spec.approval.requiredApprovals"
    ),
    printcolumn(name = "Max", type_ = "string", json_path = ".spec.maxDuration"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.activeGrants"),
    printcolumn(
        name = "Unmanaged",
        type_ = "integer",
        json_path = ".status.unmanagedBindings.count"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Risk",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RiskAssessed\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("duration(self.defaultDuration) <= duration(self.maxDuration)")
        .message("defaultDuration must not exceed maxDuration").field_path(".defaultDuration"),
    validation = Rule::new("!has(self.maxContinuousDuration) || duration(self.maxContinuousDuration) >= duration(self.maxDuration)")
        .message("maxContinuousDuration must be at least maxDuration").field_path(".maxContinuousDuration"),
    validation = Rule::new("self.breakGlass || !has(self.maxContinuousDuration) || duration(self.maxContinuousDuration) <= duration('24h')")
        .message("maxContinuousDuration may exceed 24h only for a breakGlass role").field_path(".maxContinuousDuration"),
    validation = Rule::new("self.breakGlass || duration(self.maxDuration) <= duration('24h')")
        .message("maxDuration may exceed 24h only for a breakGlass role").field_path(".maxDuration"),
    validation = Rule::new("!has(self.scope.clusterWide) || !self.scope.clusterWide || self.roleRef.kind == 'ClusterRole'")
        .message("scope.clusterWide needs roleRef.kind ClusterRole").field_path(".scope.clusterWide"),
    validation = Rule::new("self.roleRef.kind != 'Role' || (has(self.scope.namespaces) && self.scope.namespaces == [self.roleRef.__namespace__])")
        .message("a Role can only be bound in its own namespace: scope.namespaces must be exactly [roleRef.namespace]").field_path(".scope.namespaces"),
    validation = Rule::new("!self.breakGlass || self.approval.requiredApprovals == 0")
        .message("a breakGlass role activates without approval: set approval.requiredApprovals to 0").field_path(".approval.requiredApprovals"),
    validation = Rule::new("self.approval.requiredApprovals == 0 || size(self.approval.approvers.users) + size(self.approval.approvers.groups) > 0")
        .message("approval.approvers must name at least one user or group when approvals are required").field_path(".approval.approvers"),
    validation = Rule::new("self.approval.requiredApprovals == 0 || size(self.approval.approvers.groups) > 0 || size(self.approval.approvers.users) >= self.approval.requiredApprovals")
        .message("approval.requiredApprovals is more than the number of approver users, and no approver group is named").field_path(".approval.requiredApprovals"),
)]
pub struct PrivilegedRoleSpec {
    /// What this role is for, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The Role or ClusterRole granted on activation.
    pub role_ref: RoleRef,
    /// Where it is granted: RoleBindings in some namespaces, or one ClusterRoleBinding.
    pub scope: Scope,
    /// Duration used when a request does not name one.
    #[serde(default = "default_duration")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub default_duration: Duration,
    /// Longest grant a request may ask for (24h at most unless `breakGlass`).
    #[serde(default = "default_max_duration")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub max_duration: Duration,
    /// Longest time a requester may hold the role without a gap through extensions
    /// (`spec.extends`). Default: three times maxDuration, at most 24h; above 24h only with
    /// `breakGlass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub max_continuous_duration: Option<Duration>,
    /// Who must approve, and how long a request may wait.
    #[serde(default)]
    pub approval: ApprovalPolicy,
    /// Requests must carry a non-empty justification.
    #[serde(default = "default_true")]
    pub require_justification: bool,
    /// When set, `spec.ticket` of a request must match this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub ticket_pattern: Option<String>,
    /// Step-up: the requester's authenticated `extra` attributes must carry one of these values
    /// (e.g. key `amr`, anyOf `[mfa, hwk]` where the API server maps OIDC claims into `extra`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_requester_attributes: Option<RequesterAttributeRequirement>,
    /// Emergency access: activates without approval; every use raises a Warning Event and an
    /// audit line.
    #[serde(default)]
    pub break_glass: bool,
    /// Caps each requester's elevated time on this role in a rolling window; a request that
    /// would exceed it is denied (`BudgetExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<super::Budget>,
    /// End a grant unused for this long (reason `Idle`). Enforced only where kubepim receives the
    /// API server's audit events; without them a grant is never ended for idleness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("idleTimeout must be at least 1s"))]
    pub idle_timeout: Option<Duration>,
    /// What happens to the footholds the review finds at a grant's end: `Report` (the default)
    /// records them; `Remove` also deletes the RBAC bindings and ServiceAccount token Secrets
    /// among them. Removal is done by kubepim's foothold remover, a separate identity that may
    /// only delete those kinds (the chart's `footholds.removal`), never by the operator itself.
    #[serde(default)]
    pub on_footholds: FootholdAction,
}

/// What happens to a grant's footholds.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum FootholdAction {
    /// Reported (condition, status, Event, metric, audit line, notification).
    #[default]
    Report,
    /// Reported, and the RBAC bindings and token Secrets among them deleted.
    Remove,
}

/// An attribute the requester's authenticated identity must carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequesterAttributeRequirement {
    /// Key in the authenticator's `extra` map (e.g. `amr`).
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// At least one of these values must be present under `key`.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 253)))]
    pub any_of: Vec<String>,
}

/// Kind of the RBAC role a PrivilegedRole grants.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum RoleKind {
    Role,
    ClusterRole,
}

/// The Role or ClusterRole granted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.kind == 'Role' ? has(self.__namespace__) : !has(self.__namespace__)")
        .message("roleRef.namespace is required for kind Role and not allowed for kind ClusterRole")
)]
pub struct RoleRef {
    pub kind: RoleKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of a `Role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

/// Where the role is granted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.clusterWide) && self.clusterWide) != (has(self.namespaces) && size(self.namespaces) > 0)")
        .message("scope needs exactly one of: a non-empty namespaces list, or clusterWide: true")
)]
pub struct Scope {
    /// Namespaces a request may ask for; one RoleBinding is created in each requested one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub namespaces: Vec<String>,
    /// One ClusterRoleBinding (only with a ClusterRole).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_wide: bool,
}

/// Approval rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalPolicy {
    /// Distinct approvals needed; 0 activates without approval.
    #[serde(default = "default_required_approvals")]
    #[schemars(range(max = 10))]
    pub required_approvals: u32,
    /// Who may approve. The requester never counts, nor does a ServiceAccount.
    #[serde(default)]
    pub approvers: Approvers,
    /// Distinct approvals needed for a request that extends an active grant (`spec.extends`);
    /// default: requiredApprovals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub extension_required_approvals: Option<u32>,
    /// An unapproved request expires after this long.
    #[serde(default = "default_pending_timeout")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub pending_timeout: Duration,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            required_approvals: default_required_approvals(),
            approvers: Approvers::default(),
            extension_required_approvals: None,
            pending_timeout: default_pending_timeout(),
        }
    }
}

/// Users and groups whose approvals count.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// Distinct usernames (a set: a name listed twice is refused, it could never count twice).
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub users: Vec<String>,
    /// Distinct group names.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub groups: Vec<String>,
}

/// Observed state of a PrivilegedRole.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivilegedRoleStatus {
    /// `Ready`: the referenced role exists and the operator may bind it; `RiskAssessed`: how far
    /// the role reaches (reason `Low` or `Elevated`, see `riskFlags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(
        schema_with = "super::common::bounded_conditions_schema",
        length(max = 16)
    )]
    pub conditions: Vec<Condition>,
    /// Requests currently Active for this role.
    #[serde(default)]
    pub active_grants: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the referenced role lets its holders do beyond its own rules (see the `RiskAssessed`
    /// condition): Bind, Escalate, Impersonate, RBACWrite, ClusterSecretsRead, ClusterPodCreate,
    /// OperatorNamespace, KubepimWrite, AdmissionConfigWrite. Always written, so that an empty
    /// list clears old flags.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(max = 64)))]
    pub risk_flags: Vec<String>,
    /// Bindings that grant the referenced role outside kubepim (standing privilege), found by the
    /// periodic scan. Written by the scan only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged_bindings: Option<UnmanagedBindings>,
    /// Separation-of-duties findings of the latest analysis of the kept history that concern
    /// this role (reciprocal approvals, one approver covering most activations, approvers who
    /// request it often, break-glass use, approvals too fast to have been read). Written by the
    /// analysis only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub separation_findings: Option<Vec<SeparationFinding>>,
}

/// One separation-of-duties finding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeparationFinding {
    /// ReciprocalApproval, ApproverConcentration, ApproverIsRequester, BreakGlassUse,
    /// FastApproval.
    #[schemars(length(max = 32))]
    pub kind: String,
    /// The people it is about.
    #[serde(default)]
    #[schemars(length(max = 8), inner(length(max = 253)))]
    pub people: Vec<String>,
    #[schemars(length(max = 512))]
    pub message: String,
}

/// Standing bindings to a PrivilegedRole's role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnmanagedBindings {
    /// Bindings not managed by kubepim, break-glass ones not included.
    #[serde(default)]
    pub count: u32,
    /// The first few: `namespace/name` for a RoleBinding, `name` for a ClusterRoleBinding.
    #[serde(default)]
    #[schemars(length(max = 5), inner(length(max = 317)))]
    pub names: Vec<String>,
    /// Bindings whose subjects are all configured break-glass identities: allowed, still
    /// reported.
    #[serde(default)]
    pub break_glass: BindingSample,
}

/// A count and the first few names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingSample {
    #[serde(default)]
    pub count: u32,
    /// `namespace/name` for a RoleBinding, `name` for a ClusterRoleBinding.
    #[serde(default)]
    #[schemars(length(max = 5), inner(length(max = 317)))]
    pub names: Vec<String>,
}
