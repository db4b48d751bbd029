//! Types shared by several kinds.
use kube::{KubeSchema, core::Duration};
use serde::{Deserialize, Serialize};

/// Who an Eligibility names.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
pub enum SubjectKind {
    User,
    Group,
    ServiceAccount,
}

/// A user, group or ServiceAccount, as in an RBAC subject.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("self.kind == 'ServiceAccount' ? has(self.__namespace__) : !has(self.__namespace__)")
        .message("namespace is required for a ServiceAccount and not allowed for a User or Group")
)]
pub struct SubjectRef {
    pub kind: SubjectKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Only for `ServiceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

impl SubjectRef {
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::User,
            name: name.into(),
            namespace: None,
        }
    }
    pub fn group(name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::Group,
            name: name.into(),
            namespace: None,
        }
    }
    pub fn service_account(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::ServiceAccount,
            name: name.into(),
            namespace: Some(namespace.into()),
        }
    }
}

/// Schema of a `conditions` list: k8s-openapi's `Condition` schema with the bounds the upstream
/// `metav1.Condition` type declares (its generated schema has none), so every string in the CRDs
/// is bounded and CEL cost estimates stay in budget.
pub fn bounded_conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use serde_json::json;

    let mut condition = <Condition as schemars::JsonSchema>::json_schema(generator);
    let bounds = [
        (
            "type",
            json!({"maxLength": 316, "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"}),
        ),
        ("status", json!({"enum": ["True", "False", "Unknown"]})),
        (
            "reason",
            json!({"minLength": 1, "maxLength": 1024, "pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"}),
        ),
        ("message", json!({"maxLength": 32768})),
        ("observedGeneration", json!({"minimum": 0})),
    ];
    if let Some(properties) = condition
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (field, bound) in bounds {
            if let (Some(property), serde_json::Value::Object(bound)) = (
                properties
                    .get_mut(field)
                    .and_then(serde_json::Value::as_object_mut),
                bound,
            ) {
                property.extend(bound);
            }
        }
    }
    schemars::json_schema!({ "type": "array", "items": condition })
}

/// A cap on elevated time per subject: at most `maxElevated` of grants in any rolling window of
/// length `per`. Checked when a request is judged for activation; a running grant is never cut
/// short by it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("duration(self.maxElevated) <= duration(self.per)")
        .message("budget.maxElevated must not exceed budget.per").field_path(".maxElevated"),
    validation = Rule::new("duration(self.per) > duration('0s')")
        .message("budget.per must be longer than 0s").field_path(".per"),
)]
pub struct Budget {
    /// Total elevated time allowed in the window, e.g. `8h`.
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub max_elevated: Duration,
    /// Length of the rolling window, e.g. `168h` (7 days; durations have no day unit).
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub per: Duration,
}
