//! Access review transitions: the status the controller writes at each step, and what each
//! step records (Event, audit line). Pure, on a given `now`.
use chrono::{DateTime, Utc};

use crate::api::conditions::{READY, REVIEW_OPEN, TRUNCATED};
use crate::api::{AccessReview, AccessReviewStatus, ReviewDecision, ReviewPhase};
use crate::time::to_k8s;

use super::review::{Fill, counts};
use super::review_decisions::close;
use super::status::set_condition;
use super::transition::{AuditDecision, EventNote, Severity};

/// One thing to record: an Event on the review (if any) and an audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewOccurrence {
    pub event: Option<EventNote>,
    pub decision: AuditDecision,
    /// The subject the line is about (`requester` field), if any.
    pub subject: String,
    /// The PrivilegedRole the line is about, if any.
    pub role: String,
    pub reason: String,
    pub message: String,
}

fn occurrence(
    severity: Severity,
    reason: &'static str,
    decision: AuditDecision,
    message: String,
) -> ReviewOccurrence {
    ReviewOccurrence {
        event: Some(EventNote {
            severity,
            reason,
            action: "Review",
            note: message.clone(),
        }),
        decision,
        subject: String::new(),
        role: String::new(),
        reason: reason.into(),
        message,
    }
}

/// The status of a review opened at `now` with `fill`, due at `due`.
pub fn opened(
    review: &AccessReview,
    fill: Fill,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (AccessReviewStatus, Vec<ReviewOccurrence>) {
    let mut status = review.status.clone().unwrap_or_default();
    let left_out = fill.left_out;
    status.items = fill.items;
    status.phase = Some(ReviewPhase::Open);
    status.due_at = Some(to_k8s(due));
    let (items, decided) = counts(&status);
    status.item_count = Some(items);
    status.decided_count = Some(decided);
    status.observed_generation = review.metadata.generation;
    let generation = review.metadata.generation;
    let message = format!(
        "{items} items to review until {}; decide with `kubectl pim review decide`",
        due.to_rfc3339()
    );
    set_condition(
        &mut status.conditions,
        READY,
        true,
        "Open",
        &message,
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        REVIEW_OPEN,
        true,
        "Open",
        &message,
        generation,
        now,
    );
    let mut happened = vec![occurrence(
        Severity::Normal,
        "ReviewOpened",
        AuditDecision::ReviewOpened,
        message,
    )];
    if left_out > 0 {
        let note = format!(
            "{left_out} more (eligibility, subject) pairs than one review holds ({items}); narrow the selector"
        );
        set_condition(
            &mut status.conditions,
            TRUNCATED,
            true,
            "TooManyItems",
            &note,
            generation,
            now,
        );
        happened.push(occurrence(
            Severity::Warning,
            "ReviewTruncated",
            AuditDecision::ReviewOpened,
            note,
        ));
    }
    (status, happened)
}

/// The decided count refreshed on an open review; `None` when it is unchanged.
pub fn progressed(review: &AccessReview) -> Option<AccessReviewStatus> {
    let mut status = review.status.clone()?;
    let (items, decided) = counts(&status);
    if status.item_count == Some(items) && status.decided_count == Some(decided) {
        return None;
    }
    status.item_count = Some(items);
    status.decided_count = Some(decided);
    Some(status)
}

/// The status of a review closed at `now`, and what to record: the close, and one line per
/// removed subject.
pub fn closed(
    review: &AccessReview,
    now: DateTime<Utc>,
) -> (AccessReviewStatus, Vec<ReviewOccurrence>) {
    let old = review.status.clone().unwrap_or_default();
    let mut status = close(&review.spec, &old, now);
    let (items, decided) = counts(&status);
    status.item_count = Some(items);
    status.decided_count = Some(decided);
    let removed: Vec<_> = status
        .items
        .iter()
        .filter(|i| i.outcome == Some(ReviewDecision::Remove))
        .collect();
    let message = format!(
        "closed: {decided} of {items} items decided, {} removed (undecided: {})",
        removed.len(),
        review.spec.default_decision.as_str()
    );
    let generation = review.metadata.generation;
    set_condition(
        &mut status.conditions,
        READY,
        true,
        "Closed",
        &message,
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        REVIEW_OPEN,
        false,
        "Closed",
        &message,
        generation,
        now,
    );
    let mut happened = vec![occurrence(
        Severity::Normal,
        "ReviewClosed",
        AuditDecision::ReviewClosed,
        message,
    )];
    for item in removed {
        happened.push(ReviewOccurrence {
            event: None,
            decision: AuditDecision::ReviewRemoved,
            subject: item.subject.name.clone(),
            role: item.role.clone(),
            reason: item.eligibility.clone(),
            message: format!(
                "{:?} {} removed from Eligibility {} (role {}): no longer honoured until the Eligibility changes in Git",
                item.subject.kind, item.subject.name, item.eligibility, item.role
            ),
        });
    }
    (status, happened)
}

/// What creating the next review of a schedule records.
pub fn scheduled(next: &str) -> ReviewOccurrence {
    occurrence(
        Severity::Normal,
        "ReviewScheduled",
        AuditDecision::ReviewScheduled,
        format!("the schedule created the next review {next}"),
    )
}
