//! Extending an active grant (`spec.extends`), through the real `decide`, on a fixed clock.
use super::builders::*;
use crate::api::{ActivationRequestSpec, ActivationRequestStatus, Phase, PrivilegedRole};
use crate::policy::extension::max_continuous;
use crate::policy::lifecycle::Step;
use crate::policy::reasons;

const ORIGINAL: &str = "alice-payments-1";
const EXTENSION: &str = "alice-payments-2";

/// `payments-admin`: ClusterRole `admin` in `payments` and `billing`, one approval by bob, 1h by
/// default, 4h at most (so 12h continuous by default).
fn payments_admin() -> PrivilegedRole {
    role("payments-admin")
        .cluster_role("admin")
        .namespaces(&["payments", "billing"])
        .approvers(&["bob"], &[])
}

fn alice_asks(namespaces: &[&str]) -> ActivationRequestSpec {
    request("payments-admin")
        .by(&user("alice"))
        .namespaces(namespaces)
}

/// Alice's original grant: active from t0 until t0+60m, in payments and billing.
fn original() -> (ActivationRequestSpec, ActivationRequestStatus) {
    (
        alice_asks(&["payments", "billing"]),
        fresh()
            .approvals(&[approved_by("bob")])
            .active(at(0), at(60)),
    )
}

/// Alice's extension of it, created at t0+50m.
fn extension(spec: ActivationRequestSpec, role: PrivilegedRole) -> World {
    let (o_spec, o_status) = original();
    let mut w = world(
        EXTENSION,
        spec.extends(ORIGINAL),
        role,
        // mallory is eligible too: what refuses her is the extension rule, not eligibility.
        &[eligibility("alice-payments", "payments-admin").users(&["alice", "mallory"])],
    )
    .original(ORIGINAL, o_spec, o_status);
    w.created_at = at(50);
    w
}

#[track_caller]
fn refused(step: &Step, reason: &str) -> String {
    match step {
        Step::End {
            phase: Phase::Denied,
            reason: r,
            message,
        } if *r == reason => message.clone(),
        other => panic!("want Denied {reason}, got {other:?}"),
    }
}

#[test]
fn an_approved_extension_runs_on_from_the_originals_expiry() {
    let w = extension(alice_asks(&["payments"]), payments_admin())
        .status(fresh().approvals(&[approved_by("bob")]));
    let Step::Activate {
        activation,
        continuous_since,
        ..
    } = w.decide_at(at(55))
    else {
        panic!("not activated: {:?}", w.decide_at(at(55)));
    };
    assert_eq!(
        activation.activated_at,
        at(55),
        "its bindings exist from now"
    );
    assert_eq!(
        activation.expires_at,
        at(120),
        "one hour after the original's expiry"
    );
    assert_eq!(continuous_since, Some(at(0)));
}

#[test]
fn an_extension_waits_for_its_approvals_like_any_request() {
    let w = extension(alice_asks(&["payments"]), payments_admin());
    assert!(
        matches!(
            w.decide_at(at(51)),
            Step::Wait {
                phase: Phase::Pending,
                ..
            }
        ),
        "{:?}",
        w.decide_at(at(51))
    );
    // The role may ask fewer (or more) approvals of an extension.
    let lenient = payments_admin().with(|s| s.approval.extension_required_approvals = Some(0));
    let w = extension(alice_asks(&["payments"]), lenient);
    assert!(matches!(w.decide_at(at(51)), Step::Activate { .. }));
}

#[test]
fn an_extension_that_does_not_fit_its_original_is_refused() {
    let role = payments_admin();
    let cases: [(World, &str, &str); 5] = [
        (
            extension(alice_asks(&["payments"]), role.clone()).with_original(None),
            reasons::NOTHING_TO_EXTEND,
            "does not exist",
        ),
        (
            extension(
                request("payments-admin")
                    .by(&user("mallory"))
                    .namespaces(&["payments"]),
                role.clone(),
            ),
            reasons::EXTENSION_NOT_ALLOWED,
            "was requested by alice",
        ),
        (
            extension(
                alice_asks(&["payments", "orders"]),
                role.clone().namespaces(&["payments", "billing", "orders"]),
            ),
            reasons::EXTENSION_NOT_ALLOWED,
            "namespace orders is not granted by alice-payments-1",
        ),
        (
            extension(alice_asks(&["payments"]), role.clone()).with_original_status(
                fresh()
                    .approvals(&[approved_by("bob")])
                    .phase(Phase::Expired),
            ),
            reasons::NOTHING_TO_EXTEND,
            "is Expired",
        ),
        (
            extension(alice_asks(&["payments"]), role.clone())
                .with_original_status(fresh().phase(Phase::Pending)),
            reasons::NOTHING_TO_EXTEND,
            "is Pending",
        ),
    ];
    for (w, reason, says) in cases {
        let message = refused(&w.decide_at(at(55)), reason);
        assert!(message.contains(says), "{message}");
    }
}

