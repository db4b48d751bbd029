//! `AccessReview`: a periodic re-certification of who is eligible for what.
//!
//! The controller fills `status.items` once, from the Eligibilities the selector covers and the
//! request history (the evidence a reviewer needs). Reviewers append decisions to
//! `status.decisions` through `/status`, one per write, under their own authenticated identity
//! (checked by the `accessreview-status` admission policy exactly as approvals are). At the due
//! time the controller closes the review and records each item's outcome; an item whose outcome
//! is `Remove` stops being honoured by its Eligibility (see `docs/reviews.md`). Eligibilities are
//! Git-managed and never edited.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, core::Duration};
use serde::{Deserialize, Serialize};

use super::SubjectRef;

fn default_lookback() -> Duration {
    Duration::from(std::time::Duration::from_secs(90 * 24 * 3600))
}

/// A review of the eligibilities a selector covers, by named reviewers, due at a fixed time.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubepim.io",
    version = "v1alpha1",
    kind = "AccessReview",
    shortname = "pimreview",
    category = "pim",
    status = "AccessReviewStatus",
    doc = "A periodic review of eligibilities: reviewers keep or remove each (eligibility, subject).",
    cel,
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Due", type_ = "string", json_path = ".status.dueAt"),
    printcolumn(name = "Items", type_ = "integer", json_path = ".status.itemCount"),
    printcolumn(
        name = "Decided",
        type_ = "integer",
        json_path = ".status.decidedCount"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self == oldSelf")
        .message("spec is immutable: a review covers what it covered when it opened; create a new review instead"),
    validation = Rule::new("has(self.dueAt) != has(self.duration)")
        .message("set exactly one of dueAt and duration"),
)]
pub struct AccessReviewSpec {
    /// Which eligibilities the review covers.
    pub selector: ReviewSelector,
    /// Who may decide.
    pub reviewers: Reviewers,
    /// When the review closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Time>,
    /// Or: how long after creation the review closes, e.g. `336h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub duration: Option<Duration>,
    /// Outcome of an item nobody decided by the due time (set by the platform team).
    #[serde(default)]
    pub default_decision: ReviewDecision,
    /// How far back the evidence looks, e.g. `2160h` (90 days; durations have no day unit).
    #[serde(default = "default_lookback")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub lookback: Duration,
    /// When set, closing this review creates the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ReviewSchedule>,
}

/// Which eligibilities a review covers: exactly one of the three.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(size(self.roles) > 0 ? 1 : 0) + (size(self.matchLabels) > 0 ? 1 : 0) + (self.all ? 1 : 0) == 1")
        .message("selector: set exactly one of roles, matchLabels and all")
)]
pub struct ReviewSelector {
    /// Eligibilities for these PrivilegedRoles.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub roles: Vec<String>,
    /// Eligibilities whose labels include all of these.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub match_labels: BTreeMap<String, String>,
    /// Every Eligibility.
    #[serde(default)]
    pub all: bool,
}

/// Who may decide: named users, members of named groups, and optionally (per item) the people
/// who approved the subject's activations in the lookback window. Never the subject itself, never
/// a ServiceAccount.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("size(self.users) > 0 || size(self.groups) > 0 || self.subjectsApprovers")
        .message("reviewers: name at least one user or group, or set subjectsApprovers")
)]
pub struct Reviewers {
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub users: Vec<String>,
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
    /// Those who approved the subject's activations (in the lookback window) may review its item.
    #[serde(default)]
    pub subjects_approvers: bool,
}

/// Repeat the review: the next one is created when this one closes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("duration(self.every) >= duration('1h')")
        .message("schedule.every must be at least 1h").field_path(".every")
)]
pub struct ReviewSchedule {
    /// Time from this review's due time to the next one's, e.g. `2160h` (quarterly).
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub every: Duration,
}

/// Keep or remove a subject's eligibility.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum ReviewDecision {
    #[default]
    Keep,
    Remove,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "Keep",
            Self::Remove => "Remove",
        }
    }
}

