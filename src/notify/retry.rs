//! When to try a delivery again, and how long to wait. Pure: the clock and the dice are
//! parameters.
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;

/// Attempts, backoff and time-out of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Backoff before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Ceiling of the backoff, and of an honoured `Retry-After`.
    pub max_backoff: Duration,
    /// Limit on one attempt: connect, send and read the response.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 0.5 s doubling to 30 s at most, 5 s per attempt.
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What one attempt's outcome means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt; `after` is the receiver's `Retry-After`, if it sent one.
    Retry {
        after: Option<Duration>,
    },
    /// Retrying will not help (a 4xx other than 429, a redirect).
    GiveUp,
}

/// 2xx delivers; 429 and 5xx are retried (honouring `Retry-After`); anything else is final.
pub fn classify(status: StatusCode, retry_after: Option<&str>, now: DateTime<Utc>) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Verdict::Retry {
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
        }
    } else {
        Verdict::GiveUp
    }
}

/// `Retry-After` as delta-seconds or an HTTP date; a date in the past means "now".
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The wait before retry number `retry` (1 for the first retry). Exponential backoff with
/// "equal jitter": half the step is fixed, half random (`jitter` in `[0, 1)`), so retries of
/// many notifications spread out but never come sooner than half the step. A `Retry-After`
/// replaces the backoff, capped at `max_backoff`.
pub fn delay(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(policy.max_backoff);
    }
    let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(30));
    let step = policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff);
    step / 2 + step.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// A random number in `[0, 1)` for jitter, from the standard library's randomly keyed hasher
/// (no random-number crate needed for this).
pub fn random_jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
