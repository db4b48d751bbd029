use std::time::Instant;

use chrono::{TimeZone, Utc};
use http::StatusCode;

use super::super::notifier::DropLog;
use super::super::retry::{Verdict, classify, delay, parse_retry_after, random_jitter};
use super::super::secret::{SecretUrl, scrub_urls};
use super::*;

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 5, 1, 10, 0, 0).unwrap()
}

#[test]
fn success_delivers_429_and_5xx_retry_other_codes_give_up() {
    let retry = Verdict::Retry { after: None };
    for (code, verdict) in [
        (200, Verdict::Delivered),
        (204, Verdict::Delivered),
        (429, retry.clone()),
        (500, retry.clone()),
        (502, retry.clone()),
        (503, retry.clone()),
        (400, Verdict::GiveUp),
        (401, Verdict::GiveUp),
        (403, Verdict::GiveUp),
        (404, Verdict::GiveUp),
        (410, Verdict::GiveUp),
        (301, Verdict::GiveUp),
    ] {
        let status = StatusCode::from_u16(code).unwrap();
        assert_eq!(classify(status, None, now()), verdict, "{code}");
    }
    assert_eq!(
        classify(StatusCode::TOO_MANY_REQUESTS, Some("7"), now()),
        Verdict::Retry {
            after: Some(Duration::from_secs(7))
        }
    );
    // Retry-After on a final answer does not make it retryable.
    assert_eq!(
        classify(StatusCode::BAD_REQUEST, Some("7"), now()),
        Verdict::GiveUp
    );
}

#[test]
fn retry_after_is_seconds_or_an_http_date() {
    assert_eq!(
        parse_retry_after("120", now()),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Thu, 01 May 2025 10:00:30 GMT", now()),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Thu, 01 May 2025 09:00:00 GMT", now()),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now()), None);
    assert_eq!(parse_retry_after("-5", now()), None);
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.attempts, 5);
    assert_eq!(policy.timeout, Duration::from_secs(5));
    let ms = |retry, jitter| delay(&policy, retry, None, jitter).as_millis();
    // Half the step is fixed, half random.
    assert_eq!(ms(1, 0.0), 250);
    assert_eq!(ms(1, 0.999_999), 499);
    assert_eq!(ms(2, 0.0), 500);
    assert_eq!(ms(3, 0.0), 1000);
    assert_eq!(ms(4, 0.5), 3000);
    // 0.5 s · 2^6 = 32 s is over the 30 s cap.
    assert_eq!(ms(7, 0.0), 15_000);
    assert!(ms(7, 0.999_999) < 30_000);
    assert!(ms(100, 0.999_999) < 30_000);
    // Retry-After replaces the backoff, up to the cap.
    assert_eq!(
        delay(&policy, 1, Some(Duration::from_secs(3)), 0.7),
        Duration::from_secs(3)
    );
    assert_eq!(
        delay(&policy, 1, Some(Duration::from_secs(3600)), 0.7),
        Duration::from_secs(30)
    );
}

#[test]
fn jitter_is_in_range_and_varies() {
    let samples: Vec<f64> = (0..64).map(|_| random_jitter()).collect();
    assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
    let first = samples[0];
    assert!(samples.iter().any(|j| *j != first));
}

#[test]
fn drops_are_logged_at_most_once_per_interval_with_the_count() {
    let log = DropLog::new(Duration::from_secs(10));
    let t0 = Instant::now();
    assert_eq!(log.record(t0), Some(1));
    for i in 1..50 {
        assert_eq!(log.record(t0 + Duration::from_millis(i * 100)), None);
    }
    assert_eq!(log.record(t0 + Duration::from_secs(10)), Some(50));
    assert_eq!(log.record(t0 + Duration::from_secs(11)), None);
    assert_eq!(log.take_unreported(), 1);
    assert_eq!(log.take_unreported(), 0);
}

#[test]
fn urls_show_only_scheme_and_host() {
    let url = SecretUrl::parse("https://user:pw@hooks.slack.com:8443/services/T0/B0/XSECRETX?q=1")
        .unwrap();
    assert_eq!(url.to_string(), "https://hooks.slack.com:8443");
    assert_eq!(
        format!("{url:?}"),
        "SecretUrl(https://hooks.slack.com:8443/[redacted])"
    );
    let foreign = "error sending request for url (https://user:pw@hooks.slack.com:8443/services/T0/B0/XSECRETX?q=1): \
                   path /services/T0/B0/XSECRETX?q=1 not found; user pw";
    let redacted = url.redact(foreign);
    assert!(!redacted.contains("XSECRETX"), "{redacted}");
    assert!(!redacted.contains("user:pw"), "{redacted}");
    assert!(redacted.contains("hooks.slack.com"), "{redacted}");

    assert_eq!(
        scrub_urls("invalid type: string \"https://hooks.slack.com/services/XSECRETX\", expected"),
        "invalid type: string \"https://hooks.slack.com/[redacted]\", expected"
    );
    assert_eq!(
        scrub_urls("at http://a:b@example.com:80/p?x#y end"),
        "at http://example.com:80/[redacted] end"
    );
}
