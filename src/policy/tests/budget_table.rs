//! Privilege budgets on the fixed clock `t0`: what counts as elevated time inside the window, the
//! verdict at and just past the cap, where the budget is declared, and that only a request judged
//! for activation is refused.
use chrono::{DateTime, TimeDelta, Utc};

use super::builders::*;
use crate::api::{ActivationRequestSpec, ActivationRequestStatus, Eligibility, Phase};
use crate::policy::budget::{self, Ask, Source};
use crate::policy::extension::Related;
use crate::policy::lifecycle::Step;
use crate::policy::reasons;

type Kept = (String, ActivationRequestSpec, ActivationRequestStatus);

const ROLE: &str = "payments-admin";

fn by(who: &str, role: &str) -> ActivationRequestSpec {
    request(role).by(&user(who)).duration("4h")
}

fn kept(name: &str, spec: ActivationRequestSpec, status: ActivationRequestStatus) -> Kept {
    (name.into(), spec, status)
}

/// alice's grant of payments-admin, ended (Expired) at its expiry.
fn expired(name: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Kept {
    kept(
        name,
        by("alice", ROLE),
        fresh().ended(Phase::Expired, from, to, to),
    )
}

fn related(history: &[Kept]) -> Vec<Related<'_>> {
    history
        .iter()
        .map(|(name, spec, status)| Related { name, spec, status })
        .collect()
}

fn ask(duration: TimeDelta) -> Ask<'static> {
    Ask {
        request_name: "r-new",
        requester: "alice",
        role: ROLE,
        duration,
    }
}

/// alice's usage of payments-admin in the window `per` ending at `t0`.
fn used(history: &[Kept], per: TimeDelta) -> TimeDelta {
    budget::used(&related(history), &ask(mins(60)), per, t0())
}

fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}

// ---------------------------------------------------------------------------------------------
// Usage: what falls inside the window

#[test]
fn a_grant_wholly_inside_the_window_counts_in_full() {
    assert_eq!(used(&[expired("a", at(-120), at(-60))], hours(8)), mins(60));
}

#[test]
fn a_grant_partly_inside_the_window_counts_only_its_part_inside() {
    // Window [t0-1h, t0]: the grant ran t0-90m .. t0-30m, 30 minutes of it inside.
    assert_eq!(used(&[expired("a", at(-90), at(-30))], hours(1)), mins(30));
}

#[test]
fn a_grant_wholly_outside_the_window_counts_nothing() {
    assert_eq!(used(&[expired("a", at(-180), at(-61))], hours(1)), mins(0));
    // Ending exactly at the window's start leaves nothing inside.
    assert_eq!(used(&[expired("a", at(-180), at(-60))], hours(1)), mins(0));
}

#[test]
fn an_active_grant_counts_until_now() {
    let active = kept("a", by("alice", ROLE), fresh().active(at(-45), at(15)));
    assert_eq!(used(&[active], hours(8)), mins(45));
}

#[test]
fn a_grant_ended_early_counts_until_ended_at() {
    for phase in [Phase::Cancelled, Phase::Revoked] {
        let ended = kept(
            "a",
            by("alice", ROLE),
            fresh().ended(phase, at(-120), at(0), at(-100)),
        );
        assert_eq!(used(&[ended], hours(8)), mins(20), "{phase}");
    }
}

#[test]
fn history_without_ended_at_counts_until_expires_at() {
    let legacy = kept(
        "a",
        by("alice", ROLE),
        fresh()
            .ended(Phase::Cancelled, at(-120), at(-60), at(-100))
            .without_ended_at(),
    );
    assert_eq!(used(&[legacy], hours(8)), mins(60));
}

#[test]
fn a_late_revocation_is_not_charged_past_expires_at() {
    let late = kept(
        "a",
        by("alice", ROLE),
        fresh().ended(Phase::Expired, at(-120), at(-60), at(-50)),
    );
    assert_eq!(used(&[late], hours(8)), mins(60));
}

#[test]
fn an_extension_chain_counts_the_hand_over_once() {
    // The original ran from t0-120m; its extension became Active at t0-75m (bindings of both
    // existed), and the original handed over at t0-70m. Held without a gap: t0-120m .. t0.
    let original = kept(
        "a",
        by("alice", ROLE),
        fresh().ended(Phase::Expired, at(-120), at(-60), at(-70)),
    );
    let extension = kept(
        "a-ext",
        by("alice", ROLE).extends("a"),
        fresh().active(at(-75), at(60)),
    );
    assert_eq!(
        used(&[original.clone(), extension.clone()], hours(8)),
        mins(120)
    );
    // History without endedAt: the original counts to its expiry, which overlaps even more.
    let (name, spec, status) = original;
    let legacy = (name, spec, status.without_ended_at());
    assert_eq!(used(&[legacy, extension], hours(8)), mins(120));
}

