//! What the foothold remover deletes: `foothold_removal::plan` over a request's verdict and the
//! live re-check, fixed clock.
use chrono::Duration;
use k8s_openapi::api::rbac::v1::Subject;

use crate::api::{ActivationRequest, FootholdAction, FootholdRef, Phase};
use crate::policy::footholds::{Found, FoundKind, mark_pending};
use crate::policy::tests::builders::*;

use super::{RemovableKind, Skip, binding_still_a_foothold, plan};

fn foothold(kind: &str, ns: Option<&str>, name: &str, uid: Option<&str>) -> FootholdRef {
    FootholdRef {
        kind: kind.into(),
        namespace: ns.map(Into::into),
        name: name.into(),
        uid: uid.map(Into::into),
        why: "binds the requester".into(),
    }
}

/// alice's grant in payments, active t0+10m..t0+70m, expired at t0+70m, reviewed, with `found`.
fn ended_with(found: Vec<FootholdRef>) -> ActivationRequest {
    let spec = request("payments-admin")
        .by(&user("alice").in_groups(&["payments-oncall"]))
        .namespaces(&["payments"]);
    let status = fresh()
        .ended(Phase::Expired, at(10), at(70), at(70))
        .with(|s| s.footholds = found);
    let mut r = ActivationRequest::new("grant", spec);
    r.status = Some(status);
    r
}

const DAY: i64 = 24 * 60;

fn horizon() -> Duration {
    Duration::hours(24)
}

#[test]
fn only_bindings_and_token_secrets_with_a_uid_are_removed() {
    let r = ended_with(vec![
        foothold(
            "RoleBinding",
            Some("payments"),
            "edit-for-alice",
            Some("u1"),
        ),
        foothold("ClusterRoleBinding", None, "admin-for-alice", Some("u2")),
        foothold("Secret", Some("payments"), "backdoor-token", Some("u3")),
        // Reported, never deleted by the remover.
        foothold("Role", Some("payments"), "writer", Some("u4")),
        foothold("ServiceAccount", Some("payments"), "backdoor", Some("u5")),
        foothold("CertificateSigningRequest", None, "alice-cert", Some("u6")),
        foothold("ValidatingWebhookConfiguration", None, "hook", Some("u7")),
        foothold("Pod", Some("payments"), "runner", Some("u8")),
        foothold(
            "ServiceAccount token",
            Some("payments"),
            "create serviceaccounts/token backdoor",
            None,
        ),
        foothold("stream", Some("payments"), "create pods/exec web", None),
        // No uid (an audit-only entry): a deletion could not be made conditional on the object seen.
        foothold("RoleBinding", Some("payments"), "no-uid", None),
        foothold("Secret", Some("payments"), "written-secret", Some("")),
        // A namespaced kind without a namespace, a cluster kind with one: malformed, skipped.
        foothold("RoleBinding", None, "nowhere", Some("u9")),
        foothold("ClusterRoleBinding", Some("payments"), "odd", Some("u10")),
    ]);
    let removals = plan(&r, FootholdAction::Remove, at(71), horizon()).expect("a plan");
    let got: Vec<(RemovableKind, String, String)> = removals
        .iter()
        .map(|r| (r.kind, r.describe(), r.uid.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                RemovableKind::RoleBinding,
                "RoleBinding payments/edit-for-alice".to_string(),
                "u1".to_string()
            ),
            (
                RemovableKind::ClusterRoleBinding,
                "ClusterRoleBinding admin-for-alice".to_string(),
                "u2".to_string()
            ),
            (
                RemovableKind::TokenSecret,
                "Secret payments/backdoor-token".to_string(),
                "u3".to_string()
            ),
        ]
    );
    assert_eq!(removals[0].why, "binds the requester");
}

#[test]
fn nothing_is_removed_unless_the_role_says_remove_and_the_review_is_done() {
    let found = || {
        vec![foothold(
            "RoleBinding",
            Some("payments"),
            "edit-for-alice",
            Some("u1"),
        )]
    };
    let ended = ended_with(found());
    assert_eq!(
        plan(&ended, FootholdAction::Report, at(71), horizon()),
        Err(Skip::RoleReports)
    );
    // Still running.
    let mut active = ended_with(found());
    active.status = Some(
        fresh()
            .active(at(10), at(70))
            .with(|s| s.footholds = found()),
    );
    assert_eq!(
        plan(&active, FootholdAction::Remove, at(20), horizon()),
        Err(Skip::NotReviewed)
    );
    // Ended, review pending.
    let mut pending = ended_with(found());
    if let Some(s) = pending.status.as_mut() {
        mark_pending(s, None, at(70));
    }
    assert_eq!(
        plan(&pending, FootholdAction::Remove, at(71), horizon()),
        Err(Skip::NotReviewed)
    );
    // No status at all, or an end never recorded.
    let mut bare = ended_with(found());
    bare.status = None;
    assert_eq!(
        plan(&bare, FootholdAction::Remove, at(71), horizon()),
        Err(Skip::NotReviewed)
    );
    let mut no_end = ended_with(found());
    if let Some(s) = no_end.status.as_mut() {
        s.ended_at = None;
    }
    assert_eq!(
        plan(&no_end, FootholdAction::Remove, at(71), horizon()),
        Err(Skip::NotReviewed)
    );
    // Reviewed clean.
    assert_eq!(
        plan(
            &ended_with(vec![]),
            FootholdAction::Remove,
            at(71),
            horizon()
        ),
        Err(Skip::Nothing)
    );
}

