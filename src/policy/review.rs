//! Access reviews: what a review covers, the evidence per (eligibility, subject), the
//! recommendation, when it is due, what the controller does next, and the next review of a
//! schedule. Decisions, outcomes and removals are in [`super::review_decisions`].
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::api::{
    AccessReview, AccessReviewSpec, AccessReviewStatus, ActivitySource, Decision, Eligibility,
    Evidence, ReviewDecision, ReviewItem, ReviewPhase, ReviewSelector, ReviewedActivity,
    SubjectKind, SubjectRef, access_review::MAX_ITEMS,
};
use crate::time::{duration_from_k8s, from_k8s, to_k8s};

use super::budget::elevation;
use super::extension::Related;
use super::identity::service_account_parts;

/// Most approvers listed as evidence for one item (the schema's bound).
pub const MAX_EVIDENCE_APPROVERS: usize = 16;
/// Label naming the series a scheduled review belongs to (the first review's name).
pub const SERIES_LABEL: &str = "kubepim.io/review-series";

/// Does the selector cover this Eligibility?
pub fn covers(selector: &ReviewSelector, eligibility: &Eligibility) -> bool {
    if selector.all {
        return true;
    }
    if !selector.roles.is_empty() {
        return selector.roles.contains(&eligibility.spec.role);
    }
    if !selector.match_labels.is_empty() {
        let labels = eligibility.metadata.labels.as_ref();
        return selector
            .match_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    }
    false
}

/// The key decisions refer to: `<eligibility>/<kind>/<name>`, `<namespace>:<name>` for a
/// ServiceAccount.
pub fn item_id(eligibility: &str, subject: &SubjectRef) -> String {
    match (subject.kind, &subject.namespace) {
        (SubjectKind::ServiceAccount, Some(ns)) => {
            format!("{eligibility}/ServiceAccount/{ns}:{}", subject.name)
        }
        (kind, _) => format!("{eligibility}/{kind:?}/{}", subject.name),
    }
}

/// The items of a review and how many were left out over [`MAX_ITEMS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub items: Vec<ReviewItem>,
    pub left_out: usize,
}

/// Who a grant in the history was held by: the index key for a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder<'a> {
    User(&'a str),
    Group(&'a str),
}

/// One grant of the history, reduced to what evidence needs.
struct Grant<'a> {
    start: DateTime<Utc>,
    hours: Duration,
    approvers: Vec<&'a str>,
    /// Requests the audit record attributed to the grant (`None`: no audit record).
    audited_requests: Option<i64>,
}

/// Grants held in the lookback window, indexed by (role, holder): each grant appears under its
/// requester's username and under each of their groups, so a group subject sees its members' use.
struct History<'a> {
    by_holder: HashMap<(&'a str, Holder<'a>), Vec<Grant<'a>>>,
}

