//! `legitimacy::judge`: which managed-labelled bindings may stay. Nothing a binding says about
//! itself counts; only the request's recorded status and the role do.
use k8s_openapi::api::rbac::v1::Subject;

use super::builders::*;
use crate::api::{ActivationRequest, ActivationRequestStatus, BindingRef, Phase, PrivilegedRole};
use crate::policy::identity::requester_subject;
use crate::policy::legitimacy::{Illegitimate, Judgement, ManagedBinding, judge};
use crate::policy::lifecycle::{BindingKind, binding_name};

const REQ: &str = "alice-payments-1";
const UID: &str = "uid-1";

fn payments_admin() -> PrivilegedRole {
    role("payments-admin")
        .cluster_role("admin")
        .namespaces(&["payments", "billing"])
}

fn alice() -> Subject {
    requester_subject(&user("alice"))
}

fn req(status: ActivationRequestStatus) -> ActivationRequest {
    let mut r = ActivationRequest::new(
        REQ,
        request("payments-admin")
            .by(&user("alice"))
            .namespaces(&["payments"]),
    );
    r.metadata.uid = Some(UID.into());
    r.status = Some(status);
    r
}

fn rb_ref(namespace: &str) -> BindingRef {
    BindingRef {
        kind: "RoleBinding".into(),
        namespace: Some(namespace.into()),
        name: binding_name(REQ),
    }
}

/// Active from t0-10m until t0+50m, its RoleBinding in payments recorded.
fn active() -> ActivationRequestStatus {
    fresh()
        .approvals(&[approved_by("bob")])
        .active(at(-10), at(50))
        .bindings(&[rb_ref("payments")])
}

/// The binding the operator makes for REQ in payments, as owned data.
struct Shape {
    kind: BindingKind,
    namespace: Option<String>,
    name: String,
    role_ref_kind: String,
    role_ref_name: String,
    subjects: Vec<Subject>,
    uid: Option<String>,
}

fn genuine() -> Shape {
    Shape {
        kind: BindingKind::RoleBinding,
        namespace: Some("payments".into()),
        name: binding_name(REQ),
        role_ref_kind: "ClusterRole".into(),
        role_ref_name: "admin".into(),
        subjects: vec![alice()],
        uid: Some(UID.into()),
    }
}

impl Shape {
    fn view(&self) -> ManagedBinding<'_> {
        ManagedBinding {
            kind: self.kind,
            namespace: self.namespace.as_deref(),
            name: &self.name,
            role_ref_kind: &self.role_ref_kind,
            role_ref_name: &self.role_ref_name,
            subjects: &self.subjects,
            claimed_request_uid: self.uid.as_deref(),
        }
    }
}

fn verdict(shape: &Shape, request: Option<&ActivationRequest>) -> Judgement {
    judge(&shape.view(), request, Some(&payments_admin()), t0())
}

fn illegitimate(why: Illegitimate) -> Judgement {
    Judgement::Illegitimate(why)
}

#[test]
fn the_recorded_binding_of_an_active_request_stays_until_its_recorded_expiry() {
    let r = req(active());
    assert_eq!(
        verdict(&genuine(), Some(&r)),
        Judgement::Legitimate { until: at(50) }
    );
    // At the recorded expiry it goes, whatever the binding's own annotations say.
    assert_eq!(
        judge(&genuine().view(), Some(&r), Some(&payments_admin()), at(50)),
        illegitimate(Illegitimate::Expired)
    );
}

#[test]
fn an_active_request_without_a_recorded_expiry_keeps_nothing() {
    let r = req(active().with(|s| s.expires_at = None));
    assert_eq!(
        verdict(&genuine(), Some(&r)),
        illegitimate(Illegitimate::Expired)
    );
}

