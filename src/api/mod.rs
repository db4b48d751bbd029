//! The kinds of `kubepim.io/v1alpha1`: types and schema only, no client calls.
//!
//! Every string and list is bounded so the API server's CEL cost estimator accepts the rules.
#![allow(clippy::duplicated_attributes)] // repeated typed `printcolumn(...)` entries (kube-derive false positive)

pub mod access_review;
pub mod activation_request;
pub mod activity;
pub mod common;
pub mod eligibility;
pub mod privileged_role;

pub use access_review::{
    AccessReview, AccessReviewSpec, AccessReviewStatus, Evidence, ItemDecision, ReviewDecision,
    ReviewItem, ReviewPhase, ReviewSchedule, ReviewSelector, ReviewedActivity, Reviewers,
};
pub use activation_request::{
    ActivationRequest, ActivationRequestSpec, ActivationRequestStatus, Approval, BindingRef,
    Decision, FootholdRef, GrantedRule, Phase, Requester,
};
pub use activity::{Activity, ActivitySource, NotableWrite};
pub use common::{Budget, SubjectKind, SubjectRef};
pub use eligibility::{Eligibility, EligibilitySpec, EligibilityStatus, RemovedSubject};
pub use privileged_role::{
    ApprovalPolicy, Approvers, BindingSample, FootholdAction, PrivilegedRole, PrivilegedRoleSpec,
    PrivilegedRoleStatus, RequesterAttributeRequirement, RoleKind, RoleRef, Scope,
    SeparationFinding, UnmanagedBindings,
};

/// API group of every kind.
pub const GROUP: &str = "kubepim.io";
/// The only served version.
pub const VERSION: &str = "v1alpha1";

/// Labels and annotations kubepim puts on the bindings it manages.
pub mod labels {
    /// `app.kubernetes.io/managed-by=kubepim` on every managed binding.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "kubepim";
    /// Name of the ActivationRequest a binding belongs to.
    pub const REQUEST: &str = "kubepim.io/request";
    /// Name of the PrivilegedRole a binding grants.
    pub const ROLE: &str = "kubepim.io/role";
    /// RFC 3339 expiry written on the binding at creation, so a retried activation reuses it and
    /// the sweeper can revoke without the request.
    pub const EXPIRES_AT: &str = "kubepim.io/expires-at";
    /// UID of the owning request: a recreated request with the same name is a different grant.
    pub const REQUEST_UID: &str = "kubepim.io/request-uid";
    /// Selector that matches exactly the managed bindings.
    pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kubepim";
}

/// Finalizer that makes deletion of a request revoke its bindings first.
pub const FINALIZER: &str = "kubepim.io/revoke-bindings";

/// Condition types and reasons, shared by controller, check and tests.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const APPROVED: &str = "Approved";
    pub const DENIED: &str = "Denied";
    pub const ACTIVE: &str = "Active";
    /// PrivilegedRole: the referenced role's reach was assessed (reason `Low` or `Elevated`).
    pub const RISK_ASSESSED: &str = "RiskAssessed";
    /// ActivationRequest, at a grant's end: objects made while it ran that keep giving access.
    pub const FOOTHOLDS_FOUND: &str = "FootholdsFound";
    /// ActivationRequest, while Active: the referenced role now allows less than when the grant
    /// was made (True, with what was removed); the grant is kept.
    pub const ROLE_NARROWED: &str = "RoleNarrowed";
    /// ActivationRequest, at a grant's end: whether it was used (`Used`, `NeverUsed`, or
    /// `ActivityUnavailable` without the audit record).
    pub const USED: &str = "Used";
    /// Eligibility: a closed AccessReview removed some of its subjects (reason `SubjectsRemoved`
    /// or `NoneRemoved`).
    pub const REVIEW_REMOVED: &str = "ReviewRemoved";
    /// AccessReview: items filled, open for decisions (reason `Open`), or closed (`Closed`).
    pub const REVIEW_OPEN: &str = "Open";
    /// AccessReview: more (eligibility, subject) pairs than one review holds.
    pub const TRUNCATED: &str = "Truncated";
}
