//! `of_status_change`: what each phase change records (Event, audit decision, notification),
//! driven through the real `decide` and `request_status` on a fixed clock.
use super::builders::*;
use crate::api::{ActivationRequestStatus, Phase, PrivilegedRole};
use crate::policy::lifecycle::Step;
use crate::policy::reasons;
use crate::policy::status::request_status;
use crate::policy::transition::{
    self, AuditDecision, Occurrence, Severity, binding_removed, deleted_with_grant,
    of_status_change, stuck,
};

fn payments_admin() -> PrivilegedRole {
    role("payments-admin")
        .cluster_role("admin")
        .namespaces(&["payments"])
        .approvers(&["bob"], &[])
}

fn alice_asks(role: PrivilegedRole) -> World {
    world(
        "alice-payments-1",
        request("payments-admin").by(&user("alice")),
        role,
        &[eligibility("alice-payments", "payments-admin").users(&["alice"])],
    )
}

/// Decides at `now` from `old` and returns the new status with what it records.
fn change(w: World, old: ActivationRequestStatus, now_min: i64) -> (Step, Vec<Occurrence>) {
    let w = w.status(old.clone());
    let step = w.decide_at(at(now_min));
    let new = request_status(&old, &step, Some(1), at(now_min));
    let happened = of_status_change(&old, &new, &step);
    (step, happened)
}

/// (decision, Event reason, severity, notified) of each occurrence, in order.
fn summary(
    happened: &[Occurrence],
) -> Vec<(AuditDecision, Option<&'static str>, Option<Severity>, bool)> {
    happened
        .iter()
        .map(|o| {
            (
                o.decision,
                o.event.as_ref().map(|e| e.reason),
                o.event.as_ref().map(|e| e.severity),
                o.notified,
            )
        })
        .collect()
}

#[test]
fn a_new_request_waiting_for_approval_is_requested_and_notified() {
    let (_, happened) = change(alice_asks(payments_admin()), fresh(), 0);
    assert_eq!(
        summary(&happened),
        [(
            AuditDecision::Requested,
            Some("Requested"),
            Some(Severity::Normal),
            true
        )]
    );
}

#[test]
fn an_approval_records_approved_then_activated_with_the_approver() {
    let pending = fresh()
        .phase(Phase::Pending)
        .approvals(&[approved_by("bob")]);
    let (_, happened) = change(alice_asks(payments_admin()), pending, 5);
    assert_eq!(
        summary(&happened),
        [
            (
                AuditDecision::Approved,
                Some("Approved"),
                Some(Severity::Normal),
                true
            ),
            (
                AuditDecision::Activated,
                Some("Activated"),
                Some(Severity::Normal),
                true
            ),
        ]
    );
    assert_eq!(happened[0].approvers, ["bob"]);
    assert_eq!(happened[0].message, "approved by bob");
    assert_eq!(happened[1].approvers, ["bob"]);
    assert_eq!(happened[1].until, Some(at(65)));
    assert!(!happened[1].break_glass);
}

#[test]
fn decided_on_first_sight_records_the_request_without_an_event_then_the_outcome() {
    let open = payments_admin().no_approval_required();
    let (_, happened) = change(alice_asks(open), fresh(), 0);
    assert_eq!(
        summary(&happened),
        [
            (AuditDecision::Requested, None, None, false),
            (
                AuditDecision::Activated,
                Some("Activated"),
                Some(Severity::Normal),
                true
            ),
        ]
    );
}

#[test]
fn break_glass_is_a_warning_notified_as_break_glass() {
    let w = alice_asks(payments_admin().break_glass());
    let (step, happened) = change(w, fresh(), 0);
    assert!(transition::is_break_glass(&step), "{step:?}");
    let activated = happened.last().expect("an activation");
    assert_eq!(activated.decision, AuditDecision::Activated);
    assert_eq!(
        activated.event.as_ref().map(|e| (e.reason, e.severity)),
        Some(("BreakGlassActivated", Severity::Warning))
    );
    assert!(activated.break_glass);
    assert_eq!(activated.reason, reasons::BREAK_GLASS);
}