impl<'a> History<'a> {
    fn index(history: &'a [Related<'a>], since: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let mut by_holder: HashMap<(&'a str, Holder<'a>), Vec<Grant<'a>>> = HashMap::new();
        for request in history {
            let Some(requester) = request.spec.requester.as_ref() else {
                continue;
            };
            let Some((start, end)) = elevation(request, now) else {
                continue;
            };
            // A grant still running at the window's start counts for its part inside it.
            if end <= since {
                continue;
            }
            let approvers = request
                .status
                .approvals
                .iter()
                .filter(|a| a.decision == Decision::Approved)
                .map(|a| a.approver.as_str())
                .collect::<Vec<_>>();
            let role = request.spec.role.as_str();
            let audited_requests = request
                .status
                .activity
                .as_ref()
                .filter(|a| a.source == ActivitySource::AuditWebhook)
                .map(|a| a.requests);
            let grant = || Grant {
                start,
                hours: end - start.max(since),
                approvers: approvers.clone(),
                audited_requests,
            };
            by_holder
                .entry((role, Holder::User(requester.username.as_str())))
                .or_default()
                .push(grant());
            for group in &requester.groups {
                by_holder
                    .entry((role, Holder::Group(group.as_str())))
                    .or_default()
                    .push(grant());
            }
        }
        Self { by_holder }
    }

    fn evidence(&self, role: &str, subject: &SubjectRef) -> Evidence {
        let sa_name;
        let holder = match subject.kind {
            SubjectKind::User => Holder::User(subject.name.as_str()),
            SubjectKind::Group => Holder::Group(subject.name.as_str()),
            SubjectKind::ServiceAccount => {
                sa_name = format!(
                    "system:serviceaccount:{}:{}",
                    subject.namespace.as_deref().unwrap_or_default(),
                    subject.name
                );
                Holder::User(sa_name.as_str())
            }
        };
        let grants = self.by_holder.get(&(role, holder)).map_or(&[][..], |g| g);
        // A user named like a ServiceAccount is not that ServiceAccount (and the other way round).
        let grants: Vec<&Grant<'_>> = match (subject.kind, holder) {
            (SubjectKind::User, Holder::User(name)) if service_account_parts(name).is_some() => {
                vec![]
            }
            _ => grants.iter().collect(),
        };
        let mut approvers: Vec<String> = grants
            .iter()
            .flat_map(|g| g.approvers.iter().map(|a| a.to_string()))
            .collect();
        approvers.sort();
        approvers.dedup();
        approvers.truncate(MAX_EVIDENCE_APPROVERS);
        let total: Duration = grants.iter().map(|g| g.hours).sum();
        let audited: Vec<i64> = grants.iter().filter_map(|g| g.audited_requests).collect();
        let activity = (!audited.is_empty()).then(|| ReviewedActivity {
            grants: u32::try_from(audited.len()).unwrap_or(u32::MAX),
            requests: audited.iter().sum(),
            unused_grants: u32::try_from(audited.iter().filter(|r| **r == 0).count())
                .unwrap_or(u32::MAX),
        });
        Evidence {
            activations: u32::try_from(grants.len()).unwrap_or(u32::MAX),
            last_used: grants.iter().map(|g| g.start).max().map(to_k8s),
            elevated_hours: (total.num_seconds() as f64 / 36.0).round() / 100.0,
            approvers,
            activity,
        }
    }
}

/// The recommendation for one item and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub decision: ReviewDecision,
    pub reason: String,
}

fn days(d: Duration) -> i64 {
    d.num_days()
}

/// The recommendation rule:
/// - the eligibility's window has ended: remove;
/// - no grant in the lookback window, and the eligibility is older than the window: remove
///   (`unused for 90 days`);
/// - no grant, but the eligibility is younger than the window: keep (too new to judge);
/// - otherwise keep, saying how often and how recently it was used.
pub fn recommend(
    eligibility: &Eligibility,
    evidence: &Evidence,
    lookback: Duration,
    now: DateTime<Utc>,
) -> Recommendation {
    let remove = |reason: String| Recommendation {
        decision: ReviewDecision::Remove,
        reason,
    };
    let keep = |reason: String| Recommendation {
        decision: ReviewDecision::Keep,
        reason,
    };
    if let Some(end) = eligibility.spec.not_after.as_ref().map(from_k8s)
        && end <= now
    {
        return remove(format!(
            "eligibility window ended {} days ago",
            days(now - end)
        ));
    }
    // Activated, but the audit record shows none of those grants was ever used: the access is
    // held for nothing.
    if let Some(activity) = &evidence.activity
        && activity.grants > 0
        && activity.unused_grants == activity.grants
        && activity.grants == evidence.activations
    {
        return remove(format!(
            "activated {} times in {} days but never used (audit record)",
            evidence.activations,
            days(lookback)
        ));
    }
    match evidence.last_used.as_ref().map(from_k8s) {
        Some(last) => keep(format!(
            "used {} times in {} days, last {} days ago",
            evidence.activations,
            days(lookback),
            days(now - last).max(0)
        )),
        None => {
            let created = eligibility
                .metadata
                .creation_timestamp
                .as_ref()
                .map(from_k8s);
            match created {
                Some(created) if now - created < lookback => keep(format!(
                    "not used yet; created {} days ago, less than the {}-day lookback",
                    days(now - created).max(0),
                    days(lookback)
                )),
                _ => remove(format!("unused for {} days", days(lookback))),
            }
        }
    }
}

