//! `decide(&Input) -> Step`: every transition of the request lifecycle, with a fixed clock.
use chrono::{DateTime, TimeDelta, Utc};

use super::builders::*;
use crate::api::{Eligibility, Phase, PrivilegedRole, Requester};
use crate::policy::identity::requester_subject;
use crate::policy::lifecycle::{Activation, BindingKind, Step, binding_name};
use crate::policy::reasons;
use crate::time::format_duration;

const REQ: &str = "alice-payments-1";

fn alice() -> Requester {
    user("alice")
}

/// `payments-admin`: ClusterRole `admin` in `payments`, one approval by bob or an sre-lead.
fn payments_admin() -> PrivilegedRole {
    role("payments-admin")
        .cluster_role("admin")
        .namespaces(&["payments"])
        .approvers(&["bob"], &["sre-leads"])
}

fn alice_eligible() -> Eligibility {
    eligibility("alice-payments", "payments-admin").users(&["alice"])
}

/// Alice asks for payments-admin for 1h (the default), created at t0; nothing approved yet.
fn alice_asks() -> World {
    world(
        REQ,
        request("payments-admin").by(&alice()),
        payments_admin(),
        &[alice_eligible()],
    )
}

fn approved() -> crate::api::ActivationRequestStatus {
    fresh()
        .phase(Phase::Pending)
        .approvals(&[approved_by("bob")])
}

/// Alice's grant as the controller recorded it: active from t0+5m for 1h.
fn alice_active() -> World {
    let w = alice_asks().status(approved());
    let Step::Activate {
        activation,
        bindings,
        ..
    } = w.decide_at(at(5))
    else {
        panic!("setup: not activated")
    };
    assert_eq!(
        activation,
        Activation {
            activated_at: at(5),
            expires_at: at(65)
        }
    );
    w.status(
        approved()
            .active(activation.activated_at, activation.expires_at)
            .bindings(&refs(&bindings)),
    )
    .observed(as_observed(&bindings, activation.expires_at))
}

#[track_caller]
fn assert_end(step: &Step, phase: Phase, reason: &str) -> String {
    match step {
        Step::End {
            phase: p,
            reason: r,
            message,
        } if *p == phase && *r == reason => message.clone(),
        other => panic!("want End {phase} {reason}, got {other:?}"),
    }
}

#[track_caller]
fn assert_wait(step: &Step, phase: Phase, wake: DateTime<Utc>) -> String {
    match step {
        Step::Wait {
            phase: p,
            wake: w,
            message,
            ..
        } if *p == phase && *w == Some(wake) => message.clone(),
        other => panic!("want Wait {phase} until {wake}, got {other:?}"),
    }
}

#[track_caller]
fn assert_activate(
    step: &Step,
    activated_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    reason: &str,
) {
    match step {
        Step::Activate {
            activation,
            reason: r,
            ..
        } if *activation
            == (Activation {
                activated_at,
                expires_at,
            })
            && *r == reason => {}
        other => panic!("want Activate {activated_at}..{expires_at} ({reason}), got {other:?}"),
    }
}