#[test]
fn turning_remove_on_does_not_reach_back_into_history() {
    let r = ended_with(vec![foothold(
        "RoleBinding",
        Some("payments"),
        "edit-for-alice",
        Some("u1"),
    )]);
    // Ended at t0+70m: within the horizon up to exactly 24 h later, not after.
    assert!(plan(&r, FootholdAction::Remove, at(70 + DAY), horizon()).is_ok());
    assert_eq!(
        plan(&r, FootholdAction::Remove, at(71 + DAY), horizon()),
        Err(Skip::EndedLongAgo)
    );
}

fn live_binding(name: &str, created_min: i64, kind: &str, who: &str, ns: Option<&str>) -> Found {
    Found {
        subjects: vec![Subject {
            kind: kind.into(),
            name: who.into(),
            namespace: ns.map(Into::into),
            api_group: None,
        }],
        uid: Some("u1".into()),
        ..Found::new(
            FoundKind::RoleBinding,
            Some("payments".into()),
            name.into(),
            Some(at(created_min)),
        )
    }
}

fn live_account(name: &str, created_min: i64) -> Found {
    Found::new(
        FoundKind::ServiceAccount,
        Some("payments".into()),
        name.into(),
        Some(at(created_min)),
    )
}

#[test]
fn the_live_binding_is_judged_again_by_the_reviews_rule() {
    let r = ended_with(vec![]);
    let now = at(71);
    let cases: Vec<(&str, Found, Vec<Found>, bool)> = vec![
        (
            "binds alice, made during the grant",
            live_binding("a", 20, "User", "alice", None),
            vec![],
            true,
        ),
        (
            "binds one of alice's groups",
            live_binding("b", 20, "Group", "payments-oncall", None),
            vec![],
            true,
        ),
        (
            "binds a ServiceAccount made during the grant",
            live_binding("c", 30, "ServiceAccount", "backdoor", Some("payments")),
            vec![live_account("backdoor", 25)],
            true,
        ),
        (
            "binds a ServiceAccount that existed before the grant",
            live_binding("d", 30, "ServiceAccount", "builder", Some("payments")),
            vec![live_account("builder", 0)],
            false,
        ),
        (
            "binds a ServiceAccount that is gone",
            live_binding("e", 30, "ServiceAccount", "gone", Some("payments")),
            vec![],
            false,
        ),
        (
            "binds alice but was made before the grant",
            live_binding("f", 5, "User", "alice", None),
            vec![],
            false,
        ),
        (
            "binds alice but was made after the grant",
            live_binding("g", 80, "User", "alice", None),
            vec![],
            false,
        ),
        (
            "binds somebody else",
            live_binding("h", 20, "User", "bob", None),
            vec![],
            false,
        ),
        (
            "carries kubepim's managed label (the binding guard's business)",
            Found {
                managed: true,
                ..live_binding("i", 20, "User", "alice", None)
            },
            vec![],
            false,
        ),
        ("is not a binding", live_account("j", 20), vec![], false),
    ];
    for (what, binding, accounts, want) in cases {
        let got = binding_still_a_foothold(&r, &binding, &accounts, now);
        assert_eq!(got.is_ok(), want, "{what}: {got:?}");
    }
}

#[test]
fn the_live_check_needs_the_grant_it_judges() {
    let binding = live_binding("a", 20, "User", "alice", None);
    let mut no_requester = ended_with(vec![]);
    no_requester.spec.requester = None;
    assert!(binding_still_a_foothold(&no_requester, &binding, &[], at(71)).is_err());
    let mut never_active = ended_with(vec![]);
    never_active.status = Some(fresh().phase(Phase::Denied));
    assert!(binding_still_a_foothold(&never_active, &binding, &[], at(71)).is_err());
}
