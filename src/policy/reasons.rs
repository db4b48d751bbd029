//! Machine-readable reasons: status `reason`, condition reasons and Event reasons share them.

// Request progress.
pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
pub const APPROVED: &str = "Approved";
pub const APPROVAL_NOT_REQUIRED: &str = "ApprovalNotRequired";
pub const BREAK_GLASS: &str = "BreakGlass";
pub const SCHEDULED: &str = "Scheduled";
pub const ACTIVATED: &str = "Activated";

// Terminal outcomes.
pub const DURATION_ELAPSED: &str = "DurationElapsed";
/// The grant went unused for the role's `idleTimeout` (audit record configured).
pub const IDLE: &str = "Idle";
/// Condition `Used` at a grant's end: the audit record shows no request made under it.
pub const NEVER_USED: &str = "NeverUsed";
/// Condition `Used` at a grant's end: requests were made under it.
pub const USED: &str = "Used";
/// Condition `Used` at a grant's end without an audit record: not known.
pub const ACTIVITY_UNAVAILABLE: &str = "ActivityUnavailable";
pub const NOT_APPROVED: &str = "NotApproved";
pub const DENIED_BY_APPROVER: &str = "DeniedByApprover";
pub const CANCELLED_BY_REQUESTER: &str = "CancelledByRequester";
pub const MISSING_REQUESTER: &str = "MissingRequester";

// Validation refusals (Denied before activation, Revoked after).
pub const ROLE_NOT_FOUND: &str = "RoleNotFound";
pub const NOT_ELIGIBLE: &str = "NotEligible";
pub const ELIGIBILITY_NOT_YET_VALID: &str = "EligibilityNotYetValid";
pub const ELIGIBILITY_EXPIRED: &str = "EligibilityExpired";
pub const NAMESPACE_OUTSIDE_SCOPE: &str = "NamespaceNotAllowed";
/// A namespace the request binds in does not exist (the API server said so).
pub const NAMESPACE_NOT_FOUND: &str = "NamespaceNotFound";
pub const NAMESPACES_REQUIRED: &str = "NamespacesRequired";
pub const NAMESPACES_ON_CLUSTER_WIDE_ROLE: &str = "NamespacesNotAllowed";
pub const DURATION_TOO_LONG: &str = "DurationTooLong";
/// Zero, negative or under a second: timestamps are persisted at whole seconds.
pub const DURATION_TOO_SHORT: &str = "DurationTooShort";
pub const JUSTIFICATION_REQUIRED: &str = "JustificationRequired";
pub const TICKET_REQUIRED: &str = "TicketRequired";
pub const TICKET_MISMATCH: &str = "TicketMismatch";
pub const INVALID_TICKET_PATTERN: &str = "InvalidTicketPattern";
/// The grant no longer matches what was approved: the PrivilegedRole now references another role
/// or grants it elsewhere, or the referenced role's rules widened during the grant.
pub const ROLE_CHANGED: &str = "RoleChanged";
pub const REQUESTER_ATTRIBUTES_MISSING: &str = "RequesterAttributesMissing";
/// The grant would take the requester past a privilege budget (`spec.budget`) of the role or of
/// the eligibilities that allow it.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";

// Eligibility and role status.
pub const WITHIN_WINDOW: &str = "WithinWindow";
pub const NOT_YET_VALID: &str = "NotYetValid";
pub const EXPIRED: &str = "Expired";
pub const ROLE_BINDABLE: &str = "RoleBindable";
pub const REFERENCED_ROLE_NOT_FOUND: &str = "ReferencedRoleNotFound";

// PrivilegedRole: may the operator bind the role, and how far does it reach.
pub const NOT_BINDABLE: &str = "NotBindable";
pub const RISK_LOW: &str = "Low";
pub const RISK_ELEVATED: &str = "Elevated";
/// An aggregated ClusterRole whose rules the aggregation controller has not filled in yet.
pub const AGGREGATION_PENDING: &str = "AggregationPending";

// A binding carrying kubepim's managed label that no Active request accounts for (Warning Event
// on the binding).
pub const ILLEGITIMATE_BINDING_REMOVED: &str = "IllegitimateBindingRemoved";

// Standing privilege (Events on the PrivilegedRole).
pub const UNMANAGED_BINDINGS: &str = "UnmanagedBindings";
pub const UNMANAGED_BINDINGS_GONE: &str = "UnmanagedBindingsGone";

// Extensions (`spec.extends`).
/// The grant ended because an extension took over without a gap.
pub const EXTENDED: &str = "Extended";
/// The request an extension names does not exist or is no longer active.
pub const NOTHING_TO_EXTEND: &str = "NothingToExtend";
/// The extension does not fit its original (another requester, role or namespaces).
pub const EXTENSION_NOT_ALLOWED: &str = "ExtensionNotAllowed";
/// The extension would keep the requester elevated longer than maxContinuousDuration.
pub const CONTINUOUS_DURATION_TOO_LONG: &str = "ContinuousDurationTooLong";

// Role integrity while a grant is Active (condition `RoleNarrowed`, Event on the request).
/// The referenced role allows less than when the grant was made; the grant is kept.
pub const ROLE_NARROWED: &str = "RoleNarrowed";
/// The referenced role allows again exactly what it did when the grant was made.
pub const ROLE_UNCHANGED: &str = "RoleUnchanged";

// Footholds at a grant's end.
pub const FOOTHOLDS_FOUND: &str = "FootholdsFound";
pub const NO_FOOTHOLDS_FOUND: &str = "NoFootholdsFound";
/// The grant has ended; the review of what it left behind runs after its revocation.
pub const FOOTHOLD_REVIEW_PENDING: &str = "FootholdReviewPending";
/// The review could not read the granted scope (after retries).
pub const FOOTHOLD_REVIEW_FAILED: &str = "FootholdReviewFailed";
/// Event reason: the foothold remover deleted a foothold.
pub const FOOTHOLD_REMOVED: &str = "FootholdRemoved";
/// Event reason: the foothold remover left a foothold the review named in place (Warning).
pub const FOOTHOLD_KEPT: &str = "FootholdKept";