#[track_caller]
fn assert_keep(step: &Step, expires_at: DateTime<Utc>, wake: DateTime<Utc>) {
    match step {
        Step::KeepActive {
            activation,
            wake: w,
            ..
        } if activation.expires_at == expires_at && *w == wake => {}
        other => panic!("want KeepActive until {expires_at} waking {wake}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Ends before anything is weighed

#[test]
fn terminal_phases_are_settled() {
    for phase in [
        Phase::Expired,
        Phase::Denied,
        Phase::Cancelled,
        Phase::Revoked,
        Phase::Failed,
    ] {
        let w = alice_asks().status(approved().phase(phase));
        assert_eq!(w.decide_at(at(5)), Step::Settled, "{phase}");
        // Even with leftovers observed, a terminal request is never reactivated.
        let w = alice_active().status(approved().active(at(5), at(65)).phase(phase));
        assert_eq!(w.decide_at(at(6)), Step::Settled, "{phase} with bindings");
    }
}

#[test]
fn missing_requester_fails() {
    let mut w = alice_asks().status(approved());
    w.spec.requester = None;
    assert!(
        assert_end(
            &w.decide_at(at(1)),
            Phase::Failed,
            reasons::MISSING_REQUESTER
        )
        .contains("admission")
    );
    w.spec.requester = Some(user(""));
    assert_end(
        &w.decide_at(at(1)),
        Phase::Failed,
        reasons::MISSING_REQUESTER,
    );
}

#[test]
fn cancel_ends_pending_and_active() {
    let mut w = alice_asks();
    w.spec.cancel = true;
    let msg = assert_end(
        &w.decide_at(at(1)),
        Phase::Cancelled,
        reasons::CANCELLED_BY_REQUESTER,
    );
    assert_eq!(msg, "cancelled by alice");

    let mut w = alice_active();
    w.spec.cancel = true;
    assert_end(
        &w.decide_at(at(10)),
        Phase::Cancelled,
        reasons::CANCELLED_BY_REQUESTER,
    );
}

#[test]
fn missing_role_denies_pending_and_revokes_active() {
    let msg = assert_end(
        &alice_asks().without_role().decide_at(at(1)),
        Phase::Denied,
        reasons::ROLE_NOT_FOUND,
    );
    assert_eq!(msg, "PrivilegedRole payments-admin does not exist");
    assert_end(
        &alice_active().without_role().decide_at(at(10)),
        Phase::Revoked,
        reasons::ROLE_NOT_FOUND,
    );
}

// ---------------------------------------------------------------------------------------------
// Approvals

#[test]
fn authorised_denial_denies_pending_and_active() {
    let w = alice_asks().status(
        fresh()
            .phase(Phase::Pending)
            .approvals(&[denied_by("bob", "not during the freeze")]),
    );
    let msg = assert_end(
        &w.decide_at(at(1)),
        Phase::Denied,
        reasons::DENIED_BY_APPROVER,
    );
    assert_eq!(msg, "denied by bob: not during the freeze");

    // By group, after someone else approved.
    let w = alice_asks().status(fresh().approvals(&[
        approved_by("bob"),
        denied_by("carol", "no").in_groups(&["sre-leads"]),
    ]));
    assert_eq!(
        assert_end(
            &w.decide_at(at(1)),
            Phase::Denied,
            reasons::DENIED_BY_APPROVER
        ),
        "denied by carol: no"
    );

    // After activation: denied at once.
    let mut w = alice_active();
    w.status
        .approvals
        .push(denied_by("carol", "revoke").in_groups(&["sre-leads"]));
    assert_end(
        &w.decide_at(at(10)),
        Phase::Denied,
        reasons::DENIED_BY_APPROVER,
    );
}

#[test]
fn unauthorised_denials_are_ignored() {
    for denial in [
        denied_by("mallory", "no"),
        denied_by("alice", "changed my mind"),
        denied_by("system:serviceaccount:kube-system:robot", "no").in_groups(&["sre-leads"]),
    ] {
        let who = denial.approver.clone();
        let w = alice_asks().status(fresh().approvals(&[denial]));
        let msg = assert_wait(&w.decide_at(at(1)), Phase::Pending, at(24 * 60));
        assert!(msg.contains(&who), "{msg}");
        let w = w.status(
            fresh()
                .approvals(&[approved_by("bob")])
                .with(|s| s.approvals.insert(0, denied_by(&who, "x"))),
        );
        assert!(matches!(w.decide_at(at(1)), Step::Activate { .. }), "{who}");
    }
}

#[test]
fn pending_waits_for_approval_until_the_deadline() {
    let w = alice_asks();
    let msg = assert_wait(&w.decide_at(at(1)), Phase::Pending, at(24 * 60));
    assert_eq!(
        msg,
        "waiting for 1 more approval(s) from users [bob] or groups [sre-leads] until 2026-03-03T10:00:00+00:00"
    );
    // One second before the deadline it still waits; at the deadline it expires.
    assert_wait(
        &w.decide_at(at_s(24 * 3600 - 1)),
        Phase::Pending,
        at(24 * 60),
    );
    let msg = assert_end(
        &w.decide_at(at(24 * 60)),
        Phase::Expired,
        reasons::NOT_APPROVED,
    );
    assert_eq!(
        msg,
        format!(
            "not approved within {}: 0 of 1 approvals",
            format_duration(TimeDelta::hours(24))
        )
    );
    assert_end(
        &w.decide_at(at(48 * 60)),
        Phase::Expired,
        reasons::NOT_APPROVED,
    );

    // The deadline is persisted at whole seconds: a sub-second creation time rounds down.
    let mut w = alice_asks().with_role(payments_admin().pending_timeout("30m"));
    w.created_at = at(0) + TimeDelta::milliseconds(900);
    assert_wait(&w.decide_at(at(1)), Phase::Pending, at(30));
    assert_end(&w.decide_at(at(30)), Phase::Expired, reasons::NOT_APPROVED);
}

#[test]
fn pending_wakes_early_for_an_eligibility_change() {
    let w = alice_asks().eligibilities(&[alice_eligible().not_after(at(90))]);
    assert_wait(&w.decide_at(at(1)), Phase::Pending, at(90));
    // And when the window has ended, the pending request is denied.
    assert_end(
        &w.decide_at(at(90)),
        Phase::Denied,
        reasons::ELIGIBILITY_EXPIRED,
    );
}

#[test]
fn pending_message_names_what_did_not_count() {
    let w = alice_asks()
        .with_role(payments_admin().required_approvals(2))
        .status(fresh().approvals(&[
            approved_by("bob"),
            approved_by("bob"),
            approved_by("alice").in_groups(&["sre-leads"]),
            approved_by("system:serviceaccount:ci:bot").in_groups(&["sre-leads"]),
            approved_by("mallory"),
        ]));
    let msg = assert_wait(&w.decide_at(at(1)), Phase::Pending, at(24 * 60));
    assert!(msg.starts_with("waiting for 1 more approval(s)"), "{msg}");
    assert!(
        msg.ends_with(
            "; not counted: bob (duplicate), alice (own request), system:serviceaccount:ci:bot (ServiceAccount), mallory (not an approver of this role)"
        ),
        "{msg}"
    );
    let msg = assert_end(
        &w.decide_at(at(24 * 60)),
        Phase::Expired,
        reasons::NOT_APPROVED,
    );
    let want = format!(
        "not approved within {}: 1 of 2 approvals; not counted:",
        format_duration(TimeDelta::hours(24))
    );
    assert!(msg.starts_with(&want), "{msg}");
}

#[test]
fn quorum_needs_distinct_authorised_others() {
    let two = || alice_asks().with_role(payments_admin().required_approvals(2));
    let cases: Vec<(&str, Vec<crate::api::Approval>, bool)> = vec![
        ("one of two", vec![approved_by("bob")], false),
        (
            "the same approver twice",
            vec![approved_by("bob"), approved_by("bob")],
            false,
        ),
        (
            "the requester, even in an approver group",
            vec![
                approved_by("bob"),
                approved_by("alice").in_groups(&["sre-leads"]),
            ],
            false,
        ),
        (
            "a ServiceAccount, even in an approver group",
            vec![
                approved_by("bob"),
                approved_by("system:serviceaccount:ops:bot").in_groups(&["sre-leads"]),
            ],
            false,
        ),
        (
            "someone who is not an approver",
            vec![approved_by("bob"), approved_by("mallory")],
            false,
        ),
        (
            "a listed user and a group member",
            vec![
                approved_by("bob"),
                approved_by("carol").in_groups(&["sre-leads"]),
            ],
            true,
        ),
        (
            "two group members",
            vec![
                approved_by("dave").in_groups(&["sre-leads"]),
                approved_by("carol").in_groups(&["sre-leads"]),
            ],
            true,
        ),
    ];
    for (case, approvals, activates) in cases {
        let step = two().status(fresh().approvals(&approvals)).decide_at(at(1));
        assert_eq!(
            matches!(step, Step::Activate { .. }),
            activates,
            "{case}: {step:?}"
        );
        if !activates {
            assert_wait(&step, Phase::Pending, at(24 * 60));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activation

#[test]
fn quorum_met_activates_at_the_second() {
    let w = alice_asks().status(approved());
    let now = at(5) + TimeDelta::milliseconds(750);
    let step = w.decide_at(now);
    assert_activate(&step, at(5), at(65), reasons::APPROVED);
    let Step::Activate {
        bindings,
        tally,
        grant,
        ..
    } = &step
    else {
        unreachable!()
    };
    assert_eq!(tally.approved_by, vec!["bob"]);
    assert_eq!(grant.eligibilities, vec!["alice-payments"]);
    assert_eq!(bindings.len(), 1);
    let b = &bindings[0];
    assert_eq!(b.kind, BindingKind::RoleBinding);
    assert_eq!(b.namespace.as_deref(), Some("payments"));
    assert_eq!(b.name, "kubepim-alice-payments-1");
    assert_eq!(
        (b.role_kind, b.role_name.as_str()),
        (crate::api::RoleKind::ClusterRole, "admin")
    );
    assert_eq!(b.subject, requester_subject(&alice()));
    assert_eq!(step.wake_at(), Some(at(65)));
}

#[test]
fn explicit_duration_and_eligibility_end_cap_the_expiry() {
    let w = alice_asks().status(approved());
    let mut w2 = w.clone();
    w2.spec = w2.spec.duration("2h30m");
    assert_activate(&w2.decide_at(at(5)), at(5), at(155), reasons::APPROVED);

    // The eligibility ends in 40 minutes: the grant ends then, and wakes then.
    let w3 = w.eligibilities(&[alice_eligible().not_after(at(45))]);
    let step = w3.decide_at(at(5));
    assert_activate(&step, at(5), at(45), reasons::APPROVED);
    assert_eq!(step.wake_at(), Some(at(45)));

    // Two eligibilities: the grant may last until the later one ends, but is rechecked at the first.
    let w4 = w3.eligibilities(&[
        alice_eligible().not_after(at(20)),
        eligibility("alice-payments-2", "payments-admin")
            .users(&["alice"])
            .not_after(at(50)),
    ]);
    let step = w4.decide_at(at(5));
    assert_activate(&step, at(5), at(50), reasons::APPROVED);
    assert_eq!(step.wake_at(), Some(at(20)));
}

#[test]
fn no_approval_needed_activates_at_once() {
    let w = alice_asks().with_role(payments_admin().no_approval_required());
    assert_activate(
        &w.decide_at(at(1)),
        at(1),
        at(61),
        reasons::APPROVAL_NOT_REQUIRED,
    );
    let w = alice_asks().with_role(payments_admin().break_glass());
    assert_activate(&w.decide_at(at(1)), at(1), at(61), reasons::BREAK_GLASS);
    // breakGlass wins even where the schema would have required approvals.
    let w = alice_asks().with_role(payments_admin().break_glass().required_approvals(3));
    assert_activate(&w.decide_at(at(1)), at(1), at(61), reasons::BREAK_GLASS);
    // An authorised denial still denies a break-glass request.
    let w = w.status(fresh().approvals(&[denied_by("bob", "not an emergency")]));
    assert_end(
        &w.decide_at(at(1)),
        Phase::Denied,
        reasons::DENIED_BY_APPROVER,
    );
}

#[test]
fn start_at_in_the_future_schedules() {
    let mut w = alice_asks().status(approved());
    w.spec = w.spec.start_at(at(120));
    let msg = assert_wait(&w.decide_at(at(5)), Phase::Scheduled, at(120));
    assert_eq!(msg, "approved; activates at 2026-03-02T12:00:00+00:00");
    // Scheduled past the pending deadline: approval already happened, so no timeout.
    let mut late = w.clone();
    late.spec = late.spec.start_at(at(30 * 60));
    assert_wait(&late.decide_at(at(25 * 60)), Phase::Scheduled, at(30 * 60));
    // At startAt it activates from startAt.
    let w = w.status(approved().phase(Phase::Scheduled));
    assert_activate(&w.decide_at(at(120)), at(120), at(180), reasons::APPROVED);
    // Not approved yet: it is pending, not scheduled.
    let mut pending = alice_asks();
    pending.spec = pending.spec.start_at(at(120));
    assert_wait(&pending.decide_at(at(5)), Phase::Pending, at(24 * 60));
    // Judged at startAt: an eligibility ending before then refuses the request at once…
    let ends_early = w
        .clone()
        .eligibilities(&[alice_eligible().not_after(at(60))]);
    assert_end(
        &ends_early.decide_at(at(5)),
        Phase::Denied,
        reasons::ELIGIBILITY_EXPIRED,
    );
    // …and one opening before then is enough, though it is not open yet.
    let opens_later = w.eligibilities(&[alice_eligible().not_before(at(60))]);
    assert_wait(&opens_later.decide_at(at(5)), Phase::Scheduled, at(120));
    assert_activate(
        &opens_later.decide_at(at(120)),
        at(120),
        at(180),
        reasons::APPROVED,
    );
}

#[test]
fn start_at_in_the_past_activates_now() {
    let mut w = alice_asks().status(approved());
    w.spec = w.spec.start_at(at(-30));
    assert_activate(&w.decide_at(at(5)), at(5), at(65), reasons::APPROVED);
}

// ---------------------------------------------------------------------------------------------
// Active

#[test]
fn active_is_kept_until_it_expires() {
    let w = alice_active();
    assert_keep(&w.decide_at(at(6)), at(65), at(65));
    assert_keep(&w.decide_at(at_s(65 * 60 - 1)), at(65), at(65));
    let msg = assert_end(
        &w.decide_at(at(65)),
        Phase::Expired,
        reasons::DURATION_ELAPSED,
    );
    assert_eq!(msg, "grant ended at 2026-03-02T11:05:00+00:00");
    assert_end(
        &w.decide_at(at(600)),
        Phase::Expired,
        reasons::DURATION_ELAPSED,
    );
}

#[test]
fn active_wakes_for_the_eligibility_recheck() {
    // Two eligibilities; the first ends before the grant does: look again then.
    let w = alice_active().eligibilities(&[
        alice_eligible().not_after(at(30)),
        eligibility("alice-payments-2", "payments-admin").users(&["alice"]),
    ]);
    assert_keep(&w.decide_at(at(6)), at(65), at(30));
    // At the recheck the other still allows it: kept, now until the expiry.
    assert_keep(&w.decide_at(at(30)), at(65), at(65));
}

#[test]
fn active_is_revoked_when_the_eligibility_goes() {
    let w = alice_active();
    let cases: Vec<(&str, Vec<Eligibility>, &str)> = vec![
        ("eligibility removed", vec![], reasons::NOT_ELIGIBLE),
        (
            "eligibility now names someone else",
            vec![eligibility("alice-payments", "payments-admin").users(&["bob"])],
            reasons::NOT_ELIGIBLE,
        ),
        (
            "eligibility narrowed to other namespaces",
            vec![alice_eligible().namespaces(&["billing"])],
            reasons::NAMESPACE_OUTSIDE_SCOPE,
        ),
        (
            "eligibility maximum lowered",
            vec![alice_eligible().max_duration("30m")],
            reasons::DURATION_TOO_LONG,
        ),
        (
            "eligibility window ended",
            vec![alice_eligible().not_after(at(10))],
            reasons::ELIGIBILITY_EXPIRED,
        ),
        (
            "eligibility window moved to the future",
            vec![alice_eligible().not_before(at(100))],
            reasons::ELIGIBILITY_NOT_YET_VALID,
        ),
    ];
    for (case, eligs, reason) in cases {
        let step = w.clone().eligibilities(&eligs).decide_at(at(20));
        match &step {
            Step::End {
                phase: Phase::Revoked,
                reason: r,
                ..
            } if *r == reason => {}
            other => panic!("{case}: {other:?}"),
        }
    }
}

#[test]
fn active_is_revoked_when_the_role_adds_a_step_up_requirement() {
    let step = alice_active()
        .with_role(payments_admin().requires_attribute("amr", &["mfa"]))
        .decide_at(at(20));
    assert_end(&step, Phase::Revoked, reasons::REQUESTER_ATTRIBUTES_MISSING);
}

#[test]
fn active_is_revoked_when_the_role_changes() {
    let w = alice_active();
    // roleRef name changed.
    let step = w
        .clone()
        .with_role(payments_admin().cluster_role("edit"))
        .decide_at(at(20));
    let msg = assert_end(&step, Phase::Revoked, reasons::ROLE_CHANGED);
    assert!(msg.contains("payments-admin"), "{msg}");
    // roleRef kind changed (same name).
    let step = w
        .clone()
        .with_role(payments_admin().role_in("payments", "admin"))
        .decide_at(at(20));
    assert_end(&step, Phase::Revoked, reasons::ROLE_CHANGED);
    // Role's namespaces narrowed away from what was granted.
    let step = w
        .clone()
        .with_role(payments_admin().namespaces(&["billing"]))
        .decide_at(at(20));
    assert_end(&step, Phase::Revoked, reasons::ROLE_CHANGED);
    // Role made cluster-wide: the namespaced grant is not silently widened.
    let step = w
        .clone()
        .with_role(payments_admin().cluster_wide())
        .decide_at(at(20));
    assert_end(&step, Phase::Revoked, reasons::ROLE_CHANGED);
    // Approvers changed but the grant still has its quorum under the new policy: kept.
    let step = w
        .clone()
        .with_role(payments_admin().approvers(&["bob", "dave"], &[]))
        .decide_at(at(20));
    assert_keep(&step, at(65), at(65));
}

#[test]
fn a_binding_labelled_for_an_active_grant_elsewhere_changes_nothing() {
    // Someone creates a binding labelled for the request in another namespace: it is not part of
    // the grant (the controller deletes it), and it neither widens nor revokes the grant.
    let mut w = alice_active();
    w.observed.push(observed_crb(
        REQ,
        "cluster-admin",
        requester_subject(&alice()),
        Some(at(30)),
    ));
    let step = w.decide_at(at(20));
    // Its earlier expiry annotation can only shorten the grant.
    assert_keep(&step, at(30), at(30));
    let Step::KeepActive { bindings, .. } = step else {
        unreachable!()
    };
    assert_eq!(refs(&bindings), w.status.bindings);
}

#[test]
fn active_is_revoked_when_its_approvals_no_longer_satisfy_the_role() {
    let w = alice_active();
    let step = w
        .clone()
        .with_role(payments_admin().required_approvals(2))
        .decide_at(at(20));
    assert_end(&step, Phase::Revoked, reasons::NOT_APPROVED);
    let step = w
        .clone()
        .with_role(payments_admin().approvers(&["dave"], &[]))
        .decide_at(at(20));
    assert_end(&step, Phase::Revoked, reasons::NOT_APPROVED);
}

#[test]
fn active_bindings_observed_missing_are_recreated() {
    // Someone deleted the binding: the grant is kept (the controller recreates it) with its expiry.
    let w = alice_active().observed(vec![]);
    let step = w.decide_at(at(20));
    assert_keep(&step, at(65), at(65));
    let Step::KeepActive { bindings, .. } = step else {
        unreachable!()
    };
    assert_eq!(bindings.len(), 1);
}

#[test]
fn active_takes_the_earliest_recorded_expiry() {
    // A binding carries an earlier expiry than status: the earlier one wins.
    let mut w = alice_active();
    w.observed[0].expires_at = Some(at(40));
    assert_keep(&w.decide_at(at(20)), at(40), at(40));
    assert_end(
        &w.decide_at(at(40)),
        Phase::Expired,
        reasons::DURATION_ELAPSED,
    );
    // A later one on a binding never extends the status.
    w.observed[0].expires_at = Some(at(500));
    assert_keep(&w.decide_at(at(20)), at(65), at(65));
}

// ---------------------------------------------------------------------------------------------
// Crash recovery: bindings were created, the status write was lost.

#[test]
fn lost_status_write_finishes_with_the_bindings_expiry() {
    let active = alice_active();
    let lost = active.clone().status(approved());
    // Later, the request is still approved: finish the activation with the expiry on the bindings.
    let step = lost.decide_at(at(30));
    match &step {
        Step::Activate { activation, .. } => assert_eq!(activation.expires_at, at(65)),
        other => panic!("{other:?}"),
    }
    assert_eq!(step.wake_at(), Some(at(65)));
    // After that expiry it is over, not activated anew.
    assert_end(
        &lost.decide_at(at(65)),
        Phase::Expired,
        reasons::DURATION_ELAPSED,
    );
    assert_end(
        &lost.decide_at(at(300)),
        Phase::Expired,
        reasons::DURATION_ELAPSED,
    );
    // With several bindings, the earliest expiry counts.
    let mut two = lost.clone();
    let mut second = two.observed[0].clone();
    second.namespace = Some("billing".into());
    second.expires_at = Some(at(50));
    two.observed.push(second);
    two.role = Some(payments_admin().namespaces(&["payments", "billing"]));
    two.spec = two.spec.namespaces(&["payments", "billing"]);
    match two.decide_at(at(30)) {
        Step::Activate { activation, .. } => assert_eq!(activation.expires_at, at(50)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn observed_bindings_never_stand_in_for_approval() {
    // A binding labelled for this request appears (created by someone else, or left over) while
    // the request is not approved: it proves nothing, the request keeps waiting.
    let forged = observed_rb(
        REQ,
        "payments",
        "ClusterRole",
        "admin",
        requester_subject(&alice()),
        Some(at(100_000)),
    );
    let w = alice_asks().observed(vec![forged.clone()]);
    assert_wait(&w.decide_at(at(1)), Phase::Pending, at(24 * 60));
    // Approved and unscheduled: activated, but never for longer than a fresh activation.
    let w = w.status(approved());
    assert_activate(&w.decide_at(at(1)), at(1), at(61), reasons::APPROVED);
    // Scheduled for later: the binding does not start it early.
    let mut scheduled = w.clone();
    scheduled.spec = scheduled.spec.start_at(at(120));
    assert_wait(&scheduled.decide_at(at(1)), Phase::Scheduled, at(120));
}

#[test]
fn lost_status_write_with_a_changed_role_is_revoked() {
    let lost = alice_active()
        .status(approved())
        .with_role(payments_admin().cluster_role("edit"));
    assert_end(
        &lost.decide_at(at(30)),
        Phase::Revoked,
        reasons::ROLE_CHANGED,
    );
}

// ---------------------------------------------------------------------------------------------
// Binding names

#[test]
fn binding_names_are_deterministic_and_bounded() {
    assert_eq!(binding_name("alice-payments-1"), "kubepim-alice-payments-1");
    let longest_plain = "a".repeat(253 - "kubepim-".len());
    assert_eq!(
        binding_name(&longest_plain),
        format!("kubepim-{longest_plain}")
    );

    let long_a = format!("{}-a", "x".repeat(251));
    let long_b = format!("{}-b", "x".repeat(251));
    for name in [
        &long_a,
        &long_b,
        &"y".repeat(253),
        &format!("{longest_plain}b"),
    ] {
        let b = binding_name(name);
        assert!(b.len() <= 253, "{} chars", b.len());
        assert!(b.starts_with("kubepim-"), "{b}");
        assert_eq!(b, binding_name(name), "deterministic");
    }
    assert_ne!(
        binding_name(&long_a),
        binding_name(&long_b),
        "names differing only at the end stay distinct"
    );
    // A cut never leaves a separator dangling before the hash.
    let dashes = format!("{}{}", "z".repeat(226), "-".repeat(40));
    assert!(
        binding_name(&dashes).starts_with(&format!("kubepim-{}:", "z".repeat(226))),
        "{}",
        binding_name(&dashes)
    );
    // Stable across releases: pinned.
    assert_eq!(
        binding_name(&"y".repeat(253)),
        format!("kubepim-{}:f4853ecaf79604f8", "y".repeat(228))
    );
}

#[test]
fn no_request_name_takes_the_binding_name_of_another() {
    // The shortened name of a long request, minus the prefix, would be a valid request name of its
    // own if the hash followed a `-`. It cannot be one with a `:`.
    let long = "payments-incident-".repeat(20);
    let shortened = binding_name(&long);
    let squatter = shortened.strip_prefix("kubepim-").unwrap();
    assert!(squatter.contains(':'), "{squatter}");
    let dns_subdomain = regex::Regex::new(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$").unwrap();
    assert!(!dns_subdomain.is_match(squatter));
}

// ---------------------------------------------------------------------------------------------

trait WithRole {
    fn with_role(self, role: PrivilegedRole) -> Self;
}

impl WithRole for World {
    fn with_role(mut self, role: PrivilegedRole) -> Self {
        self.role = Some(role);
        self
    }
}

#[test]
fn a_missing_namespace_denies_an_activation_and_ends_a_running_grant() {
    let activation = Activation {
        activated_at: at(0),
        expires_at: at(60),
    };
    let activate = Step::Activate {
        activation,
        bindings: vec![],
        tally: Default::default(),
        grant: crate::policy::Grant {
            namespaces: vec!["ghost".into()],
            duration: TimeDelta::minutes(60),
            eligibilities: vec![],
            eligible_until: None,
            recheck_at: None,
        },
        reason: reasons::APPROVED,
        continuous_since: None,
    };
    let Step::End {
        phase,
        reason,
        message,
    } = crate::policy::lifecycle::namespace_missing(&activate, "ghost")
    else {
        panic!("an activation into a missing namespace ends");
    };
    assert_eq!(
        (phase, reason),
        (Phase::Denied, reasons::NAMESPACE_NOT_FOUND)
    );
    assert!(
        message.contains("namespace ghost does not exist"),
        "{message}"
    );

    let keep = Step::KeepActive {
        activation,
        bindings: vec![],
        wake: at(60),
        tally: Default::default(),
    };
    let Step::End { phase, reason, .. } =
        crate::policy::lifecycle::namespace_missing(&keep, "ghost")
    else {
        panic!("a grant whose namespace went ends");
    };
    assert_eq!(
        (phase, reason),
        (Phase::Revoked, reasons::NAMESPACE_NOT_FOUND)
    );
    // Nothing else changes.
    assert_eq!(
        crate::policy::lifecycle::namespace_missing(&Step::Settled, "ghost"),
        Step::Settled
    );
}

#[test]
fn only_an_active_grant_past_its_expiry_is_overdue() {
    use crate::policy::lifecycle::is_overdue;
    let active = approved().active(at(5), at(65));
    assert!(!is_overdue(&active, at(64)));
    assert!(is_overdue(&active, at(65)), "due at the expiry itself");
    assert!(is_overdue(&active, at(90)));
    assert!(!is_overdue(&approved(), at(90)), "pending: nothing granted");
    let ended = approved().active(at(5), at(65)).phase(Phase::Expired);
    assert!(!is_overdue(&ended, at(90)), "already ended");
}