#[test]
fn forged_shapes_of_an_active_request_go() {
    let r = req(active());
    let cases: Vec<(&str, Shape, Illegitimate)> = vec![
        (
            "another name (kubepim-<other request>-x)",
            Shape {
                name: format!("{}-x", binding_name("other")),
                ..genuine()
            },
            Illegitimate::NotRecorded,
        ),
        (
            "the right name in a namespace never recorded (allowed by the role)",
            Shape {
                namespace: Some("billing".into()),
                ..genuine()
            },
            Illegitimate::NotRecorded,
        ),
        (
            "the right name as a ClusterRoleBinding",
            Shape {
                kind: BindingKind::ClusterRoleBinding,
                namespace: None,
                ..genuine()
            },
            Illegitimate::NotRecorded,
        ),
        (
            "another ClusterRole",
            Shape {
                role_ref_name: "cluster-admin".into(),
                ..genuine()
            },
            Illegitimate::WrongRole,
        ),
        (
            "a Role of the same name",
            Shape {
                role_ref_kind: "Role".into(),
                ..genuine()
            },
            Illegitimate::WrongRole,
        ),
        (
            "another subject",
            Shape {
                subjects: vec![requester_subject(&user("mallory"))],
                ..genuine()
            },
            Illegitimate::WrongSubjects,
        ),
        (
            "a second subject",
            Shape {
                subjects: vec![alice(), requester_subject(&user("mallory"))],
                ..genuine()
            },
            Illegitimate::WrongSubjects,
        ),
        (
            "no subject",
            Shape {
                subjects: vec![],
                ..genuine()
            },
            Illegitimate::WrongSubjects,
        ),
        (
            "the requester's group instead of the requester",
            Shape {
                subjects: vec![Subject {
                    kind: "Group".into(),
                    name: "alice".into(),
                    namespace: None,
                    api_group: Some("rbac.authorization.k8s.io".into()),
                }],
                ..genuine()
            },
            Illegitimate::WrongSubjects,
        ),
        (
            "another request's uid",
            Shape {
                uid: Some("uid-0".into()),
                ..genuine()
            },
            Illegitimate::RequestReplaced,
        ),
        (
            "no uid",
            Shape {
                uid: None,
                ..genuine()
            },
            Illegitimate::RequestReplaced,
        ),
    ];
    for (what, shape, why) in cases {
        assert_eq!(verdict(&shape, Some(&r)), illegitimate(why), "{what}");
    }
}

#[test]
fn a_request_that_granted_nothing_keeps_nothing_but_its_own_reconciler_judges_its_exact_binding() {
    // The reported attack: another name, pointing at the requester's own Pending request.
    let pending = req(fresh().phase(Phase::Pending));
    let forged = Shape {
        name: format!("{}-x", binding_name("other")),
        ..genuine()
    };
    assert_eq!(
        verdict(&forged, Some(&pending)),
        illegitimate(Illegitimate::NotRecorded)
    );
    // Exactly what the request's reconciler would create (an activation in flight, or a crash
    // between the binding and the record): it sees that name there and decides on the approvals.
    for status in [
        fresh(),
        fresh().phase(Phase::Pending),
        fresh().phase(Phase::Scheduled),
        fresh()
            .phase(Phase::Pending)
            .approvals(&[approved_by("bob")]),
    ] {
        assert_eq!(
            verdict(&genuine(), Some(&req(status.clone()))),
            Judgement::LeftToRequest,
            "{status:?}"
        );
    }
    // Anywhere else it is nobody's to keep.
    let approved = req(fresh()
        .phase(Phase::Pending)
        .approvals(&[approved_by("bob")]));
    for (what, shape) in [
        (
            "a namespace the request did not ask for",
            Shape {
                namespace: Some("billing".into()),
                ..genuine()
            },
        ),
        (
            "a namespace the role does not allow",
            Shape {
                namespace: Some("kube-system".into()),
                ..genuine()
            },
        ),
        (
            "a ClusterRoleBinding for a namespaced role",
            Shape {
                kind: BindingKind::ClusterRoleBinding,
                namespace: None,
                ..genuine()
            },
        ),
    ] {
        assert_eq!(
            verdict(&shape, Some(&approved)),
            illegitimate(Illegitimate::NotRecorded),
            "{what}"
        );
    }
    // The shape checks hold before activation too.
    let stranger = Shape {
        subjects: vec![requester_subject(&user("mallory"))],
        ..genuine()
    };
    assert_eq!(
        verdict(&stranger, Some(&approved)),
        illegitimate(Illegitimate::WrongSubjects)
    );
}

#[test]
fn a_cluster_wide_request_is_left_its_cluster_role_binding_only() {
    let cluster_admin = role("ops").cluster_role("admin");
    let mut r = ActivationRequest::new(REQ, request("ops").by(&user("alice")));
    r.metadata.uid = Some(UID.into());
    r.status = Some(fresh().phase(Phase::Pending));
    let crb = Shape {
        kind: BindingKind::ClusterRoleBinding,
        namespace: None,
        ..genuine()
    };
    assert_eq!(
        judge(&crb.view(), Some(&r), Some(&cluster_admin), t0()),
        Judgement::LeftToRequest
    );
    assert_eq!(
        judge(&genuine().view(), Some(&r), Some(&cluster_admin), t0()),
        illegitimate(Illegitimate::NotRecorded)
    );
}

