//! What a grant left behind: `footholds::judge` over the objects a scan found, fixed clock.
use k8s_openapi::api::rbac::v1::Subject;

use super::builders::*;
use crate::policy::footholds::{Found, FoundKind, GrantWindow, condition, condition_of, judge};
use crate::policy::reasons;

fn object(kind: FoundKind, name: &str, created_min: i64) -> Found {
    Found::new(
        kind,
        Some("payments".into()),
        name.into(),
        Some(at(created_min)),
    )
}

fn cluster_object(kind: FoundKind, name: &str, created_min: i64) -> Found {
    Found {
        namespace: None,
        ..object(kind, name, created_min)
    }
}

fn binding(name: &str, created_min: i64, kind: &str, who: &str, ns: Option<&str>) -> Found {
    Found {
        subjects: vec![Subject {
            kind: kind.into(),
            name: who.into(),
            namespace: ns.map(Into::into),
            api_group: None,
        }],
        ..object(FoundKind::RoleBinding, name, created_min)
    }
}

/// alice held the grant from t0+10m to t0+70m.
fn alices_grant(groups: &[String]) -> GrantWindow<'_> {
    GrantWindow {
        requester: "alice",
        groups,
        from: at(10),
        until: at(70),
    }
}

#[test]
fn what_counts_as_a_foothold() {
    let groups = vec!["payments-oncall".to_string()];
    let found = vec![
        binding("edit-for-alice", 20, "User", "alice", None),
        binding("edit-for-oncall", 21, "Group", "payments-oncall", None),
        binding("for-bob", 22, "User", "bob", None),
        object(FoundKind::ServiceAccount, "backdoor", 23),
        binding(
            "backdoor-admin",
            24,
            "ServiceAccount",
            "backdoor",
            Some("payments"),
        ),
        binding(
            "backdoor-as-user",
            25,
            "User",
            "system:serviceaccount:payments:backdoor",
            None,
        ),
        binding("old-sa", 26, "ServiceAccount", "ci", Some("payments")),
        object(FoundKind::Role, "writer", 27),
        object(FoundKind::TokenSecret, "backdoor-token", 28),
        // Before and after the grant; and kubepim's own binding.
        binding("before", 5, "User", "alice", None),
        binding("after", 75, "User", "alice", None),
        Found {
            managed: true,
            ..binding("kubepim-r1", 10, "User", "alice", None)
        },
    ];
    let footholds = judge(&found, &alices_grant(&groups));
    let got: Vec<(&str, &str)> = footholds
        .iter()
        .map(|f| (f.found.name.as_str(), f.why))
        .collect();
    assert_eq!(
        got,
        [
            (
                "backdoor-admin",
                "binds a ServiceAccount created during the grant"
            ),
            (
                "backdoor-as-user",
                "binds a ServiceAccount created during the grant"
            ),
            ("edit-for-alice", "binds the requester"),
            ("edit-for-oncall", "binds a group of the requester"),
            ("writer", "created during the grant"),
            ("backdoor", "created during the grant"),
            (
                "backdoor-token",
                "a long-lived token created during the grant"
            ),
        ]
    );
}

#[test]
fn the_condition_says_what_was_found_and_how_precisely() {
    let none = condition(&[]);
    assert_eq!(
        (none.status, none.reason),
        (false, reasons::NO_FOOTHOLDS_FOUND)
    );
    let groups = vec![];
    let found = judge(
        &[binding("edit-for-alice", 20, "User", "alice", None)],
        &alices_grant(&groups),
    );
    let some = condition(&found);
    assert_eq!((some.status, some.reason), (true, reasons::FOOTHOLDS_FOUND));
    assert!(
        some.message
            .contains("RoleBinding payments/edit-for-alice (binds the requester)"),
        "{}",
        some.message
    );
    assert!(
        some.message.contains("not known without the audit record"),
        "{}",
        some.message
    );
}