#[test]
fn a_denial_is_a_warning_and_no_approval_is_recorded() {
    let pending = fresh()
        .phase(Phase::Pending)
        .approvals(&[denied_by("bob", "not now")]);
    let (_, happened) = change(alice_asks(payments_admin()), pending, 5);
    assert_eq!(
        summary(&happened),
        [(
            AuditDecision::Denied,
            Some("Denied"),
            Some(Severity::Warning),
            true
        )]
    );
}

#[test]
fn no_phase_change_records_nothing() {
    let pending = fresh().phase(Phase::Pending);
    let (_, happened) = change(alice_asks(payments_admin()), pending, 1);
    assert_eq!(happened, []);
}

#[test]
fn a_scheduled_grant_is_recorded_but_nobody_is_told_until_it_activates() {
    let w = world(
        "alice-payments-1",
        request("payments-admin")
            .by(&user("alice"))
            .start_at(at(30)),
        payments_admin(),
        &[eligibility("alice-payments", "payments-admin").users(&["alice"])],
    );
    let pending = fresh()
        .phase(Phase::Pending)
        .approvals(&[approved_by("bob")]);
    let (_, happened) = change(w, pending, 5);
    assert_eq!(
        summary(&happened),
        [
            (
                AuditDecision::Approved,
                Some("Approved"),
                Some(Severity::Normal),
                true
            ),
            (
                AuditDecision::Scheduled,
                Some("Scheduled"),
                Some(Severity::Normal),
                false
            ),
        ]
    );
}

#[test]
fn the_records_made_outside_a_status_change() {
    let deleted = deleted_with_grant();
    assert_eq!(deleted.decision, AuditDecision::Deleted);
    assert!(deleted.notified);
    assert_eq!(deleted.event.map(|e| e.reason), Some("Revoked"));

    let stuck = stuck("BindingNameTaken", "taken");
    assert_eq!(stuck.decision, AuditDecision::Stuck);
    assert!(!stuck.notified);
    assert_eq!(
        stuck.event.map(|e| (e.reason, e.severity, e.action)),
        Some(("BindingNameTaken", Severity::Warning, "Reconcile"))
    );

    let swept = binding_removed(true, "Expired", "gone", Some(at(60)), "note");
    assert_eq!(
        (swept.decision, swept.event, swept.until),
        (AuditDecision::Swept, None, Some(at(60)))
    );
    let forged = binding_removed(false, "NoRequest", "gone", None, "it granted admin");
    assert_eq!(forged.decision, AuditDecision::RemovedIllegitimateBinding);
    assert_eq!(
        forged.event.map(|e| (e.reason, e.severity, e.note)),
        Some((
            reasons::ILLEGITIMATE_BINDING_REMOVED,
            Severity::Warning,
            "it granted admin".to_string()
        ))
    );
}

#[test]
fn every_decision_has_its_own_audit_word() {
    use AuditDecision::*;
    let all = [
        Requested,
        Approved,
        Scheduled,
        Activated,
        Expired,
        Cancelled,
        Revoked,
        Denied,
        Failed,
        Deleted,
        Stuck,
        Swept,
        RemovedIllegitimateBinding,
        FootholdsFound,
        FootholdRemoved,
        FootholdKept,
        HistoryExported,
        RoleNarrowed,
        Activity,
        NeverUsed,
        ReviewOpened,
        ReviewClosed,
        ReviewRemoved,
        ReviewScheduled,
    ];
    // A decision added to the enum does not compile here until it is listed above too.
    for decision in all {
        match decision {
            Requested
            | Approved
            | Scheduled
            | Activated
            | Expired
            | Cancelled
            | Revoked
            | Denied
            | Failed
            | Deleted
            | Stuck
            | Swept
            | RemovedIllegitimateBinding
            | FootholdsFound
            | FootholdRemoved
            | FootholdKept
            | HistoryExported
            | RoleNarrowed
            | Activity
            | NeverUsed
            | ReviewOpened
            | ReviewClosed
            | ReviewRemoved
            | ReviewScheduled => {}
        }
    }
    let words: std::collections::BTreeSet<&str> = all.iter().map(|d| d.as_str()).collect();
    assert_eq!(words.len(), all.len());
    // The documented schema lists every one (docs/audit.md is what a SIEM integrator reads).
    let documented = include_str!("../../../docs/audit.md");
    for word in words {
        assert!(
            documented.contains(&format!("| `{word}` |")),
            "docs/audit.md does not document the decision {word:?}"
        );
    }
}