#[test]
fn separate_grants_add_up() {
    let history = [
        expired("a", at(-300), at(-240)),
        expired("b", at(-120), at(-90)),
    ];
    assert_eq!(used(&history, hours(8)), mins(90));
}

#[test]
fn other_requesters_other_roles_this_request_and_never_active_requests_are_ignored() {
    let history = [
        kept(
            "bob-1",
            by("bob", ROLE),
            fresh().ended(Phase::Expired, at(-120), at(-60), at(-60)),
        ),
        kept(
            "other-role",
            by("alice", "cluster-view"),
            fresh().ended(Phase::Expired, at(-120), at(-60), at(-60)),
        ),
        // The request being judged, by name: its own status never counts against it.
        kept("r-new", by("alice", ROLE), fresh().active(at(-30), at(30))),
        kept("denied", by("alice", ROLE), fresh().phase(Phase::Denied)),
        kept("pending", by("alice", ROLE), fresh().phase(Phase::Pending)),
        kept(
            "no-requester",
            request(ROLE),
            fresh().active(at(-30), at(30)),
        ),
    ];
    assert_eq!(used(&history, hours(8)), mins(0));
    // The same grant by alice for this role counts.
    let mine = kept(
        "alice-1",
        by("alice", ROLE),
        fresh().ended(Phase::Expired, at(-120), at(-60), at(-60)),
    );
    assert_eq!(used(&[mine], hours(8)), mins(60));
}

// ---------------------------------------------------------------------------------------------
// The verdict

/// alice held the role from t0-8h for `held`.
fn held(held: TimeDelta) -> Vec<Kept> {
    vec![expired("a", at(-480), at(-480) + held)]
}

fn verdict(history: &[Kept], asks: TimeDelta) -> Result<(), crate::policy::Refusal> {
    budget::verdict(
        &budget("8h", "168h"),
        Source::Role(ROLE),
        &ask(asks),
        &related(history),
        t0(),
    )
}

#[test]
fn exactly_at_the_cap_is_allowed() {
    assert_eq!(verdict(&held(hours(7)), hours(1)), Ok(()));
    assert_eq!(verdict(&[], hours(8)), Ok(()));
}

#[test]
fn one_second_over_the_cap_is_refused_with_the_usage() {
    let refusal =
        verdict(&held(hours(7) + TimeDelta::seconds(1)), hours(1)).expect_err("one second over");
    assert_eq!(refusal.reason, reasons::BUDGET_EXCEEDED);
    assert_eq!(
        refusal.message,
        "alice used 7h1s of 8h in the last 7d on role payments-admin; this request asks for 1h \
         (budget: spec.budget of PrivilegedRole payments-admin)"
    );
    assert!(verdict(&[], hours(8) + TimeDelta::seconds(1)).is_err());
}

#[test]
fn the_message_reads_like_the_documented_one() {
    let refusal = verdict(&held(hours(7) + mins(10)), hours(1)).expect_err("over");
    assert_eq!(
        refusal.message,
        "alice used 7h10m of 8h in the last 7d on role payments-admin; this request asks for 1h \
         (budget: spec.budget of PrivilegedRole payments-admin)"
    );
}

#[test]
fn durations_print_as_people_write_them() {
    for (duration, text) in [
        (hours(168), "7d"),
        (hours(36), "1d12h"),
        (hours(8), "8h"),
        (hours(7) + mins(10), "7h10m"),
        (mins(1) + TimeDelta::seconds(30), "1m30s"),
        (TimeDelta::zero(), "0s"),
        (TimeDelta::milliseconds(1500), "1.5s"),
    ] {
        assert_eq!(budget::short(duration), text);
    }
}

// ---------------------------------------------------------------------------------------------
// Role and eligibility budgets together

fn alice_elig(name: &str) -> Eligibility {
    eligibility(name, ROLE).users(&["alice"])
}

/// Checks alice's 1h request against every budget, `used` already spent 3 hours ago.
fn check_all(
    role: crate::api::PrivilegedRole,
    eligibilities: &[Eligibility],
    used: TimeDelta,
) -> Result<(), crate::policy::Refusal> {
    let spec = request(ROLE).by(&user("alice")).duration("1h");
    let grant = check(&spec, &role, eligibilities, t0()).expect("eligible");
    let history = held_since(used);
    let refs: Vec<&Eligibility> = eligibilities.iter().collect();
    budget::check(
        &ask(grant.duration),
        &role,
        &grant,
        &refs,
        &related(&history),
        t0(),
    )
}

fn held_since(used: TimeDelta) -> Vec<Kept> {
    vec![expired("a", at(-180) - used, at(-180))]
}

