use super::*;
use crate::api::{ActivationRequestStatus, Approval};

fn me() -> Requester {
    Requester {
        username: "alice".into(),
        uid: Some("uid-alice".into()),
        groups: vec!["payments-oncall".into(), "system:authenticated".into()],
        ..Default::default()
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[test]
fn prefix_is_role_then_user() {
    assert_eq!(
        name_prefix("payments-admin", "alice"),
        "payments-admin-alice-"
    );
    assert_eq!(
        name_prefix("db", "system:serviceaccount:ci:Deployer"),
        "db-system-serviceaccount-ci-deployer-"
    );
    assert_eq!(
        name_prefix("db", "alice@example.com"),
        "db-alice-example-com-"
    );
    assert_eq!(name_prefix("::", "@@"), "request-");
}

#[test]
fn generated_names_stay_dns_labels() {
    let long = "a".repeat(200);
    for (role, user) in [
        (long.as_str(), "alice"),
        ("db", long.as_str()),
        (long.as_str(), long.as_str()),
        ("role-with-dash-", "-user-"),
        (
            "x",
            "system:serviceaccount:some-very-long-namespace-name:some-very-long-sa-name",
        ),
    ] {
        let prefix = name_prefix(role, user);
        assert!(prefix.len() <= PREFIX_MAX, "{prefix}");
        // What the API server makes of it: prefix + 5 random characters.
        let name = format!("{prefix}x7k2q");
        assert!(is_dns_label(&name), "{name}");
    }
    // Both parts survive a very long role.
    assert!(name_prefix(&long, "alice").contains("-alice-"));
}

#[test]
fn build_carries_my_identity_and_a_generated_name() {
    let new = NewRequest {
        role: "db".into(),
        namespaces: vec!["payments".into()],
        duration: Some("30m".parse().unwrap()),
        justification: "INC-1".into(),
        ticket: Some("INC-1".into()),
        start_at: None,
        extends: None,
        name: None,
    };
    let ar = build(&new, &me());
    assert_eq!(ar.metadata.generate_name.as_deref(), Some("db-alice-"));
    assert_eq!(ar.metadata.name, None);
    assert_eq!(ar.spec.requester, Some(me()));
    assert_eq!(ar.spec.justification.as_deref(), Some("INC-1"));
    assert!(ar.status.is_none());

    let named = build(
        &NewRequest {
            name: Some("mine".into()),
            ..new
        },
        &me(),
    );
    assert_eq!(named.metadata.name.as_deref(), Some("mine"));
    assert_eq!(named.metadata.generate_name, None);
}

#[test]
fn approval_entry_is_what_fixtures_decide_writes() {
    let e = approval_entry(&me(), Decision::Denied, Some("use the runbook"));
    assert_eq!(
        e,
        json!({"approver": "alice", "groups": ["payments-oncall", "system:authenticated"],
               "decision": "Denied", "reason": "use the runbook"})
    );
    assert!(
        approval_entry(&me(), Decision::Approved, None)
            .get("reason")
            .is_none()
    );
}

fn with_status(status: Option<ActivationRequestStatus>) -> ActivationRequest {
    let mut ar = build(
        &NewRequest {
            role: "db".into(),
            namespaces: vec![],
            duration: None,
            justification: "x".into(),
            ticket: None,
            start_at: None,
            extends: None,
            name: Some("r".into()),
        },
        &me(),
    );
    ar.metadata.resource_version = Some("42".into());
    ar.status = status;
    ar
}

#[test]
fn first_approval_is_guarded_by_the_resource_version() {
    let entry = json!({"decision": "Approved"});
    assert_eq!(
        append_patch(&with_status(None), entry.clone()),
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
            {"op": "add", "path": "/status", "value": {"approvals": [entry]}},
        ])
    );
    let pending = ActivationRequestStatus::default();
    assert_eq!(
        append_patch(&with_status(Some(pending)), entry.clone()),
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
            {"op": "add", "path": "/status/approvals", "value": [entry]},
        ])
    );
}

#[test]
fn later_approvals_append_without_a_read_guard() {
    let status = ActivationRequestStatus {
        approvals: vec![Approval {
            approver: "bob".into(),
            groups: vec![],
            decision: Decision::Approved,
            reason: None,
            time: None,
        }],
        ..Default::default()
    };
    let entry = json!({"decision": "Approved"});
    assert_eq!(
        append_patch(&with_status(Some(status)), entry.clone()),
        json!([{"op": "add", "path": "/status/approvals/-", "value": entry}])
    );
}

#[test]
fn only_a_plain_422_is_a_lost_race() {
    let api = |code: u16, message: &str| {
        kube::Error::Api(
            kube::core::Status::failure(message, "Invalid")
                .with_code(code)
                .boxed(),
        )
    };
    assert!(lost_race(&api(
        422,
        "the server rejected our request: test operation failed"
    )));
    assert!(!lost_race(&api(
        422,
        "ValidatingAdmissionPolicy 'x' denied request"
    )));
    assert!(!lost_race(&api(403, "forbidden")));
}

#[test]
fn an_extension_keeps_the_role_and_namespaces_of_its_original() {
    let mut original = build(
        &NewRequest {
            role: "db".into(),
            namespaces: vec!["payments".into()],
            duration: None,
            justification: "INC-1".into(),
            ticket: None,
            start_at: None,
            extends: None,
            name: Some("db-alice-1".into()),
        },
        &me(),
    );
    original.metadata.resource_version = Some("7".into());
    let new = extension_of(
        &original,
        Some("30m".parse().unwrap()),
        "still on it".into(),
        None,
    );
    assert_eq!(new.extends.as_deref(), Some("db-alice-1"));
    assert_eq!(
        (new.role.as_str(), new.namespaces.clone()),
        ("db", vec!["payments".to_string()])
    );
    let ar = build(&new, &me());
    assert_eq!(ar.spec.extends.as_deref(), Some("db-alice-1"));
    assert_eq!(
        ar.spec.start_at, None,
        "an extension starts at the hand-over"
    );
    assert_eq!(ar.metadata.generate_name.as_deref(), Some("db-alice-"));
}
