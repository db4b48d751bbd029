//! Types shared by several kinds.
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Who an Eligibility names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, schemars::JsonSchema)]
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
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl SubjectRef {
    pub fn user(name: impl Into<String>) -> Self {
        Self { kind: SubjectKind::User, name: name.into(), namespace: None }
    }
    pub fn group(name: impl Into<String>) -> Self {
        Self { kind: SubjectKind::Group, name: name.into(), namespace: None }
    }
    pub fn service_account(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { kind: SubjectKind::ServiceAccount, name: name.into(), namespace: Some(namespace.into()) }
    }
}
