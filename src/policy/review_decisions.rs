//! Access review decisions: who may decide which item, what a `/status` write may change, the
//! outcome at close, and which subjects an Eligibility stops honouring because a review removed
//! them.
//!
//! The same rules are the `accessreview-status` admission policy's (CEL, in the chart) and the
//! webhook's; the controller re-applies [`may_review`] at close, so a decision that reached the
//! status without admission (policies not installed) still cannot be a self-review or a
//! ServiceAccount's.
//!
//! **How long a removal holds.** An item records the Eligibility's uid and a digest of the
//! subjects it named when the review was filled. A `Remove` outcome excludes that subject from
//! that Eligibility for as long as it has the same uid and names the same subjects. Git dropping
//! the subject (and re-adding it later), or changing who the Eligibility names, lifts the
//! removal: a change to the subjects in Git is the explicit decision that now counts. Edits to
//! anything else (its window, durations, labels) do not lift it. Deleting and recreating the
//! Eligibility (a new uid) does. Items filled before the digest existed hold for the recorded
//! `metadata.generation`. Among several closed reviews of the same item
//! (same uid and generation), the latest closed one counts, so a later review may keep a subject
//! an earlier one removed.
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::api::{
    AccessReview, AccessReviewSpec, AccessReviewStatus, Eligibility, ItemDecision, ReviewDecision,
    ReviewItem, ReviewPhase, SubjectRef, access_review::MAX_DECISIONS,
};
use crate::time::{from_k8s, to_k8s};

use super::identity::{is_service_account, subject_matches};

/// Who is writing: the identity the API server authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
    /// Allowed `manage` on accessreviews (the operator).
    pub is_controller: bool,
}

/// Why a decision or a `/status` write is refused. `Display` is the message the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRefusal {
    #[error("ServiceAccount '{0}' cannot review access: reviews are decisions of people")]
    ServiceAccount(String),
    #[error(
        "you cannot review your own access: '{reviewer}' is (or is a member of) the subject of item {item}"
    )]
    SelfReview { reviewer: String, item: String },
    #[error(
        "'{reviewer}' is not a reviewer of item {item}: not named in spec.reviewers (users, groups) nor an approver of the subject's grants"
    )]
    NotAReviewer { reviewer: String, item: String },
    #[error("the review is {0}: decisions are accepted only while it is Open")]
    NotOpen(String),
    #[error(
        "only the kubepim controller may set status.{0}; reviewers may only append one decision"
    )]
    ControllerField(&'static str),
    #[error("the kubepim controller never adds, removes or changes decisions")]
    ControllerDecides,
    #[error(
        "status.decisions is append-only; existing entries cannot be removed, reordered or changed"
    )]
    NotAppendOnly,
    #[error(
        "append exactly one decision per write: status.decisions would go from {before} to {after} entries"
    )]
    NotOne { before: usize, after: usize },
    #[error("this decision is already recorded; add a comment or a different decision")]
    Duplicate,
    #[error("the review holds at most {MAX_DECISIONS} decisions")]
    TooMany,
    #[error("no item {0} in this review")]
    NoSuchItem(String),
    #[error("the reviewer of a decision must be your own identity '{caller}', not '{written}'")]
    NotYourName { caller: String, written: String },
    #[error("the groups of a decision must be exactly your own groups [{0}]")]
    NotYourGroups(String),
}

/// May `reviewer` (with `groups`) decide `item` of a review with `spec`? Refused: a
/// ServiceAccount; the item's subject itself, or a member of the group the item names (deciding
/// about a group one is in is deciding about oneself); anyone the spec does not name (by user,
/// group, or as an approver of the subject's grants when `subjectsApprovers` is set).
pub fn may_review(
    spec: &AccessReviewSpec,
    item: &ReviewItem,
    reviewer: &str,
    groups: &[String],
) -> Result<(), ReviewRefusal> {
    if is_service_account(reviewer) {
        return Err(ReviewRefusal::ServiceAccount(reviewer.into()));
    }
    let who = crate::api::Requester {
        username: reviewer.into(),
        groups: groups.to_vec(),
        ..Default::default()
    };
    if subject_matches(&item.subject, &who) {
        return Err(ReviewRefusal::SelfReview {
            reviewer: reviewer.into(),
            item: item.id.clone(),
        });
    }
    let named = spec.reviewers.users.iter().any(|u| u == reviewer)
        || spec.reviewers.groups.iter().any(|g| groups.contains(g))
        || (spec.reviewers.subjects_approvers
            && item.evidence.approvers.iter().any(|a| a == reviewer));
    if !named {
        return Err(ReviewRefusal::NotAReviewer {
            reviewer: reviewer.into(),
            item: item.id.clone(),
        });
    }
    Ok(())
}

