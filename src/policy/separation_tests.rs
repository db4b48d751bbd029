//! The separation-of-duties detectors on a fixed clock, one table per detector.
use chrono::Duration;

use super::*;
use crate::policy::tests::builders::at;

/// `name`: a request of `role` by `requester`, made at minute `made`, approved by each of
/// `approvers` `after_s` seconds later and activated.
fn req(
    name: &str,
    role: &str,
    requester: &str,
    made: i64,
    approvers: &[&str],
    after_s: i64,
) -> Decided {
    let created_at = at(made);
    Decided {
        name: name.into(),
        role: role.into(),
        requester: requester.into(),
        created_at,
        approvals: approvers
            .iter()
            .map(|a| (a.to_string(), Some(created_at + Duration::seconds(after_s))))
            .collect(),
        activated: true,
        break_glass: false,
    }
}

fn kinds(findings: &[Finding]) -> Vec<(FindingKind, Vec<String>)> {
    findings
        .iter()
        .map(|f| (f.kind, f.people.clone()))
        .collect()
}

fn people(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// `now` is a day after minute 0; the window 30 days.
fn run(history: &[Decided]) -> Vec<Finding> {
    analyse(history, &Thresholds::default(), at(24 * 60))
}

#[test]
fn reciprocal_approvals_are_found_once_per_pair() {
    let history = [
        req("a1", "db-admin", "alice", 10, &["bob"], 600),
        req("b1", "db-admin", "bob", 20, &["alice"], 600),
        req("b2", "ops", "bob", 30, &["alice"], 600),
        // One-way: carol approves alice, alice never approves carol.
        req("a2", "db-admin", "alice", 40, &["carol"], 600),
    ];
    let all = run(&history);
    let found: Vec<&Finding> = all
        .iter()
        .filter(|f| f.kind == FindingKind::ReciprocalApproval)
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = found[0];
    assert_eq!(f.people, people(&["alice", "bob"]));
    assert_eq!(
        f.roles,
        ["db-admin", "ops"].iter().map(|r| r.to_string()).collect()
    );
    assert_eq!(f.requests.len(), 3);
    assert!(
        f.message
            .contains("alice and bob approve each other's requests: alice approved 2 of bob's, bob 1 of alice's"),
        "{}",
        f.message
    );
}

#[test]
fn only_the_window_counts() {
    // The same reciprocal pattern, but bob's approval of alice is 40 days old.
    let history = [
        req("a1", "db-admin", "alice", -40 * 24 * 60, &["bob"], 600),
        req("b1", "db-admin", "bob", 20, &["alice"], 600),
    ];
    assert!(run(&history).is_empty(), "{:#?}", run(&history));
}

#[test]
fn one_approver_covering_most_activations_of_a_role() {
    let mut history: Vec<Decided> = (0..9)
        .map(|i| {
            req(
                &format!("r{i}"),
                "db-admin",
                &format!("user{i}"),
                i,
                &["bob"],
                600,
            )
        })
        .collect();
    // Nine of nine: below the minimum of ten activations, nothing yet.
    assert!(
        !kinds(&run(&history)).contains(&(FindingKind::ApproverConcentration, people(&["bob"])))
    );
    history.push(req("r9", "db-admin", "user9", 9, &["carol"], 600));
    // Nine of ten (90 % ≥ 80 %).
    let found = run(&history);
    let f = found
        .iter()
        .find(|f| f.kind == FindingKind::ApproverConcentration)
        .expect("a concentration finding");
    assert_eq!(f.people, people(&["bob"]));
    assert!(
        f.message
            .contains("bob approved 9 of 10 activations of db-admin (90 %)"),
        "{}",
        f.message
    );
    // Spread over two approvers, five each: no finding.
    let spread: Vec<Decided> = (0..10)
        .map(|i| {
            let approver = if i % 2 == 0 { "bob" } else { "carol" };
            req(
                &format!("s{i}"),
                "ops",
                &format!("user{i}"),
                i,
                &[approver],
                600,
            )
        })
        .collect();
    assert!(run(&spread).is_empty(), "{:#?}", run(&spread));
}

#[test]
fn an_approver_who_requests_the_same_role_often() {
    let history = [
        req("c1", "db-admin", "carol", 1, &["dave"], 600),
        req("c2", "db-admin", "carol", 2, &["dave"], 600),
        req("c3", "db-admin", "carol", 3, &["erin"], 600),
        // carol approves someone else's db-admin request.
        req("f1", "db-admin", "frank", 4, &["carol"], 600),
        // dave approves db-admin but requested it only once.
        req("d1", "db-admin", "dave", 5, &["erin"], 600),
    ];
    let found = run(&history);
    let got: Vec<_> = found
        .iter()
        .filter(|f| f.kind == FindingKind::ApproverIsRequester)
        .collect();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].people, people(&["carol"]));
    assert!(
        got[0].message.contains(
            "carol approves db-admin (1 approval(s)) and requests it often (3 request(s))"
        ),
        "{}",
        got[0].message
    );
}