/// The review's place after the revocation: pending once the grant ended, judged over the
/// uninterrupted elevation up to `endedAt`, and done once a verdict (or a failure) is written.
#[test]
fn a_review_is_pending_from_the_grants_end_to_its_verdict() {
    use crate::api::{ActivationRequestStatus, Phase};
    use crate::policy::footholds::{
        Reviewed, is_pending, mark_pending, review_window, reviewed_status,
    };
    use crate::time::to_k8s;

    let ended = |phase: Phase| ActivationRequestStatus {
        phase: Some(phase),
        activated_at: Some(to_k8s(at(10))),
        ended_at: Some(to_k8s(at(70))),
        ..Default::default()
    };
    let mut status = ended(Phase::Expired);
    assert!(!is_pending(&status), "no review asked for yet");
    mark_pending(&mut status, Some(1), at(70));
    assert!(is_pending(&status));
    assert_eq!(review_window(&status, at(99)), Some((at(10), at(70))));

    // An extension's review covers the whole uninterrupted elevation.
    let mut extended = status.clone();
    extended.continuous_since = Some(to_k8s(at(5)));
    assert_eq!(review_window(&extended, at(99)), Some((at(5), at(70))));
    // A status from before endedAt existed: up to now.
    let mut old = status.clone();
    old.ended_at = None;
    assert_eq!(review_window(&old, at(99)), Some((at(10), at(99))));
    // Never active: nothing to review.
    assert_eq!(
        review_window(&ActivationRequestStatus::default(), at(99)),
        None
    );

    // A grant still running is never "pending review", whatever its conditions say.
    let mut running = status.clone();
    running.phase = Some(Phase::Active);
    assert!(!is_pending(&running));

    for (outcome, want) in [
        (
            Ok(Reviewed {
                footholds: &[],
                unreadable: &[],
                audited: false,
            }),
            ("False", reasons::NO_FOOTHOLDS_FOUND),
        ),
        (
            Err("forbidden"),
            ("Unknown", reasons::FOOTHOLD_REVIEW_FAILED),
        ),
    ] {
        let done = reviewed_status(&status, outcome, Some(1), at(71));
        assert!(!is_pending(&done), "{outcome:?}");
        let c = done
            .conditions
            .iter()
            .find(|c| c.type_ == crate::api::conditions::FOOTHOLDS_FOUND)
            .expect("the condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), want);
        assert_eq!(done.phase, status.phase, "the verdict changes nothing else");
    }
    for phase in [Phase::Cancelled, Phase::Revoked, Phase::Expired] {
        let mut s = ended(phase);
        mark_pending(&mut s, None, at(70));
        assert!(is_pending(&s), "{phase:?}");
    }
}

/// Beyond RBAC: certificates the requester asked for (the API server records who), admission
/// webhooks made while a cluster-wide grant ran, and pods running as a ServiceAccount made during
/// the grant.
#[test]
fn certificates_webhooks_and_workloads_left_behind() {
    let csr = |name: &str, by: &str, created: i64| Found {
        requested_by: Some(by.into()),
        ..cluster_object(FoundKind::CertificateSigningRequest, name, created)
    };
    let pod = |name: &str, sa: &str, created: i64| Found {
        service_account: Some(sa.into()),
        ..object(FoundKind::Pod, name, created)
    };
    let found = vec![
        csr("alice-client", "alice", 20),
        // Someone else's certificate, and alice's from before the grant.
        csr("kubelet-serving", "system:node:n1", 21),
        csr("alice-old", "alice", 2),
        cluster_object(FoundKind::MutatingWebhookConfiguration, "inject", 22),
        cluster_object(FoundKind::ValidatingWebhookConfiguration, "gate", 23),
        cluster_object(FoundKind::ValidatingWebhookConfiguration, "older", 1),
        object(FoundKind::ServiceAccount, "miner", 24),
        pod("miner-0", "miner", 25),
        // A pod made during the grant as a ServiceAccount that was already there: not a foothold
        // of its own (its permissions did not come from the grant).
        pod("web-0", "default", 26),
        // A pod as `miner` in another namespace: `miner` there is not the new one.
        Found {
            namespace: Some("other".into()),
            ..pod("miner-elsewhere", "miner", 27)
        },
    ];
    let groups = vec![];
    let footholds = judge(&found, &alices_grant(&groups));
    let got: Vec<(&str, &str)> = footholds
        .iter()
        .map(|f| (f.found.name.as_str(), f.why))
        .collect();
    assert_eq!(
        got,
        [
            ("miner", "created during the grant"),
            (
                "alice-client",
                "a client certificate the requester asked for during the grant"
            ),
            (
                "gate",
                "an admission webhook created during the grant (sees or changes API writes)"
            ),
            (
                "inject",
                "an admission webhook created during the grant (sees or changes API writes)"
            ),
            (
                "miner-0",
                "runs as a ServiceAccount created during the grant"
            ),
        ]
    );
}

#[test]
fn the_condition_names_the_kinds_the_scan_could_not_read() {
    let clean = condition_of(&[], &["secrets", "pods"], false);
    assert!(!clean.status);
    assert!(
        clean
            .message
            .ends_with("not scanned (the operator may not list them): secrets, pods"),
        "{}",
        clean.message
    );
    assert!(!condition(&[]).message.contains("not scanned"));
}

/// With the audit record, the requester's own accepted writes are footholds by name — tokens
/// minted and streams opened included, which no scan can see — and an object both the record and
/// the scan found is listed once, with the record's reason.
#[test]
fn the_audit_record_names_what_the_requester_made() {
    use crate::api::NotableWrite;
    use crate::policy::footholds::{from_audit, merged};
    use crate::time::to_k8s;

    let write = |verb: &str, resource: &str, name: Option<&str>, code: i32| NotableWrite {
        verb: verb.into(),
        resource: resource.into(),
        namespace: Some("payments".into()),
        name: name.map(Into::into),
        code: Some(code),
        time: to_k8s(at(20)),
        audit_id: None,
    };
    let writes = [
        write(
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            Some("edit-for-alice"),
            201,
        ),
        write("create", "serviceaccounts/token", Some("backdoor"), 201),
        write("create", "pods/exec", Some("web-0"), 101),
        // Refused by the API server: nothing was made.
        write(
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            Some("denied"),
            403,
        ),
        // A deletion leaves nothing behind.
        write(
            "delete",
            "rolebindings.rbac.authorization.k8s.io",
            Some("old"),
            200,
        ),
        write(
            "patch",
            "validatingadmissionpolicies.admissionregistration.k8s.io",
            Some("p"),
            200,
        ),
    ];
    let audited = from_audit(&writes);
    let got: Vec<(String, &str)> = audited.iter().map(|f| (f.describe(), f.why)).collect();
    let want: Vec<(String, &str)> = [
        (
            "RoleBinding payments/edit-for-alice",
            "made by the requester (audit record)",
        ),
        (
            "ServiceAccount token payments/create serviceaccounts/token backdoor",
            "a token the requester minted (valid until it expires; it cannot be deleted)",
        ),
        (
            "stream payments/create pods/exec web-0",
            "a stream the requester opened (RBAC revocation does not close it: possibly still open)",
        ),
        (
            "write payments/patch validatingadmissionpolicies.admissionregistration.k8s.io p",
            "a write the requester made (audit record)",
        ),
    ]
    .into_iter()
    .map(|(d, why)| (d.to_string(), why))
    .collect();
    assert_eq!(got, want);

    // The scan found the same RoleBinding (and a ServiceAccount the record does not hold).
    let groups = vec![];
    let scanned = judge(
        &[
            Found {
                uid: Some("uid-of-edit".into()),
                ..binding("edit-for-alice", 20, "User", "alice", None)
            },
            object(FoundKind::ServiceAccount, "made-by-someone", 21),
        ],
        &alices_grant(&groups),
    );
    let all = merged(scanned, audited);
    let edit: Vec<_> = all
        .iter()
        .filter(|f| f.found.name == "edit-for-alice")
        .collect();
    assert_eq!(edit.len(), 1);
    assert_eq!(edit[0].why, "made by the requester (audit record)");
    // The record names it; the scan saw which object it is (a removal is conditional on it).
    assert_eq!(edit[0].found.uid.as_deref(), Some("uid-of-edit"));
    assert!(all.iter().any(|f| f.found.name == "made-by-someone"));
    let state = condition_of(&all, &[], true);
    assert!(
        state.message.contains("from the audit record"),
        "{}",
        state.message
    );
}
