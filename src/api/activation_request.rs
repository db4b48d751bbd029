//! `ActivationRequest`: "give me this role, for this long, because".
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, core::Duration};
use serde::{Deserialize, Serialize};

/// A request to activate a PrivilegedRole for a limited time.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubepim.io",
    version = "v1alpha1",
    kind = "ActivationRequest",
    shortname = "actreq",
    category = "pim",
    status = "ActivationRequestStatus",
    doc = "A request to activate a PrivilegedRole for a limited time, with a justification.",
    cel,
    printcolumn(
        name = "Requester",
        type_ = "string",
        json_path = ".spec.requester.username"
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
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
    validation = Rule::new("has(self.duration) == has(oldSelf.duration) && has(self.justification) == has(oldSelf.justification) && has(self.ticket) == has(oldSelf.ticket) && has(self.startAt) == has(oldSelf.startAt) && has(self.requester) == has(oldSelf.requester) && has(self.namespaces) == has(oldSelf.namespaces) && has(self.extends) == has(oldSelf.extends)")
        .message("spec is immutable after creation; only cancel may change (false to true)"),
    validation = Rule::new("!(has(oldSelf.cancel) && oldSelf.cancel) || (has(self.cancel) && self.cancel)")
        .message("spec.cancel cannot be undone").field_path(".cancel"),
    validation = Rule::new("!has(self.extends) || !has(self.startAt)")
        .message("spec.extends cannot be combined with spec.startAt: an extension starts when the grant it extends ends").field_path(".extends"),
)]
pub struct ActivationRequestSpec {
    /// Name of the PrivilegedRole to activate.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.role is immutable"))]
    pub role: String,
    /// For a namespaced role: a non-empty subset of the namespaces it allows. Empty for a
    /// cluster-wide role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set, validation = Rule::new("self == oldSelf").message("spec.namespaces is immutable"))]
    pub namespaces: Vec<String>,
    /// How long the grant lasts once active; defaults to the role's defaultDuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.duration is immutable"))]
    pub duration: Option<Duration>,
    /// Why the access is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.justification is immutable"))]
    pub justification: Option<String>,
    /// Incident or change ticket, checked against the role's ticketPattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.ticket is immutable"))]
    pub ticket: Option<String>,
    /// Scheduled start: the grant activates at this time once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.startAt is immutable"))]
    pub start_at: Option<Time>,
    /// Name of the requester's own Active request for the same role that this one extends: once
    /// approved, this grant runs on from that one's expiry without a gap (its namespaces a subset
    /// of the original's). Refused when the original has ended by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.extends is immutable"))]
    pub extends: Option<String>,
    /// Set to true by the requester to end the request or grant early.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
    /// The authenticated requester, stamped at admission from the caller's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.requester is immutable"))]
    pub requester: Option<Requester>,
}

/// The identity that created a request, as the API server authenticated it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    #[schemars(length(min = 1, max = 253))]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 253)))]
    pub groups: Vec<String>,
    /// Extra attributes from the authenticator (e.g. `amr` claims for MFA).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Bounded values too: the whole requester is compared by an immutability rule.
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 1024}}))]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Lifecycle phase of a request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Phase {
    /// Waiting for approvals.
    Pending,
    /// Approved, waiting for `startAt`.
    Scheduled,
    /// Bindings exist until `expiresAt`.
    Active,
    /// Ran out: either the grant's time, or the pending timeout without approval.
    Expired,
    /// Refused: by an approver, or by validation against role and eligibility.
    Denied,
    /// Ended early by the requester.
    Cancelled,
    /// Ended early because what it rested on (eligibility, role) went away or changed.
    Revoked,
    /// Could not be carried out (e.g. no authenticated requester).
    Failed,
}

impl Phase {
    /// No further transition is possible from a terminal phase.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Expired | Self::Denied | Self::Cancelled | Self::Revoked | Self::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Scheduled => "Scheduled",
            Self::Active => "Active",
            Self::Expired => "Expired",
            Self::Denied => "Denied",
            Self::Cancelled => "Cancelled",
            Self::Revoked => "Revoked",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approver's decision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Decision {
    Approved,
    Denied,
}

/// One approver's decision, appended through the `/status` subresource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Username of the approver (stamped at admission from the caller).
    #[schemars(length(min = 1, max = 253))]
    pub approver: String,
    /// The approver's groups (stamped at admission from the caller).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 253)))]
    pub groups: Vec<String>,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// A binding created for a request.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, KubeSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct BindingRef {
    /// `RoleBinding` or `ClusterRoleBinding`.
    #[schemars(length(max = 32))]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    #[schemars(length(max = 253))]
    pub name: String,
}

/// One rule of the role a grant bound, in canonical form (every list sorted and de-duplicated):
/// what the role allowed when the grant was made. Same meaning as an RBAC `PolicyRule`.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, KubeSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct GrantedRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resource_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub non_resource_urls: Vec<String>,
}

/// Observed state of a request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivationRequestStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Approver decisions, append-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["approver".into()]))]
    #[schemars(length(max = 32))]
    pub approvals: Vec<Approval>,
    /// When the bindings were created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Time>,
    /// Fixed at activation (activatedAt + duration); never extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the grant ended (its bindings were removed): written when an Active request reaches a
    /// terminal phase. Privilege budgets count elevated time up to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// For an extension: since when the requester has held the role without a gap (the start of
    /// the first grant in the chain); the role's maxContinuousDuration counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous_since: Option<Time>,
    /// Bindings created for this request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub bindings: Vec<BindingRef>,
    /// The effective rules of the referenced Role or ClusterRole when the grant was made
    /// (canonical); a later widening of the role ends the grant (`RoleChanged`). Written by the
    /// controller only, at activation, and never rewritten: a narrowing is recorded beside it.
    /// Left empty when the rules exceed this record's bounds: then only `roleDigest` is kept and
    /// any change of the role ends the grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub granted_rules: Vec<GrantedRule>,
    /// sha256 (hex) of the canonical rules at activation (`grantedRules` in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub role_digest: Option<String>,
    /// `Approved`, `Denied`, `Active`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(
        schema_with = "super::common::bounded_conditions_schema",
        length(max = 16)
    )]
    pub conditions: Vec<Condition>,
    /// Machine-readable reason for the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub reason: Option<String>,
    /// Why the request is in its phase, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the grant was used for, from the API server's audit events (written by kubepim's
    /// audit ingest, only while and once the request is Active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<super::Activity>,
    /// What the grant left behind that may keep giving access, as the foothold review at its end
    /// found it (the `FootholdsFound` condition says it in words): what `kubectl pim footholds`
    /// lists and, with `--remove`, deletes with its caller's own rights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub footholds: Vec<FootholdRef>,
}

/// One object a grant left behind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FootholdRef {
    /// RoleBinding, ClusterRoleBinding, Role, ServiceAccount, Secret, CertificateSigningRequest,
    /// ValidatingWebhookConfiguration, MutatingWebhookConfiguration, Pod, or (from the audit
    /// record) `ServiceAccount token`, `stream`, `write`.
    #[schemars(length(max = 64))]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    #[schemars(length(max = 512))]
    pub name: String,
    /// The object's uid when the scan saw it (a removal is conditional on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub uid: Option<String>,
    #[schemars(length(max = 256))]
    pub why: String,
}

impl ActivationRequest {
    pub fn phase(&self) -> Option<Phase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    /// The admission-stamped requester's username (empty when the request has none).
    pub fn requester_name(&self) -> &str {
        self.spec
            .requester
            .as_ref()
            .map_or("", |r| r.username.as_str())
    }
}
