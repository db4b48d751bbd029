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
