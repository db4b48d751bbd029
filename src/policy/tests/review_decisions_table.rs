//! Access review decisions on the fixed clock `t0`: who may decide which item, what a `/status`
//! write may change, outcomes at close, which subjects an Eligibility stops honouring, and the
//! counts of the printer columns. Shared builders: [`super::review_table`].
use chrono::{DateTime, Utc};

use super::builders::*;
use super::review_table::{ROLE, days, decision, elig, filled, grant, spec};
use crate::api::{
    AccessReview, AccessReviewSpec, AccessReviewStatus, Eligibility, ItemDecision, ReviewDecision,
    ReviewPhase, SubjectRef,
};
use crate::policy::review;
use crate::policy::review_decisions::{self as decisions, Caller, ReviewRefusal};
use crate::time::to_k8s;

fn groups(g: &[&str]) -> Vec<String> {
    g.iter().map(|s| s.to_string()).collect()
}

#[test]
fn who_may_review_which_item() {
    let history = [grant("alice", ROLE, t0() - days(2), 1, &["dave"])];
    let e = elig("pay", ROLE)
        .users(&["alice"])
        .groups(&["payments-oncall"]);
    let status = filled(&[e], &history);
    let (alice_item, group_item) = (&status.items[0], &status.items[1]);
    let mut with_approvers = spec();
    with_approvers.reviewers.subjects_approvers = true;
    type Case<'a> = (&'a AccessReviewSpec, &'a str, Vec<String>, Option<&'a str>);
    let plain = spec();
    let cases: [(&crate::api::ReviewItem, Case<'_>); 9] = [
        (alice_item, (&plain, "bob", groups(&[]), None)),
        (alice_item, (&plain, "carol", groups(&["sre-leads"]), None)),
        (
            alice_item,
            (&plain, "alice", groups(&["sre-leads"]), Some("self")),
        ),
        (
            alice_item,
            (&plain, "mallory", groups(&["developers"]), Some("not")),
        ),
        (alice_item, (&plain, "dave", groups(&[]), Some("not"))),
        (alice_item, (&with_approvers, "dave", groups(&[]), None)),
        (
            alice_item,
            (
                &plain,
                "system:serviceaccount:ci:bot",
                groups(&["sre-leads"]),
                Some("sa"),
            ),
        ),
        // A member of the reviewed group may not decide about it.
        (
            group_item,
            (
                &plain,
                "carol",
                groups(&["sre-leads", "payments-oncall"]),
                Some("self"),
            ),
        ),
        (group_item, (&plain, "bob", groups(&["sre-leads"]), None)),
    ];
    for (item, (spec, who, groups, want)) in cases {
        let got = match decisions::may_review(spec, item, who, &groups) {
            Ok(()) => None,
            Err(ReviewRefusal::SelfReview { .. }) => Some("self"),
            Err(ReviewRefusal::NotAReviewer { .. }) => Some("not"),
            Err(ReviewRefusal::ServiceAccount(_)) => Some("sa"),
            Err(other) => panic!("unexpected {other:?}"),
        };
        assert_eq!(got, want, "{who} on {}", item.id);
    }
}

