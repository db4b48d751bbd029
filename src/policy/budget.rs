//! Privilege budgets (`spec.budget` of a PrivilegedRole or an Eligibility): at most `maxElevated`
//! of elevated time per requester in any rolling window of length `per`.
//!
//! Usage is computed from the requests kept in the cluster (the controller's request cache), so
//! it survives restarts and sees as far back as terminal ActivationRequests are kept. A grant's
//! elevated time runs from `status.activatedAt` to its end: now for an Active grant,
//! `status.endedAt` for an ended one (`expiresAt` for history written before `endedAt` existed,
//! which over-counts a grant cancelled or revoked early, never under-counts), and never past
//! `expiresAt`. Grants are merged as time intervals before they are summed: an extension's bindings
//! exist before its original's go, and that hand-over is counted once, as the time the requester
//! held the role.
//!
//! The verdict: usage inside `[now - per, now]` plus the duration asked for must not exceed
//! `maxElevated`. It is given only when a request is judged for activation; a running grant is
//! never ended by it.
use chrono::{DateTime, Duration, Utc};

use crate::api::{Budget, Eligibility, Phase, PrivilegedRole};
use crate::time::{duration_from_k8s, format_duration, from_k8s};

use super::extension::Related;
use super::lifecycle::Input;
use super::reasons;
use super::validation::{Grant, Refusal};

/// Where a budget is declared, as the refusal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Role(&'a str),
    Eligibility(&'a str),
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Role(name) => write!(f, "spec.budget of PrivilegedRole {name}"),
            Source::Eligibility(name) => write!(f, "spec.budget of Eligibility {name}"),
        }
    }
}

/// The request being judged, by whom, for which role, asking for how long.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Its own name, left out of its history (empty at admission, before it exists).
    pub request_name: &'a str,
    pub requester: &'a str,
    pub role: &'a str,
    pub duration: Duration,
}

/// The span during which a grant in `history` held the role, if it ever did.
pub fn elevation(
    request: &Related<'_>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let status = request.status;
    let start = from_k8s(status.activated_at.as_ref()?);
    let expires_at = status.expires_at.as_ref().map(from_k8s);
    let end = match status.phase? {
        Phase::Active => now,
        phase if phase.is_terminal() => status.ended_at.as_ref().map(from_k8s).or(expires_at)?,
        _ => return None,
    };
    // An overdue revocation removes the bindings a little late; the requester asked for no more
    // than `expiresAt`, and is not charged for the operator's lag.
    let end = expires_at.map_or(end, |at| end.min(at)).min(now);
    (end > start).then_some((start, end))
}

/// Elevated time of `ask.requester` on `ask.role` inside `[now - per, now]`, other requests than
/// `ask.request_name` only; overlapping grants count once.
pub fn used(history: &[Related<'_>], ask: &Ask<'_>, per: Duration, now: DateTime<Utc>) -> Duration {
    let window_start = now - per;
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = history
        .iter()
        .filter(|r| r.name != ask.request_name && r.spec.role == ask.role)
        .filter(|r| r.spec.requester.as_ref().map(|q| q.username.as_str()) == Some(ask.requester))
        .filter_map(|r| elevation(r, now))
        .map(|(start, end)| (start.max(window_start), end))
        .filter(|(start, end)| end > start)
        .collect();
    spans.sort();
    let mut total = Duration::zero();
    let mut open: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for (start, end) in spans {
        open = match open {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = open {
        total += e - s;
    }
    total
}

/// Does `ask` fit `budget`? The refusal names the usage, the cap, the window and where the budget
/// is declared.
pub fn verdict(
    budget: &Budget,
    source: Source<'_>,
    ask: &Ask<'_>,
    history: &[Related<'_>],
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let max = duration_from_k8s(&budget.max_elevated);
    let per = duration_from_k8s(&budget.per);
    let used = used(history, ask, per, now);
    if used + ask.duration <= max {
        return Ok(());
    }
    Err(Refusal {
        reason: reasons::BUDGET_EXCEEDED,
        message: format!(
            "{} used {} of {} in the last {} on role {}; this request asks for {} (budget: {source})",
            ask.requester,
            short(used),
            short(max),
            short(per),
            ask.role,
            short(ask.duration)
        ),
    })
}

/// Checks every budget a grant is subject to: the role's, then the eligibilities'. Several
/// eligibilities may allow the same grant, and it may rest on any of them: an eligibility budget
/// refuses only when every allowing eligibility has a budget and none has room (the first by name
/// is reported). `eligibilities` may include others; those not in `grant.eligibilities` are
/// ignored.
pub fn check(
    ask: &Ask<'_>,
    role: &PrivilegedRole,
    grant: &Grant,
    eligibilities: &[&Eligibility],
    history: &[Related<'_>],
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if let Some(budget) = &role.spec.budget {
        verdict(budget, Source::Role(ask.role), ask, history, now)?;
    }
    let mut allowing: Vec<(&str, Option<&Budget>)> = eligibilities
        .iter()
        .filter_map(|e| {
            let name = e.metadata.name.as_deref()?;
            grant
                .eligibilities
                .iter()
                .any(|g| g == name)
                .then_some((name, e.spec.budget.as_ref()))
        })
        .collect();
    allowing.sort_by_key(|(name, _)| *name);
    allowing.dedup_by_key(|(name, _)| *name);
    if allowing.iter().any(|(_, budget)| budget.is_none()) {
        return Ok(());
    }
    let mut first_refusal = None;
    for (name, budget) in allowing {
        let Some(budget) = budget else { continue };
        match verdict(budget, Source::Eligibility(name), ask, history, now) {
            Ok(()) => return Ok(()),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    first_refusal.map_or(Ok(()), Err)
}

/// [`check`] for the request [`super::lifecycle::decide`] judges for activation, against the
/// history its input carries.
pub fn check_pending(
    input: &Input<'_>,
    requester: &str,
    role: &PrivilegedRole,
    grant: &Grant,
) -> Result<(), Refusal> {
    let ask = Ask {
        request_name: input.request_name,
        requester,
        role: &input.spec.role,
        duration: grant.duration,
    };
    check(
        &ask,
        role,
        grant,
        input.eligibilities,
        input.history,
        input.now,
    )
}

/// `7d`, `8h`, `7h10m`, `1m30s`: durations as a person reads them (days included, zero parts
/// left out). Sub-second values keep Go's notation.
pub fn short(duration: Duration) -> String {
    if duration.subsec_nanos() != 0 || duration <= Duration::zero() {
        return format_duration(duration);
    }
    let total = duration.num_seconds();
    let parts = [
        (total / 86_400, "d"),
        (total / 3600 % 24, "h"),
        (total / 60 % 60, "m"),
        (total % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}