/// Status fields only the controller writes, by name, as `(old, new)` equality.
fn changed_controller_field(
    old: &AccessReviewStatus,
    new: &AccessReviewStatus,
) -> Option<&'static str> {
    let checks: [(&'static str, bool); 9] = [
        ("phase", old.phase == new.phase),
        ("dueAt", old.due_at == new.due_at),
        ("items", old.items == new.items),
        ("itemCount", old.item_count == new.item_count),
        ("decidedCount", old.decided_count == new.decided_count),
        ("closedAt", old.closed_at == new.closed_at),
        ("nextReview", old.next_review == new.next_review),
        ("conditions", old.conditions == new.conditions),
        (
            "observedGeneration",
            old.observed_generation == new.observed_generation,
        ),
    ];
    checks.into_iter().find(|(_, same)| !same).map(|(f, _)| f)
}

/// Checks one UPDATE of `accessreviews/status`: the controller writes its own fields and never
/// decisions; anyone else appends exactly one decision of their own on an item they may review,
/// while the review is Open, and changes nothing else. `Ok` carries the appended decision.
pub fn check_status_write<'n>(
    spec: &AccessReviewSpec,
    old: &AccessReviewStatus,
    new: &'n AccessReviewStatus,
    caller: Caller<'_>,
) -> Result<Option<&'n ItemDecision>, ReviewRefusal> {
    let kept = new.decisions.len() >= old.decisions.len()
        && new.decisions[..old.decisions.len()] == old.decisions[..];
    if caller.is_controller {
        return if new.decisions == old.decisions {
            Ok(None)
        } else {
            Err(ReviewRefusal::ControllerDecides)
        };
    }
    if let Some(field) = changed_controller_field(old, new) {
        return Err(ReviewRefusal::ControllerField(field));
    }
    if old.phase != Some(ReviewPhase::Open) {
        let phase = old
            .phase
            .map_or("not open yet".to_string(), |p| format!("{p:?}"));
        return Err(ReviewRefusal::NotOpen(phase));
    }
    if !kept {
        return Err(ReviewRefusal::NotAppendOnly);
    }
    if new.decisions.len() != old.decisions.len() + 1 {
        return Err(ReviewRefusal::NotOne {
            before: old.decisions.len(),
            after: new.decisions.len(),
        });
    }
    if new.decisions.len() > MAX_DECISIONS {
        return Err(ReviewRefusal::TooMany);
    }
    let Some(decision) = new.decisions.last() else {
        return Ok(None);
    };
    // As the admission policy: no entry twice (which keeps its prefix check exact).
    if old.decisions.contains(decision) {
        return Err(ReviewRefusal::Duplicate);
    }
    if decision.reviewer != caller.username {
        return Err(ReviewRefusal::NotYourName {
            caller: caller.username.into(),
            written: decision.reviewer.clone(),
        });
    }
    if decision.groups != caller.groups {
        return Err(ReviewRefusal::NotYourGroups(caller.groups.join(", ")));
    }
    let Some(item) = old.items.iter().find(|i| i.id == decision.item) else {
        return Err(ReviewRefusal::NoSuchItem(decision.item.clone()));
    };
    may_review(spec, item, caller.username, caller.groups)?;
    Ok(Some(decision))
}