/// The items of a review: one per (covered eligibility, subject), in eligibility name order, with
/// evidence from the grants of the history inside `[now - lookback, now]`.
pub fn fill(
    spec: &AccessReviewSpec,
    eligibilities: &[&Eligibility],
    history: &[Related<'_>],
    now: DateTime<Utc>,
) -> Fill {
    let lookback = duration_from_k8s(&spec.lookback);
    let index = History::index(history, now - lookback, now);
    let mut covered: Vec<&Eligibility> = eligibilities
        .iter()
        .copied()
        .filter(|e| covers(&spec.selector, e))
        .collect();
    covered.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut items = Vec::new();
    let mut left_out = 0;
    for eligibility in covered {
        let name = eligibility.metadata.name.clone().unwrap_or_default();
        for subject in &eligibility.spec.subjects {
            if items.len() >= MAX_ITEMS {
                left_out += 1;
                continue;
            }
            let evidence = index.evidence(&eligibility.spec.role, subject);
            let recommendation = recommend(eligibility, &evidence, lookback, now);
            items.push(ReviewItem {
                id: item_id(&name, subject),
                eligibility: name.clone(),
                eligibility_uid: eligibility.metadata.uid.clone().unwrap_or_default(),
                eligibility_generation: eligibility.metadata.generation.unwrap_or_default(),
                eligibility_subjects: Some(super::review_decisions::subjects_digest(
                    &eligibility.spec.subjects,
                )),
                role: eligibility.spec.role.clone(),
                subject: subject.clone(),
                evidence,
                recommendation: recommendation.decision,
                recommendation_reason: recommendation.reason,
                outcome: None,
            });
        }
    }
    Fill { items, left_out }
}

/// When a review closes: `spec.dueAt`, else creation + `spec.duration`. `None` when neither can
/// be resolved (no creation time yet).
pub fn due_at(review: &AccessReview) -> Option<DateTime<Utc>> {
    if let Some(due) = &review.spec.due_at {
        return Some(from_k8s(due));
    }
    let created = from_k8s(review.metadata.creation_timestamp.as_ref()?);
    Some(created + duration_from_k8s(review.spec.duration.as_ref()?))
}

/// What the review controller does next.
#[derive(Debug, Clone)]
pub enum ReviewStep {
    /// Open the review: write items, due time and phase `Open`.
    Open { due: DateTime<Utc> },
    /// Past the due time: record outcomes and close.
    Close { due: DateTime<Utc> },
    /// Open; look again at the due time.
    WaitUntil(DateTime<Utc>),
    /// Closed; with a schedule, make sure the next review exists.
    Closed { next: Option<Box<AccessReview>> },
    /// The due time cannot be resolved yet (no creation timestamp): nothing to do.
    Unresolved,
}

/// Decides the next step from the review alone (the fill itself needs the caches).
pub fn step(review: &AccessReview, now: DateTime<Utc>) -> ReviewStep {
    let status = review.status.clone().unwrap_or_default();
    if status.phase == Some(ReviewPhase::Closed) {
        let next = status
            .closed_at
            .as_ref()
            .and_then(|_| due_at(review))
            .and_then(|due| next_review(review, due))
            .map(Box::new);
        return ReviewStep::Closed { next };
    }
    let Some(due) = due_at(review) else {
        return ReviewStep::Unresolved;
    };
    match status.phase {
        None => ReviewStep::Open { due },
        Some(_) if now >= due => ReviewStep::Close { due },
        Some(_) => ReviewStep::WaitUntil(due),
    }
}

/// The review a schedule creates when `review` (due at `due`) closes: same spec, due one period
/// later, named `<series>-<due date>` so that creating it twice is a conflict, not a duplicate.
pub fn next_review(review: &AccessReview, due: DateTime<Utc>) -> Option<AccessReview> {
    let every = duration_from_k8s(&review.spec.schedule.as_ref()?.every);
    let next_due = due + every;
    let series = review
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERIES_LABEL))
        .cloned()
        .or_else(|| review.metadata.name.clone())?;
    let mut base = series.clone();
    // Leave room for `-YYYYMMDDhhmm` within a 253-character name.
    base.truncate(239);
    let name = format!("{base}-{}", next_due.format("%Y%m%d%H%M"));
    let mut spec = review.spec.clone();
    spec.due_at = Some(to_k8s(next_due));
    spec.duration = None;
    let mut next = AccessReview::new(&name, spec);
    next.metadata.labels = Some([(SERIES_LABEL.to_string(), series)].into());
    Some(next)
}

/// Counts for the printer columns: items, and items with at least one decision.
pub fn counts(status: &AccessReviewStatus) -> (u32, u32) {
    let decided: std::collections::HashSet<&str> =
        status.decisions.iter().map(|d| d.item.as_str()).collect();
    let decided = status
        .items
        .iter()
        .filter(|i| decided.contains(i.id.as_str()))
        .count();
    (
        u32::try_from(status.items.len()).unwrap_or(u32::MAX),
        u32::try_from(decided).unwrap_or(u32::MAX),
    )
}
