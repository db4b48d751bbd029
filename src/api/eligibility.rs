//! `Eligibility`: who may activate which PrivilegedRole, and when.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, core::Duration};
use serde::{Deserialize, Serialize};

use super::SubjectRef;

/// Makes users, groups or ServiceAccounts eligible to activate a PrivilegedRole.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubepim.io",
    version = "v1alpha1",
    kind = "Eligibility",
    plural = "eligibilities",
    shortname = "elig",
    category = "pim",
    status = "EligibilityStatus",
    doc = "Who may activate a PrivilegedRole, optionally narrowed in namespaces, duration and time.",
    cel,
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(
        name = "Subjects",
        type_ = "string",
        json_path = ".spec.subjects[*].name"
    ),
    printcolumn(name = "Not After", type_ = "string", json_path = ".spec.notAfter"),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Active\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Active\")].reason",
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
    validation = Rule::new("!has(self.notBefore) || !has(self.notAfter) || self.notBefore < self.notAfter")
        .message("notAfter must be later than notBefore").field_path(".notAfter")
)]
pub struct EligibilitySpec {
    /// Name of the PrivilegedRole.
    #[schemars(length(min = 1, max = 253))]
    pub role: String,
    /// Who is eligible.
    #[schemars(length(min = 1, max = 64))]
    pub subjects: Vec<SubjectRef>,
    /// Narrows the role's namespaces (must be a subset of them).
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
    /// Narrows the role's maximum duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub max_duration: Option<Duration>,
    /// Eligible from this time on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// Eligible until this time; active grants resting on it are revoked then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// Caps the elevated time of each subject named here on the role, in a rolling window
    /// (counted over all their grants of the role: a request does not record which eligibility
    /// it used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<super::Budget>,
}

/// Observed state of an Eligibility.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EligibilityStatus {
    /// `Active`: inside its window and its role exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(
        schema_with = "super::common::bounded_conditions_schema",
        length(max = 16)
    )]
    pub conditions: Vec<Condition>,
    /// Last activation that rested on this eligibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activated_at: Option<Time>,
    /// Number of activations that rested on it.
    #[serde(default)]
    pub activations: u64,
    /// Subjects a closed AccessReview removed: named in the spec but not honoured, until the
    /// Eligibility changes in Git (see `docs/reviews.md`). Always serialised: the status is
    /// merge-patched, and an empty list must replace the last removals.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub removed_by_review: Vec<RemovedSubject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A subject an AccessReview removed from an Eligibility.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemovedSubject {
    pub subject: SubjectRef,
    /// The AccessReview whose outcome removed it.
    #[schemars(length(max = 253))]
    pub review: String,
    /// When that review closed.
    pub at: Time,
}