#[test]
fn a_budget_denial_records_a_denial_like_any_other() {
    let role = payments_admin().budget("1h", "24h");
    let w = alice_asks(role).past(
        "alice-payments-0",
        request("payments-admin").by(&user("alice")),
        fresh().ended(Phase::Expired, at(-120), at(-60), at(-60)),
    );
    let (step, happened) = change(w, fresh(), 0);
    assert!(
        matches!(
            step,
            Step::End {
                reason: reasons::BUDGET_EXCEEDED,
                ..
            }
        ),
        "{step:?}"
    );
    // Received (audited only), then denied: as any refusal of a new request.
    assert_eq!(
        summary(&happened),
        [
            (AuditDecision::Requested, None, None, false),
            (
                AuditDecision::Denied,
                Some("Denied"),
                Some(Severity::Warning),
                true
            )
        ]
    );
    assert_eq!(happened[1].reason, reasons::BUDGET_EXCEEDED);
}

#[test]
fn a_grant_that_ends_records_when_and_a_refused_request_does_not() {
    let active = fresh()
        .approvals(&[approved_by("bob")])
        .active(at(0), at(60));
    let mut cancelling = alice_asks(payments_admin());
    cancelling.spec.cancel = true;
    let cancelled = request_status(
        &active,
        &cancelling.status(active.clone()).decide_at(at(20)),
        Some(1),
        at(20),
    );
    assert_eq!(cancelled.phase, Some(Phase::Cancelled));
    assert_eq!(cancelled.ended_at, Some(crate::time::to_k8s(at(20))));
    // Ending again later keeps the first end.
    let again = request_status(
        &cancelled,
        &Step::End {
            phase: Phase::Cancelled,
            reason: reasons::CANCELLED_BY_REQUESTER,
            message: "cancelled by alice".into(),
        },
        Some(1),
        at(30),
    );
    assert_eq!(again.ended_at, cancelled.ended_at);

    let mut refused = alice_asks(payments_admin());
    refused.spec.cancel = true;
    let pending = fresh().phase(Phase::Pending);
    let never_active = request_status(
        &pending,
        &refused.status(pending.clone()).decide_at(at(5)),
        Some(1),
        at(5),
    );
    assert_eq!(never_active.phase, Some(Phase::Cancelled));
    assert_eq!(never_active.ended_at, None);
}

#[test]
fn a_narrowed_role_is_recorded_once_per_distinct_narrowing() {
    use crate::api::conditions::ROLE_NARROWED;
    use crate::policy::status::set_condition;
    let old = ActivationRequestStatus {
        phase: Some(Phase::Active),
        ..Default::default()
    };
    let narrowed = |message: &str| {
        let mut s = old.clone();
        set_condition(
            &mut s.conditions,
            ROLE_NARROWED,
            true,
            reasons::ROLE_NARROWED,
            message,
            Some(1),
            at(5),
        );
        s
    };
    let first = narrowed("removed list pods");
    let happened = of_status_change(&old, &first, &Step::Settled);
    assert_eq!(
        summary(&happened),
        [(
            AuditDecision::RoleNarrowed,
            Some(reasons::ROLE_NARROWED),
            Some(Severity::Normal),
            false
        )]
    );
    assert_eq!(happened[0].message, "removed list pods");
    // The same narrowing again records nothing; another one is recorded.
    assert!(of_status_change(&first, &first.clone(), &Step::Settled).is_empty());
    let second = narrowed("removed list pods, get pods");
    assert_eq!(of_status_change(&first, &second, &Step::Settled).len(), 1);
    // Back to unchanged (False) is not a narrowing.
    let mut restored = second.clone();
    set_condition(
        &mut restored.conditions,
        ROLE_NARROWED,
        false,
        reasons::ROLE_UNCHANGED,
        "back",
        Some(1),
        at(6),
    );
    assert!(of_status_change(&second, &restored, &Step::Settled).is_empty());
}
