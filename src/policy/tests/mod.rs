//! Exhaustive tables for the policy, with a fixed clock. Property tests over the public API live
//! in `tests/policy_properties.rs` and share the builders.

/// What the builders need, re-exported so that `builders.rs` also compiles in the integration
/// tests (where the same names come from `kubepim::`).
mod deps {
    pub use crate::api::{
        ActivationRequestSpec, ActivationRequestStatus, Approval, ApprovalPolicy, Approvers,
        BindingRef, Budget, Decision, Eligibility, EligibilitySpec, Phase, PrivilegedRole,
        PrivilegedRoleSpec, Requester, RequesterAttributeRequirement, RoleKind, RoleRef, Scope,
        SubjectRef,
    };
    pub use crate::policy::extension::Related;
    pub use crate::policy::lifecycle::{
        BindingKind, DesiredBinding, Input, ObservedBinding, Step, binding_name, decide,
    };
    pub use crate::policy::validation::{Grant, Refusal, validate};
    pub use crate::time::to_k8s;
    pub use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    pub use k8s_openapi::api::rbac::v1::Subject;
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    pub use kube::core::Duration as KubeDuration;
}

mod activity_table;
mod budget_table;
pub(crate) mod builders;
mod extension_table;
mod footholds_table;
mod idle_table;
mod legitimacy_table;
mod lifecycle_table;
mod retention_table;
mod review_decisions_table;
mod review_table;
mod role_integrity_properties;
mod transition_table;
mod validation_table;