#[test]
fn without_a_budget_nothing_is_refused() {
    assert_eq!(
        check_all(role(ROLE), &[alice_elig("e")], hours(100)),
        Ok(())
    );
}

#[test]
fn the_role_budget_refuses_whatever_the_eligibilities_say() {
    let refusal = check_all(role(ROLE).budget("2h", "24h"), &[alice_elig("e")], hours(2))
        .expect_err("over the role's budget");
    assert!(
        refusal
            .message
            .ends_with("(budget: spec.budget of PrivilegedRole payments-admin)"),
        "{}",
        refusal.message
    );
}

#[test]
fn an_eligibility_budget_refuses_naming_the_eligibility() {
    let refusal = check_all(
        role(ROLE),
        &[alice_elig("alice-payments").budget("2h", "24h")],
        hours(2),
    )
    .expect_err("over the eligibility's budget");
    assert_eq!(refusal.reason, reasons::BUDGET_EXCEEDED);
    assert_eq!(
        refusal.message,
        "alice used 2h of 2h in the last 1d on role payments-admin; this request asks for 1h \
         (budget: spec.budget of Eligibility alice-payments)"
    );
    assert_eq!(
        check_all(
            role(ROLE),
            &[alice_elig("alice-payments").budget("3h", "24h")],
            hours(2)
        ),
        Ok(()),
        "exactly at the eligibility's cap"
    );
}

#[test]
fn a_grant_may_rest_on_any_allowing_eligibility() {
    // Another allowing eligibility without a budget: no eligibility cap applies.
    let unbudgeted = [
        alice_elig("a-tight").budget("2h", "24h"),
        alice_elig("b-open"),
    ];
    assert_eq!(check_all(role(ROLE), &unbudgeted, hours(2)), Ok(()));
    // One with room is enough.
    let roomy = [
        alice_elig("a-tight").budget("2h", "24h"),
        alice_elig("b-roomy").budget("8h", "24h"),
    ];
    assert_eq!(check_all(role(ROLE), &roomy, hours(2)), Ok(()));
    // None with room: the first by name is reported.
    let tight = [
        alice_elig("b-tight").budget("2h", "24h"),
        alice_elig("a-tight").budget("1h", "24h"),
    ];
    let refusal = check_all(role(ROLE), &tight, hours(2)).expect_err("no room anywhere");
    assert!(
        refusal.message.ends_with("Eligibility a-tight)"),
        "{}",
        refusal.message
    );
}

#[test]
fn an_eligibility_that_does_not_allow_the_grant_does_not_cap_it() {
    // bob's eligibility has a budget, but alice's grant does not rest on it.
    let eligibilities = [
        alice_elig("alice-open"),
        eligibility("bob-tight", ROLE)
            .users(&["bob"])
            .budget("1h", "24h"),
    ];
    assert_eq!(check_all(role(ROLE), &eligibilities, hours(5)), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Through `decide`: only a request judged for activation is refused

/// alice asks for 1h of payments-admin (8h per 7d, no approval needed), nothing used yet.
fn budgeted_world() -> World {
    let role = role(ROLE).no_approval_required().budget("8h", "168h");
    world(
        "r-new",
        request(ROLE).by(&user("alice")).duration("1h"),
        role,
        &[alice_elig("alice-payments")],
    )
}

/// As [`budgeted_world`], with 7h10m used 10h ago.
fn over_budget_world() -> World {
    let end = at(-600) + mins(430);
    budgeted_world().past(
        "a",
        by("alice", ROLE),
        fresh().ended(Phase::Expired, at(-600), end, end),
    )
}

#[test]
fn a_pending_request_over_budget_is_denied() {
    match over_budget_world().decide_at(t0()) {
        Step::End {
            phase,
            reason,
            message,
        } => {
            assert_eq!(phase, Phase::Denied);
            assert_eq!(reason, reasons::BUDGET_EXCEEDED);
            assert_eq!(
                message,
                "alice used 7h10m of 8h in the last 7d on role payments-admin; this request \
                 asks for 1h (budget: spec.budget of PrivilegedRole payments-admin)"
            );
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn a_request_within_budget_activates() {
    // bob's grant is not alice's usage.
    let within = budgeted_world().past("bob-1", by("bob", ROLE), fresh().active(at(-300), at(30)));
    assert!(matches!(within.decide_at(t0()), Step::Activate { .. }));
}

#[test]
fn an_active_grant_is_never_revoked_for_its_budget() {
    let active = over_budget_world().status(fresh().active(at(-10), at(50)));
    assert!(
        matches!(active.decide_at(t0()), Step::KeepActive { .. }),
        "{:?}",
        active.decide_at(t0())
    );
}
