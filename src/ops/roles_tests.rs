use super::*;
use crate::api::{
    ActivationRequestSpec, ActivationRequestStatus, ApprovalPolicy, Approvers, EligibilitySpec,
    PrivilegedRoleSpec, RoleKind, RoleRef, Scope, SubjectRef,
};
use crate::time::to_k8s;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn who(name: &str, groups: &[&str]) -> Requester {
    Requester {
        username: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

fn role(
    name: &str,
    namespaces: &[&str],
    max: &str,
    approvers: &[&str],
    groups: &[&str],
) -> PrivilegedRole {
    PrivilegedRole::new(
        name,
        PrivilegedRoleSpec {
            description: None,
            role_ref: RoleRef {
                kind: RoleKind::ClusterRole,
                name: "edit".into(),
                namespace: None,
            },
            scope: Scope {
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                cluster_wide: namespaces.is_empty(),
            },
            default_duration: "1h".parse().unwrap(),
            max_duration: max.parse().unwrap(),
            max_continuous_duration: None,
            approval: ApprovalPolicy {
                required_approvals: 1,
                extension_required_approvals: None,
                approvers: Approvers {
                    users: approvers.iter().map(|s| s.to_string()).collect(),
                    groups: groups.iter().map(|s| s.to_string()).collect(),
                },
                pending_timeout: "1h".parse().unwrap(),
            },
            require_justification: true,
            ticket_pattern: None,
            require_requester_attributes: None,
            budget: None,
            idle_timeout: None,
            on_footholds: Default::default(),
            break_glass: false,
        },
    )
}

fn elig(name: &str, role: &str, subjects: Vec<SubjectRef>) -> Eligibility {
    Eligibility::new(
        name,
        EligibilitySpec {
            role: role.into(),
            subjects,
            namespaces: vec![],
            max_duration: None,
            not_before: None,
            not_after: None,
            budget: None,
        },
    )
}

#[test]
fn eligible_by_user_or_group_with_the_narrower_limits() {
    let roles = [
        role("db", &["payments", "ledger"], "4h", &["bob"], &[]),
        role("ns-reader", &[], "2h", &["bob"], &[]),
    ];
    let mut narrowed = elig("alice-db", "db", vec![SubjectRef::user("alice")]);
    narrowed.spec.namespaces = vec!["payments".into(), "elsewhere".into()];
    narrowed.spec.max_duration = Some("30m".parse().unwrap());
    narrowed.spec.not_after = Some(to_k8s(now() + Duration::days(1)));
    let eligs = [
        narrowed,
        elig(
            "oncall-ns",
            "ns-reader",
            vec![SubjectRef::group("payments-oncall")],
        ),
        elig("bob-db", "db", vec![SubjectRef::user("bob")]),
        elig("gone", "missing-role", vec![SubjectRef::user("alice")]),
    ];
    let got = activatable(&who("alice", &["payments-oncall"]), &roles, &eligs, now());
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0].role, "db");
    assert_eq!(got[0].namespaces, vec!["payments"]);
    assert_eq!(got[0].max_duration, Duration::minutes(30));
    assert_eq!(got[0].default_duration, Duration::minutes(30));
    assert_eq!(got[0].eligible_until, Some(now() + Duration::days(1)));
    assert!(got[0].eligible_now);
    assert_eq!(got[1].role, "ns-reader");
    assert!(got[1].cluster_wide);
    assert_eq!(got[1].max_duration, Duration::hours(2));
}

#[test]
fn window_decides_what_is_listed() {
    let roles = [role("db", &["payments"], "4h", &["bob"], &[])];
    let mut later = elig("later", "db", vec![SubjectRef::user("alice")]);
    later.spec.not_before = Some(to_k8s(now() + Duration::hours(2)));
    let mut over = elig("over", "db", vec![SubjectRef::user("alice")]);
    over.spec.not_after = Some(to_k8s(now() - Duration::seconds(1)));
    let got = activatable(&who("alice", &[]), &roles, &[later, over], now());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].eligibility, "later");
    assert!(!got[0].eligible_now);
    assert_eq!(got[0].eligible_from, Some(now() + Duration::hours(2)));
}

#[test]
fn nobody_eligible_gets_nothing() {
    let roles = [role("db", &["payments"], "4h", &["bob"], &[])];
    let eligs = [elig("a", "db", vec![SubjectRef::user("alice")])];
    assert!(activatable(&who("mallory", &["developers"]), &roles, &eligs, now()).is_empty());
}

fn request_by(requester: &str, approvals: Vec<Approval>) -> ActivationRequest {
    let mut ar = ActivationRequest::new(
        "r1",
        ActivationRequestSpec {
            role: "db".into(),
            namespaces: vec!["payments".into()],
            duration: None,
            justification: Some("x".into()),
            ticket: None,
            start_at: None,
            cancel: false,
            extends: None,
            requester: Some(who(requester, &[])),
        },
    );
    ar.status = Some(ActivationRequestStatus {
        approvals,
        ..Default::default()
    });
    ar
}

fn approval(by: &str) -> Approval {
    Approval {
        approver: by.into(),
        groups: vec![],
        decision: Decision::Approved,
        reason: None,
        time: None,
    }
}

#[test]
fn who_may_decide() {
    let db = role("db", &["payments"], "4h", &["bob"], &["sre-leads"]);
    let ar = request_by("alice", vec![]);
    assert_eq!(can_decide(&who("bob", &[]), &ar, Some(&db)), Ok(()));
    assert_eq!(
        can_decide(&who("carol", &["sre-leads"]), &ar, Some(&db)),
        Ok(())
    );
    let kind = |me: Requester, ar: &ActivationRequest, role: Option<&PrivilegedRole>| {
        can_decide(&me, ar, role).unwrap_err().kind
    };
    assert_eq!(
        kind(who("alice", &["sre-leads"]), &ar, Some(&db)),
        RefusalKind::SelfApproval
    );
    assert_eq!(
        kind(who("mallory", &["developers"]), &ar, Some(&db)),
        RefusalKind::NotAnApprover
    );
    let sa = who("system:serviceaccount:ci:robot", &["sre-leads"]);
    assert_eq!(kind(sa, &ar, Some(&db)), RefusalKind::ServiceAccount);
    let decided = request_by("alice", vec![approval("bob")]);
    assert_eq!(
        kind(who("bob", &[]), &decided, Some(&db)),
        RefusalKind::AlreadyDecided
    );
}

#[test]
fn without_the_role_only_what_the_request_shows_is_checked() {
    let ar = request_by("alice", vec![approval("bob")]);
    assert_eq!(can_decide(&who("mallory", &[]), &ar, None), Ok(()));
    assert_eq!(
        can_decide(&who("alice", &[]), &ar, None).unwrap_err().kind,
        RefusalKind::SelfApproval
    );
    assert_eq!(
        can_decide(&who("bob", &[]), &ar, None).unwrap_err().kind,
        RefusalKind::AlreadyDecided
    );
}