/// The outcome of each item at close: the last decision on it that passes [`may_review`], else
/// the spec's default.
pub fn outcomes(spec: &AccessReviewSpec, status: &AccessReviewStatus) -> Vec<ReviewDecision> {
    let index: HashMap<&str, &ReviewItem> =
        status.items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut last: HashMap<&str, ReviewDecision> = HashMap::new();
    for d in &status.decisions {
        if let Some(item) = index.get(d.item.as_str())
            && may_review(spec, item, &d.reviewer, &d.groups).is_ok()
        {
            last.insert(item.id.as_str(), d.decision);
        }
    }
    status
        .items
        .iter()
        .map(|i| {
            last.get(i.id.as_str())
                .copied()
                .unwrap_or(spec.default_decision)
        })
        .collect()
}

/// The status of a review closed at `now`: outcomes recorded on every item, phase `Closed`.
pub fn close(
    spec: &AccessReviewSpec,
    status: &AccessReviewStatus,
    now: DateTime<Utc>,
) -> AccessReviewStatus {
    let mut closed = status.clone();
    for (item, outcome) in closed.items.iter_mut().zip(outcomes(spec, status)) {
        item.outcome = Some(outcome);
    }
    closed.phase = Some(ReviewPhase::Closed);
    closed.closed_at = Some(to_k8s(now));
    closed
}

/// A subject a closed review removed from an Eligibility, still in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub subject: SubjectRef,
    pub review: String,
    pub closed_at: DateTime<Utc>,
}

/// sha256 (lower-case hex) of the subjects an Eligibility names, in a canonical order.
pub fn subjects_digest(subjects: &[SubjectRef]) -> String {
    let mut named: Vec<String> = subjects
        .iter()
        .map(|s| {
            format!(
                "{:?}/{}/{}",
                s.kind,
                s.namespace.as_deref().unwrap_or_default(),
                s.name
            )
        })
        .collect();
    named.sort();
    named.dedup();
    let hash = ring::digest::digest(&ring::digest::SHA256, named.join("\n").as_bytes());
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The removals in force for `eligibility` (see the module docs for how long one holds).
pub fn removals(eligibility: &Eligibility, reviews: &[&AccessReview]) -> Vec<Removal> {
    let Some(name) = eligibility.metadata.name.as_deref() else {
        return vec![];
    };
    let uid = eligibility.metadata.uid.as_deref().unwrap_or_default();
    let generation = eligibility.metadata.generation.unwrap_or_default();
    let subjects = subjects_digest(&eligibility.spec.subjects);
    // Latest closed outcome per subject.
    let mut latest: Vec<(SubjectRef, DateTime<Utc>, ReviewDecision, String)> = Vec::new();
    for review in reviews {
        let Some(status) = review.status.as_ref() else {
            continue;
        };
        let (Some(ReviewPhase::Closed), Some(closed_at)) = (status.phase, &status.closed_at) else {
            continue;
        };
        let closed_at = from_k8s(closed_at);
        for item in &status.items {
            let Some(outcome) = item.outcome else {
                continue;
            };
            let same_subjects = match &item.eligibility_subjects {
                Some(recorded) => *recorded == subjects,
                None => item.eligibility_generation == generation,
            };
            if item.eligibility != name || item.eligibility_uid != uid || !same_subjects {
                continue;
            }
            let review_name = review.metadata.name.clone().unwrap_or_default();
            match latest.iter_mut().find(|(s, ..)| *s == item.subject) {
                Some(entry) if entry.1 < closed_at => {
                    *entry = (item.subject.clone(), closed_at, outcome, review_name)
                }
                Some(_) => {}
                None => latest.push((item.subject.clone(), closed_at, outcome, review_name)),
            }
        }
    }
    latest
        .into_iter()
        .filter(|(.., outcome, _)| *outcome == ReviewDecision::Remove)
        .map(|(subject, closed_at, _, review)| Removal {
            subject,
            review,
            closed_at,
        })
        .collect()
}

/// The subjects of `eligibility` still honoured given `removals`.
pub fn honoured<'e>(eligibility: &'e Eligibility, removals: &[Removal]) -> Vec<&'e SubjectRef> {
    eligibility
        .spec
        .subjects
        .iter()
        .filter(|s| !removals.iter().any(|r| r.subject == **s))
        .collect()
}