/// Lifecycle of a review.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum ReviewPhase {
    /// Items filled; reviewers decide.
    Open,
    /// Past the due time: outcomes recorded, decisions refused.
    Closed,
}

/// What the history says about one subject on one eligibility's role, in the lookback window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// Grants of the role the subject held (requests that reached Active).
    #[serde(default)]
    pub activations: u32,
    /// Start of the most recent of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Time>,
    /// Total elevated time, in hours (rounded to 0.01).
    #[serde(default)]
    pub elevated_hours: f64,
    /// Who approved those grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    pub approvers: Vec<String>,
    /// From the audit record, where it exists: how many of those grants it covered, the API
    /// requests made under them, and how many were never used at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<ReviewedActivity>,
}

/// What the audit record says those grants were used for.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewedActivity {
    /// Grants the audit record covered.
    #[serde(default)]
    pub grants: u32,
    /// API requests made under them.
    #[serde(default)]
    pub requests: i64,
    /// Of those grants, never used.
    #[serde(default)]
    pub unused_grants: u32,
}

/// One (eligibility, subject) pair under review. Written by the controller only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewItem {
    /// Stable key decisions refer to: `<eligibility>/<kind>/<name>` (`<namespace>:<name>` for a
    /// ServiceAccount).
    #[schemars(length(min = 1, max = 600))]
    pub id: String,
    #[schemars(length(min = 1, max = 253))]
    pub eligibility: String,
    /// The Eligibility's uid and generation when the item was filled: a removal holds for exactly
    /// that object at exactly that generation (Git changing it lifts the removal).
    #[schemars(length(max = 64))]
    pub eligibility_uid: String,
    #[serde(default)]
    pub eligibility_generation: i64,
    /// A digest of the subjects the Eligibility named when the item was filled: a removal holds
    /// while the Eligibility names the same subjects (Git dropping the subject, or changing who
    /// is named, lifts it; edits to its window or durations do not). Items filled before this
    /// field existed fall back to the generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub eligibility_subjects: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub role: String,
    pub subject: SubjectRef,
    pub evidence: Evidence,
    /// What the evidence suggests.
    pub recommendation: ReviewDecision,
    /// Why, in plain words (e.g. `unused for 90 days`).
    #[schemars(length(max = 256))]
    pub recommendation_reason: String,
    /// Set at close: the last decision on the item, or the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ReviewDecision>,
}

/// A reviewer's decision on one item, appended through `/status`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemDecision {
    /// `id` of the item decided.
    #[schemars(length(min = 1, max = 600))]
    pub item: String,
    pub decision: ReviewDecision,
    /// Username of the reviewer (must be the caller's own, checked at admission).
    #[schemars(length(min = 1, max = 253))]
    pub reviewer: String,
    /// The reviewer's groups (must be the caller's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 253)))]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub comment: Option<String>,
}

/// Most items one review holds: an object must stay under etcd's 1.5 MiB limit, and 2,000 items
/// with their evidence are about 0.75 MB of JSON (benches/review.rs), leaving room for the
/// decisions. More are left out and reported by the `Truncated` condition.
pub const MAX_ITEMS: usize = 2000;
/// Most decisions one review holds.
pub const MAX_DECISIONS: usize = 4000;

/// Observed state of a review.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReviewPhase>,
    /// Resolved from spec.dueAt or creation + spec.duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Time>,
    /// Written once, when the review opens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000))]
    pub items: Vec<ReviewItem>,
    /// Reviewers' decisions, append-only; the last one per item counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4000))]
    pub decisions: Vec<ItemDecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<u32>,
    /// Items with at least one decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Time>,
    /// Name of the review the schedule created at close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub next_review: Option<String>,
    /// `Ready`, `Truncated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(
        schema_with = "super::common::bounded_conditions_schema",
        length(max = 16)
    )]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl AccessReview {
    pub fn phase(&self) -> Option<ReviewPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }
}