#[test]
fn break_glass_use_per_person() {
    let glass = |name: &str, who: &str, made: i64, activated: bool| Decided {
        break_glass: true,
        activated,
        ..req(name, "break-glass", who, made, &[], 0)
    };
    let history = [
        glass("g1", "alice", 1, true),
        glass("g2", "alice", 2, true),
        glass("g3", "alice", 3, true),
        glass("g4", "bob", 4, true),
        glass("g5", "bob", 5, true),
        // Never activated: not a use.
        glass("g6", "bob", 6, false),
    ];
    let found = run(&history);
    assert_eq!(
        kinds(&found),
        [(FindingKind::BreakGlassUse, people(&["alice"]))]
    );
    assert!(
        found[0]
            .message
            .contains("alice used break-glass 3 time(s) in 30 day(s)")
    );
}

#[test]
fn approvals_faster_than_a_person_reads() {
    let history = [
        req("q1", "db-admin", "alice", 1, &["bob"], 2),
        req("q2", "db-admin", "carol", 2, &["bob"], 1),
        // Five seconds is not too fast (the threshold is "less than").
        req("q3", "db-admin", "dave", 3, &["erin"], 5),
        // An approval without a time (from before admission stamped it) is not judged.
        Decided {
            approvals: vec![("erin".into(), None)],
            ..req("q4", "db-admin", "frank", 4, &[], 0)
        },
    ];
    let found = run(&history);
    assert_eq!(
        kinds(&found),
        [(FindingKind::FastApproval, people(&["bob"]))]
    );
    assert_eq!(found[0].requests.len(), 2);
    assert!(
        found[0]
            .message
            .contains("bob approved 2 request(s) for db-admin less than 5 s after they were made (quickest 1.0 s)"),
        "{}",
        found[0].message
    );
}

#[test]
fn a_findings_key_survives_new_evidence() {
    let two = [
        req("a1", "db-admin", "alice", 10, &["bob"], 600),
        req("b1", "db-admin", "bob", 20, &["alice"], 600),
    ];
    let mut three = two.to_vec();
    three.push(req("a2", "db-admin", "alice", 30, &["bob"], 600));
    let (before, after) = (run(&two), run(&three));
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].key(), after[0].key());
    assert_ne!(before[0].message, after[0].message);
}

#[test]
fn self_approvals_and_requests_without_a_requester_are_not_evidence() {
    use crate::policy::tests::builders::{self, RequestExt};
    let mut request = ActivationRequest::new(
        "x",
        builders::request("db-admin").by(&builders::user("alice")),
    );
    request.metadata.creation_timestamp = Some(crate::time::to_k8s(at(1)));
    request.status = Some(crate::api::ActivationRequestStatus {
        approvals: vec![crate::api::Approval {
            approver: "alice".into(),
            groups: vec![],
            decision: Decision::Approved,
            reason: None,
            time: Some(crate::time::to_k8s(at(1))),
        }],
        ..Default::default()
    });
    let decided = Decided::of(&request, false).expect("stamped");
    assert!(decided.approvals.is_empty(), "a self-approval never counts");
    request.spec.requester = None;
    assert!(Decided::of(&request, false).is_none());
}