#[test]
fn status_writes_append_exactly_one_own_decision_while_open() {
    let old = filled(&[elig("pay", ROLE).users(&["alice", "mallory"])], &[]);
    let bob_groups = groups(&["sre-leads"]);
    let bob = Caller {
        username: "bob",
        groups: &bob_groups,
        is_controller: false,
    };
    let controller = Caller {
        username: "system:serviceaccount:kubepim:kubepim",
        groups: &[],
        is_controller: true,
    };
    let keep_alice = decision(
        "pay/User/alice",
        ReviewDecision::Keep,
        "bob",
        &["sre-leads"],
    );
    let with = |ds: Vec<ItemDecision>| {
        let mut s = old.clone();
        s.decisions = ds;
        s
    };
    let one = with(vec![keep_alice.clone()]);
    let mut closed_old = one.clone();
    closed_old.phase = Some(ReviewPhase::Closed);
    let mut phase_changed = one.clone();
    phase_changed.phase = Some(ReviewPhase::Closed);
    let mut edited = keep_alice.clone();
    edited.decision = ReviewDecision::Remove;
    let remove_mallory = decision(
        "pay/User/mallory",
        ReviewDecision::Remove,
        "bob",
        &["sre-leads"],
    );
    type WriteCase<'a> = (
        &'a str,
        &'a AccessReviewStatus,
        AccessReviewStatus,
        Caller<'a>,
        Result<(), &'a str>,
    );
    let cases: Vec<WriteCase<'_>> = vec![
        ("append one", &old, one.clone(), bob, Ok(())),
        (
            "append on top",
            &one,
            with(vec![keep_alice.clone(), remove_mallory.clone()]),
            bob,
            Ok(()),
        ),
        (
            "two at once",
            &old,
            with(vec![keep_alice.clone(), remove_mallory.clone()]),
            bob,
            Err("one"),
        ),
        ("nothing", &old, old.clone(), bob, Err("one")),
        (
            "the same entry again",
            &one,
            with(vec![keep_alice.clone(), keep_alice.clone()]),
            bob,
            Err("duplicate"),
        ),
        ("edit", &one, with(vec![edited]), bob, Err("append-only")),
        ("remove", &one, old.clone(), bob, Err("append-only")),
        (
            "as someone else",
            &old,
            with(vec![decision(
                "pay/User/alice",
                ReviewDecision::Keep,
                "carol",
                &["sre-leads"],
            )]),
            bob,
            Err("name"),
        ),
        (
            "other groups",
            &old,
            with(vec![decision(
                "pay/User/alice",
                ReviewDecision::Keep,
                "bob",
                &[],
            )]),
            bob,
            Err("groups"),
        ),
        (
            "no such item",
            &old,
            with(vec![decision(
                "pay/User/zed",
                ReviewDecision::Keep,
                "bob",
                &["sre-leads"],
            )]),
            bob,
            Err("item"),
        ),
        (
            "closed",
            &closed_old,
            {
                let mut s = closed_old.clone();
                s.decisions.push(remove_mallory.clone());
                s
            },
            bob,
            Err("open"),
        ),
        (
            "sets phase",
            &old,
            {
                let mut s = phase_changed.clone();
                s.decisions = vec![keep_alice.clone()];
                s
            },
            bob,
            Err("controller field"),
        ),
        (
            "controller writes phase",
            &old,
            phase_changed.clone(),
            controller,
            Err("controller decides"),
        ),
        (
            "controller closes",
            &one,
            {
                let mut s = one.clone();
                s.phase = Some(ReviewPhase::Closed);
                s
            },
            controller,
            Ok(()),
        ),
    ];
    for (what, old, new, caller, want) in cases {
        let got = decisions::check_status_write(&spec(), old, &new, caller)
            .map(|_| ())
            .map_err(|e| match e {
                ReviewRefusal::NotOne { .. } => "one",
                ReviewRefusal::Duplicate => "duplicate",
                ReviewRefusal::NotAppendOnly => "append-only",
                ReviewRefusal::NotYourName { .. } => "name",
                ReviewRefusal::NotYourGroups(_) => "groups",
                ReviewRefusal::NoSuchItem(_) => "item",
                ReviewRefusal::NotOpen(_) => "open",
                ReviewRefusal::ControllerField(_) => "controller field",
                ReviewRefusal::ControllerDecides => "controller decides",
                other => panic!("{what}: unexpected {other:?}"),
            });
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn self_review_is_refused_in_a_status_write() {
    let old = filled(&[elig("pay", ROLE).users(&["carol"])], &[]);
    let carol_groups = groups(&["sre-leads"]);
    let mut new = old.clone();
    new.decisions.push(decision(
        "pay/User/carol",
        ReviewDecision::Keep,
        "carol",
        &["sre-leads"],
    ));
    let got = decisions::check_status_write(
        &spec(),
        &old,
        &new,
        Caller {
            username: "carol",
            groups: &carol_groups,
            is_controller: false,
        },
    );
    assert!(
        matches!(got, Err(ReviewRefusal::SelfReview { .. })),
        "{got:?}"
    );
}

#[test]
fn outcomes_last_valid_decision_else_default() {
    let mut status = filled(
        &[elig("pay", ROLE).users(&["alice", "mallory", "erin"])],
        &[],
    );
    status.decisions = vec![
        decision("pay/User/alice", ReviewDecision::Remove, "bob", &[]),
        decision(
            "pay/User/alice",
            ReviewDecision::Keep,
            "carol",
            &["sre-leads"],
        ),
        decision("pay/User/mallory", ReviewDecision::Remove, "bob", &[]),
        // Not admitted by the policies, but in the status anyway: ignored.
        decision(
            "pay/User/erin",
            ReviewDecision::Keep,
            "erin",
            &["sre-leads"],
        ),
        decision(
            "pay/User/erin",
            ReviewDecision::Keep,
            "system:serviceaccount:x:y",
            &["sre-leads"],
        ),
    ];
    let keep_by_default = decisions::outcomes(&spec(), &status);
    assert_eq!(
        keep_by_default,
        [
            ReviewDecision::Keep,
            ReviewDecision::Remove,
            ReviewDecision::Keep
        ]
    );
    let mut strict = spec();
    strict.default_decision = ReviewDecision::Remove;
    assert_eq!(
        decisions::outcomes(&strict, &status),
        [
            ReviewDecision::Keep,
            ReviewDecision::Remove,
            ReviewDecision::Remove
        ]
    );
    let closed = decisions::close(&strict, &status, t0());
    assert_eq!(closed.phase, Some(ReviewPhase::Closed));
    assert_eq!(closed.closed_at, Some(to_k8s(t0())));
    assert_eq!(closed.items[2].outcome, Some(ReviewDecision::Remove));
}

fn closed_review(
    name: &str,
    e: &Eligibility,
    outcomes: &[(&str, ReviewDecision)],
    closed_at: DateTime<Utc>,
) -> AccessReview {
    let mut status = filled(std::slice::from_ref(e), &[]);
    for item in &mut status.items {
        item.outcome = outcomes
            .iter()
            .find(|(s, _)| *s == item.subject.name)
            .map(|(_, d)| *d);
    }
    status.phase = Some(ReviewPhase::Closed);
    status.closed_at = Some(to_k8s(closed_at));
    let mut r = AccessReview::new(name, spec());
    r.status = Some(status);
    r
}

#[test]
fn a_removal_holds_while_the_eligibility_names_the_same_subjects() {
    let e = elig("pay", ROLE).users(&["alice", "bob"]);
    let q1 = closed_review(
        "q1",
        &e,
        &[
            ("alice", ReviewDecision::Remove),
            ("bob", ReviewDecision::Keep),
        ],
        t0(),
    );
    let removals = decisions::removals(&e, &[&q1]);
    assert_eq!(
        removals,
        [decisions::Removal {
            subject: SubjectRef::user("alice"),
            review: "q1".into(),
            closed_at: t0()
        }]
    );
    let honoured: Vec<&str> = decisions::honoured(&e, &removals)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(honoured, ["bob"]);
    // Git edited something else (generation 2, same subjects): the removal still holds.
    let mut edited = e.clone();
    edited.metadata.generation = Some(2);
    edited.spec.max_duration = None;
    assert_eq!(decisions::removals(&edited, &[&q1]).len(), 1);
    // Git changed who is named (dropped alice, or added carol): lifted.
    let dropped = elig("pay", ROLE).users(&["bob"]);
    assert!(decisions::removals(&dropped, &[&q1]).is_empty());
    let widened = elig("pay", ROLE).users(&["alice", "bob", "carol"]);
    assert!(decisions::removals(&widened, &[&q1]).is_empty());
    // The same subjects in another order are the same subjects.
    let reordered = elig("pay", ROLE).users(&["bob", "alice"]);
    assert_eq!(decisions::removals(&reordered, &[&q1]).len(), 1);
    // An item filled before the digest existed holds for its generation only.
    let mut legacy = q1.clone();
    if let Some(s) = legacy.status.as_mut() {
        for item in &mut s.items {
            item.eligibility_subjects = None;
        }
    }
    assert_eq!(decisions::removals(&e, &[&legacy]).len(), 1);
    assert!(decisions::removals(&edited, &[&legacy]).is_empty());
    // Recreated (new uid): neither.
    let mut recreated = e.clone();
    recreated.metadata.uid = Some("uid-new".into());
    assert!(decisions::removals(&recreated, &[&q1]).is_empty());
    // A later review that keeps alice lifts it; an earlier one does not.
    let later_keep = closed_review("q2", &e, &[("alice", ReviewDecision::Keep)], t0() + days(1));
    assert!(decisions::removals(&e, &[&q1, &later_keep]).is_empty());
    let earlier_keep = closed_review("q0", &e, &[("alice", ReviewDecision::Keep)], t0() - days(1));
    assert_eq!(decisions::removals(&e, &[&earlier_keep, &q1]).len(), 1);
    // An open review removes nobody.
    let mut open = q1.clone();
    if let Some(s) = open.status.as_mut() {
        s.phase = Some(ReviewPhase::Open);
    }
    assert!(decisions::removals(&e, &[&open]).is_empty());
}

#[test]
fn counts_for_the_printer_columns() {
    let mut status = filled(&[elig("pay", ROLE).users(&["alice", "mallory"])], &[]);
    status.decisions = vec![
        decision("pay/User/alice", ReviewDecision::Keep, "bob", &[]),
        decision("pay/User/alice", ReviewDecision::Remove, "bob", &[]),
    ];
    assert_eq!(review::counts(&status), (2, 1));
}
