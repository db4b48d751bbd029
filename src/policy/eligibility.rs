//! Time-bound eligibility windows.
use chrono::{DateTime, Utc};

use crate::api::EligibilitySpec;
use crate::time::from_k8s;

/// Where `now` falls relative to an eligibility's `[notBefore, notAfter)` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EligibilityWindow {
    /// Starts at the given time.
    NotYetValid(DateTime<Utc>),
    /// Valid now; ends at the given time if bounded.
    Within(Option<DateTime<Utc>>),
    /// Ended at the given time.
    Expired(DateTime<Utc>),
}

impl EligibilityWindow {
    pub fn is_within(self) -> bool {
        matches!(self, Self::Within(_))
    }

    /// The next instant at which the state changes, if any: when to look again.
    pub fn next_change(self) -> Option<DateTime<Utc>> {
        match self {
            Self::NotYetValid(at) => Some(at),
            Self::Within(until) => until,
            Self::Expired(_) => None,
        }
    }
}

/// `notBefore` is inclusive, `notAfter` exclusive.
pub fn window_state(spec: &EligibilitySpec, now: DateTime<Utc>) -> EligibilityWindow {
    let not_before = spec.not_before.as_ref().map(from_k8s);
    let not_after = spec.not_after.as_ref().map(from_k8s);
    match (not_before, not_after) {
        (Some(start), _) if now < start => EligibilityWindow::NotYetValid(start),
        (_, Some(end)) if now >= end => EligibilityWindow::Expired(end),
        (_, end) => EligibilityWindow::Within(end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SubjectRef;
    use crate::time::to_k8s;
    use chrono::TimeZone;

    fn spec(nb: Option<i64>, na: Option<i64>) -> EligibilitySpec {
        let at = |s: i64| to_k8s(Utc.timestamp_opt(s, 0).unwrap());
        EligibilitySpec {
            role: "r".into(),
            subjects: vec![SubjectRef::user("alice")],
            namespaces: vec![],
            max_duration: None,
            not_before: nb.map(at),
            not_after: na.map(at),
            budget: None,
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[test]
    fn table() {
        let cases = [
            (None, None, 50, EligibilityWindow::Within(None)),
            (Some(100), None, 99, EligibilityWindow::NotYetValid(t(100))),
            (Some(100), None, 100, EligibilityWindow::Within(None)),
            (
                None,
                Some(200),
                199,
                EligibilityWindow::Within(Some(t(200))),
            ),
            (None, Some(200), 200, EligibilityWindow::Expired(t(200))),
            (
                Some(100),
                Some(200),
                150,
                EligibilityWindow::Within(Some(t(200))),
            ),
            (
                Some(100),
                Some(200),
                50,
                EligibilityWindow::NotYetValid(t(100)),
            ),
            (
                Some(100),
                Some(200),
                250,
                EligibilityWindow::Expired(t(200)),
            ),
        ];
        for (nb, na, now, want) in cases {
            assert_eq!(
                window_state(&spec(nb, na), t(now)),
                want,
                "nb={nb:?} na={na:?} now={now}"
            );
        }
    }

    #[test]
    fn next_change() {
        assert_eq!(
            window_state(&spec(Some(100), Some(200)), t(50)).next_change(),
            Some(t(100))
        );
        assert_eq!(
            window_state(&spec(Some(100), Some(200)), t(150)).next_change(),
            Some(t(200))
        );
        assert_eq!(window_state(&spec(None, None), t(150)).next_change(), None);
        assert_eq!(
            window_state(&spec(None, Some(200)), t(250)).next_change(),
            None
        );
    }
}

/// The Eligibility's `Active` condition: within its window and naming a PrivilegedRole that
/// exists.
pub fn active_condition(
    window: &EligibilityWindow,
    role: &str,
    role_exists: bool,
) -> super::role_readiness::ConditionState {
    use super::reasons;
    let (status, reason, message) = match window {
        _ if !role_exists => (
            false,
            reasons::ROLE_NOT_FOUND,
            format!("PrivilegedRole {role} does not exist"),
        ),
        EligibilityWindow::NotYetValid(at) => (
            false,
            reasons::NOT_YET_VALID,
            format!("valid from {}", at.to_rfc3339()),
        ),
        EligibilityWindow::Expired(at) => (
            false,
            reasons::EXPIRED,
            format!("ended at {}", at.to_rfc3339()),
        ),
        EligibilityWindow::Within(Some(until)) => (
            true,
            reasons::WITHIN_WINDOW,
            format!("valid until {}", until.to_rfc3339()),
        ),
        EligibilityWindow::Within(None) => (
            true,
            reasons::WITHIN_WINDOW,
            "valid without end".to_string(),
        ),
    };
    super::role_readiness::ConditionState {
        status,
        reason,
        message,
    }
}

#[cfg(test)]
mod active_condition_tests {
    use super::*;
    use crate::policy::reasons;
    use chrono::TimeZone;

    #[test]
    fn the_active_condition_for_every_window() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        let cases = [
            (
                EligibilityWindow::Within(None),
                true,
                (
                    true,
                    reasons::WITHIN_WINDOW,
                    "valid without end".to_string(),
                ),
            ),
            (
                EligibilityWindow::Within(Some(t)),
                true,
                (
                    true,
                    reasons::WITHIN_WINDOW,
                    "valid until 2026-03-02T10:00:00+00:00".to_string(),
                ),
            ),
            (
                EligibilityWindow::NotYetValid(t),
                true,
                (
                    false,
                    reasons::NOT_YET_VALID,
                    "valid from 2026-03-02T10:00:00+00:00".to_string(),
                ),
            ),
            (
                EligibilityWindow::Expired(t),
                true,
                (
                    false,
                    reasons::EXPIRED,
                    "ended at 2026-03-02T10:00:00+00:00".to_string(),
                ),
            ),
            // A missing role wins over any window.
            (
                EligibilityWindow::Within(None),
                false,
                (
                    false,
                    reasons::ROLE_NOT_FOUND,
                    "PrivilegedRole db-admin does not exist".to_string(),
                ),
            ),
            (
                EligibilityWindow::Expired(t),
                false,
                (
                    false,
                    reasons::ROLE_NOT_FOUND,
                    "PrivilegedRole db-admin does not exist".to_string(),
                ),
            ),
        ];
        for (window, exists, (status, reason, message)) in cases {
            let c = active_condition(&window, "db-admin", exists);
            assert_eq!(
                (c.status, c.reason, c.message),
                (status, reason, message),
                "{window:?}"
            );
        }
    }
}
