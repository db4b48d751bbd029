//! The one place where kubepim's chrono time meets k8s-openapi's `jiff` timestamps.
//!
//! Kubernetes `Time` is serialised at whole-second precision, so every instant kubepim persists
//! is truncated to the second *before* it is used for scheduling: what is in memory is what is
//! stored, and a grant can only end early by a fraction of a second, never late.
use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

/// Converts a Kubernetes timestamp into chrono.
pub fn from_k8s(time: &Time) -> DateTime<Utc> {
    from_jiff(time.0)
}

/// Converts a Kubernetes micro-timestamp into chrono.
pub fn from_k8s_micro(time: &MicroTime) -> DateTime<Utc> {
    from_jiff(time.0)
}

fn from_jiff(ts: Timestamp) -> DateTime<Utc> {
    Utc.timestamp_opt(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Converts chrono into a Kubernetes timestamp (whole seconds; sub-second part dropped).
pub fn to_k8s(time: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(time.timestamp()).unwrap_or(Timestamp::MIN))
}

/// Converts chrono into a Kubernetes micro-timestamp.
pub fn to_k8s_micro(time: DateTime<Utc>) -> MicroTime {
    let micros = time.timestamp_micros();
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::MIN))
}

/// Drops the sub-second part, as persisting a `Time` does.
pub fn truncate_to_second(time: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(time.timestamp(), 0)
        .single()
        .unwrap_or(time)
}

/// Converts a Kubernetes duration into chrono; negative or overflowing values become zero or
/// the maximum, which the schema rules out anyway.
pub fn duration_from_k8s(duration: &kube::core::Duration) -> chrono::Duration {
    if duration.is_negative() {
        return chrono::Duration::zero();
    }
    let std: std::time::Duration = (*duration).into();
    chrono::Duration::from_std(std).unwrap_or(chrono::Duration::MAX)
}

/// Formats a duration the way Go (and so `kubectl` and users) write it: `1h30m0s`, `45s`.
///
/// `kube::core::Duration`'s `Display` prints total seconds (`5400s`), which is hard to compare
/// with the `4h` a user wrote. Negative durations print as `0s`.
pub fn format_duration(duration: chrono::Duration) -> String {
    let std = duration.to_std().unwrap_or_default();
    let total = std.as_secs();
    if std.is_zero() {
        return "0s".into();
    }
    if total == 0 {
        // Below a second Go switches to ms/µs/ns, as `std::time::Duration`'s Debug does.
        return kube::core::Duration::from(std).to_string();
    }
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let seconds = match std.subsec_nanos() {
        0 => format!("{seconds}s"),
        nanos => format!("{seconds}.{}s", format!("{nanos:09}").trim_end_matches('0')),
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, _) => format!("{minutes}m{seconds}"),
        _ => format!("{hours}h{minutes}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_second_precision() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 22, 0, 5).unwrap()
            + chrono::Duration::milliseconds(700);
        let back = from_k8s(&to_k8s(t));
        assert_eq!(back, truncate_to_second(t));
        assert!(back <= t);
        assert_eq!(
            serde_json::to_string(&to_k8s(t)).unwrap(),
            "\"2026-12-01T22:00:05Z\""
        );
    }

    #[test]
    fn micro_time_keeps_microseconds() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 22, 0, 5).unwrap()
            + chrono::Duration::microseconds(123_456);
        assert_eq!(from_k8s_micro(&to_k8s_micro(t)), t);
    }

    #[test]
    fn durations_convert_and_print_go_style() {
        let d: kube::core::Duration = "1h30m".parse().unwrap();
        assert_eq!(duration_from_k8s(&d), chrono::Duration::minutes(90));
        assert_eq!(format_duration(chrono::Duration::minutes(90)), "1h30m0s");
        assert_eq!(format_duration(chrono::Duration::hours(8)), "8h0m0s");
        assert_eq!(format_duration(chrono::Duration::seconds(45)), "45s");
        assert_eq!(format_duration(chrono::Duration::seconds(61)), "1m1s");
        assert_eq!(
            format_duration(chrono::Duration::milliseconds(1500)),
            "1.5s"
        );
        assert_eq!(
            format_duration(chrono::Duration::milliseconds(500)),
            "500ms"
        );
        assert_eq!(format_duration(chrono::Duration::zero()), "0s");
        assert_eq!(format_duration(chrono::Duration::seconds(-5)), "0s");
        let neg: kube::core::Duration = "-5m".parse().unwrap();
        assert_eq!(duration_from_k8s(&neg), chrono::Duration::zero());
    }
}

/// Where "now" comes from: the system clock in the operator, a fixed instant that tests move by
/// hand, so that what a reconciler wrote can be compared exactly.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    fixed: Option<std::sync::Arc<std::sync::Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock that stands at `at` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self {
            fixed: Some(std::sync::Arc::new(std::sync::Mutex::new(at))),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.fixed {
            Some(at) => at.lock().map(|at| *at).unwrap_or_else(|p| *p.into_inner()),
            None => Utc::now(),
        }
    }

    /// Moves a fixed clock to `at` (no effect on the system clock).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(fixed) = &self.fixed
            && let Ok(mut now) = fixed.lock()
        {
            *now = at;
        }
    }

    /// Moves a fixed clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        self.set(self.now() + by);
    }
}

/// Parses `30s`, `5m`, `1h30m` (Go's duration syntax, as the flags' defaults are written).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<kube::core::Duration>()
        .map(Into::into)
        .map_err(|e| e.to_string())
}