#[test]
fn an_original_that_ran_out_before_approval_leaves_nothing_to_extend() {
    let w = extension(alice_asks(&["payments"]), payments_admin())
        .status(fresh().approvals(&[approved_by("bob")]));
    // The cache still says Active, but its time is up: never a fresh activation in disguise.
    let message = refused(&w.decide_at(at(61)), reasons::NOTHING_TO_EXTEND);
    assert!(message.contains("request a fresh activation"), "{message}");
}

#[test]
fn continuous_elevation_is_capped_with_the_numbers() {
    let role = payments_admin().with(|s| s.max_continuous_duration = Some(k8s_duration("90m")));
    let w = extension(alice_asks(&["payments"]), role);
    // 0..60 original, then 60..120: 2h > 90m.
    let message = refused(&w.decide_at(at(51)), reasons::CONTINUOUS_DURATION_TOO_LONG);
    assert!(message.contains("for 2h0m0s"), "{message}");
    assert!(message.contains("allows 1h30m0s"), "{message}");
    assert!(message.contains("at most 30m0s more"), "{message}");
    // Asking for what fits is fine.
    let w = extension(
        alice_asks(&["payments"]).duration("30m"),
        payments_admin().with(|s| s.max_continuous_duration = Some(k8s_duration("90m"))),
    );
    assert!(matches!(w.decide_at(at(51)), Step::Wait { .. }));
}

#[test]
fn the_default_cap_is_three_max_durations_at_most_a_day() {
    assert_eq!(
        max_continuous(&payments_admin().spec),
        chrono::TimeDelta::hours(12)
    );
    let long = payments_admin().max_duration("10h");
    assert_eq!(max_continuous(&long.spec), chrono::TimeDelta::hours(24));
}

#[test]
fn the_original_hands_over_once_its_extension_is_active() {
    let (spec, status) = original();
    let w = world(
        ORIGINAL,
        spec,
        payments_admin(),
        &[eligibility("alice-payments", "payments-admin").users(&["alice"])],
    )
    .status(status);
    assert!(matches!(w.decide_at(at(55)), Step::KeepActive { .. }));
    // A pending extension changes nothing.
    let pending = w.clone().successor(
        EXTENSION,
        alice_asks(&["payments"]).extends(ORIGINAL),
        fresh().phase(Phase::Pending),
    );
    assert!(matches!(pending.decide_at(at(55)), Step::KeepActive { .. }));
    // Active: the original ends, naming its successor.
    let active = w.clone().successor(
        EXTENSION,
        alice_asks(&["payments"]).extends(ORIGINAL),
        fresh().active(at(55), at(120)),
    );
    let Step::End {
        phase: Phase::Expired,
        reason,
        message,
    } = active.decide_at(at(55))
    else {
        panic!("not handed over: {:?}", active.decide_at(at(55)));
    };
    assert_eq!(reason, reasons::EXTENDED);
    assert!(
        message.starts_with("extended by alice-payments-2 until"),
        "{message}"
    );
    // Someone else's "extension" is no hand-over.
    let forged = w.successor(
        EXTENSION,
        request("payments-admin")
            .by(&user("mallory"))
            .namespaces(&["payments"])
            .extends(ORIGINAL),
        fresh().active(at(55), at(120)),
    );
    assert!(matches!(forged.decide_at(at(55)), Step::KeepActive { .. }));
}

trait Related {
    fn with_original(
        self,
        original: Option<(String, ActivationRequestSpec, ActivationRequestStatus)>,
    ) -> Self;
    fn with_original_status(self, status: ActivationRequestStatus) -> Self;
}

impl Related for World {
    fn with_original(
        mut self,
        original: Option<(String, ActivationRequestSpec, ActivationRequestStatus)>,
    ) -> Self {
        self.original = original;
        self
    }
    fn with_original_status(mut self, status: ActivationRequestStatus) -> Self {
        if let Some(original) = self.original.as_mut() {
            original.2 = status;
        }
        self
    }
}