#[test]
fn leftovers_of_ended_or_missing_requests_go() {
    assert_eq!(
        verdict(&genuine(), None),
        illegitimate(Illegitimate::RequestMissing)
    );
    for phase in [
        Phase::Expired,
        Phase::Denied,
        Phase::Cancelled,
        Phase::Revoked,
    ] {
        let ended = req(active().phase(phase));
        assert_eq!(
            verdict(&genuine(), Some(&ended)),
            illegitimate(Illegitimate::RequestEnded(phase)),
            "{phase:?}"
        );
    }
    let r = req(active());
    assert_eq!(
        judge(&genuine().view(), Some(&r), None, t0()),
        illegitimate(Illegitimate::RoleMissing)
    );
    let no_requester = {
        let mut r = req(active());
        r.spec.requester = None;
        r
    };
    assert_eq!(
        verdict(&genuine(), Some(&no_requester)),
        illegitimate(Illegitimate::WrongSubjects)
    );
}

#[test]
fn a_role_ref_changed_mid_grant_is_not_kept() {
    let r = req(active());
    let moved = payments_admin().cluster_role("edit");
    assert_eq!(
        judge(&genuine().view(), Some(&r), Some(&moved), t0()),
        illegitimate(Illegitimate::WrongRole)
    );
}

#[test]
fn a_namespaced_role_is_bound_only_in_its_namespace() {
    let home = role("payments-secrets").role_in("payments", "secret-reader");
    let mut r = ActivationRequest::new(REQ, request("payments-secrets").by(&user("alice")));
    r.metadata.uid = Some(UID.into());
    r.status = Some(active());
    let right = Shape {
        role_ref_kind: "Role".into(),
        role_ref_name: "secret-reader".into(),
        ..genuine()
    };
    assert_eq!(
        judge(&right.view(), Some(&r), Some(&home), t0()),
        Judgement::Legitimate { until: at(50) }
    );
    // The same Role name in another namespace is another Role.
    let mut elsewhere_status = active();
    elsewhere_status.bindings = vec![rb_ref("billing")];
    r.status = Some(elsewhere_status);
    let elsewhere = Shape {
        namespace: Some("billing".into()),
        ..right
    };
    assert_eq!(
        judge(&elsewhere.view(), Some(&r), Some(&home), t0()),
        illegitimate(Illegitimate::WrongRole)
    );
}

#[test]
fn reasons_are_a_bounded_set_and_messages_name_the_request() {
    let all = [
        Illegitimate::NoRequest,
        Illegitimate::RequestMissing,
        Illegitimate::RequestReplaced,
        Illegitimate::RequestEnded(Phase::Expired),
        Illegitimate::Expired,
        Illegitimate::RoleMissing,
        Illegitimate::NotRecorded,
        Illegitimate::WrongRole,
        Illegitimate::WrongSubjects,
    ];
    let mut reasons: Vec<&str> = all.iter().map(Illegitimate::reason).collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
    for why in &all[1..] {
        assert!(why.message(REQ).contains(REQ), "{why:?}");
    }
    assert!(!Illegitimate::NotRecorded.is_leftover());
    assert!(Illegitimate::Expired.is_leftover());
    for why in &all {
        assert_eq!(why.is_leftover(), *why == Illegitimate::Expired, "{why:?}");
    }
}

#[test]
fn a_service_account_requester_matches_with_or_without_an_empty_api_group() {
    let mut r = req(active());
    r.spec.requester = Some(sa("ci", "deployer"));
    let mut subject = requester_subject(&sa("ci", "deployer"));
    for api_group in [None, Some(String::new())] {
        subject.api_group = api_group.clone();
        let shape = Shape {
            subjects: vec![subject.clone()],
            ..genuine()
        };
        assert_eq!(
            verdict(&shape, Some(&r)),
            Judgement::Legitimate { until: at(50) },
            "{api_group:?}"
        );
    }
    // Another namespace's ServiceAccount of the same name is someone else.
    subject.namespace = Some("other".into());
    let shape = Shape {
        subjects: vec![subject],
        ..genuine()
    };
    assert_eq!(
        verdict(&shape, Some(&r)),
        illegitimate(Illegitimate::WrongSubjects)
    );
}
