use super::*;
use crate::api::{
    ActivationRequestSpec, ActivationRequestStatus, Approval, BindingRef, Phase, Requester,
};
use crate::time::{to_k8s, to_k8s_micro};
use chrono::{Duration, TimeZone};
use k8s_openapi::api::core::v1::EventSeries;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn request() -> ActivationRequest {
    let mut ar = ActivationRequest::new(
        "alice-db-x1",
        ActivationRequestSpec {
            role: "db".into(),
            namespaces: vec!["payments".into()],
            duration: Some("30m".parse().unwrap()),
            justification: Some("INC-7 pods crash".into()),
            ticket: Some("INC-7".into()),
            start_at: None,
            cancel: false,
            extends: None,
            requester: Some(Requester {
                username: "alice".into(),
                ..Default::default()
            }),
        },
    );
    ar.metadata.creation_timestamp = Some(to_k8s(t0()));
    ar
}

fn approval(by: &str, decision: Decision, at: Option<DateTime<Utc>>) -> Approval {
    Approval {
        approver: by.into(),
        groups: vec![],
        decision,
        reason: Some("ok".into()),
        time: at.map(to_k8s),
    }
}

#[test]
fn an_approved_active_request_reads_in_order() {
    let mut ar = request();
    ar.status = Some(ActivationRequestStatus {
        phase: Some(Phase::Active),
        approvals: vec![approval(
            "bob",
            Decision::Approved,
            Some(t0() + Duration::seconds(40)),
        )],
        activated_at: Some(to_k8s(t0() + Duration::seconds(41))),
        expires_at: Some(to_k8s(t0() + Duration::seconds(41 + 1800))),
        bindings: vec![BindingRef {
            kind: "RoleBinding".into(),
            namespace: Some("payments".into()),
            name: "kubepim-alice-db-x1".into(),
        }],
        ..Default::default()
    });
    let lines: Vec<(Option<DateTime<Utc>>, String)> = timeline(&ar, t0() + Duration::minutes(5))
        .into_iter()
        .map(|e| (e.at, e.what))
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                Some(t0()),
                "requested db in payments for 30m0s by alice: \"INC-7 pods crash\" (ticket INC-7)"
                    .into()
            ),
            (
                Some(t0() + Duration::seconds(40)),
                "approved by bob: \"ok\"".into()
            ),
            (
                Some(t0() + Duration::seconds(41)),
                "activated: RoleBinding payments/kubepim-alice-db-x1".into()
            ),
            (Some(t0() + Duration::seconds(1841)), "expires".into()),
        ]
    );
    // Later, the same instant is in the past.
    let later = timeline(&ar, t0() + Duration::hours(2));
    assert_eq!(later.last().unwrap().what, "expired");
}

#[test]
fn a_denied_request_ends_with_the_reason_and_untimed_approvals_keep_their_place() {
    let mut ar = request();
    let ended = t0() + Duration::seconds(9);
    ar.status = Some(ActivationRequestStatus {
        phase: Some(Phase::Denied),
        approvals: vec![approval("carol", Decision::Denied, None)],
        reason: Some("DeniedByApprover".into()),
        message: Some("denied by carol: ok".into()),
        conditions: vec![Condition {
            type_: "Denied".into(),
            status: "True".into(),
            reason: "DeniedByApprover".into(),
            message: String::new(),
            last_transition_time: to_k8s(ended),
            observed_generation: None,
        }],
        ..Default::default()
    });
    let got = timeline(&ar, t0());
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[1],
        Entry {
            at: None,
            what: "denied by carol: \"ok\"".into()
        }
    );
    assert_eq!(got[2].at, Some(ended));
    assert_eq!(
        got[2].what,
        "ended Denied (DeniedByApprover): denied by carol: ok"
    );
}

#[test]
fn events_read_as_type_reason_message_and_count() {
    let ev = Event {
        type_: Some("Warning".into()),
        reason: Some("Denied".into()),
        message: Some("denied by carol".into()),
        series: Some(EventSeries {
            count: Some(3),
            last_observed_time: Some(to_k8s_micro(t0())),
        }),
        ..Default::default()
    };
    assert_eq!(
        event_entry(&ev),
        Entry {
            at: Some(t0()),
            what: "Warning Denied: denied by carol (x3)".into()
        }
    );
    let plain = Event {
        reason: Some("Requested".into()),
        last_timestamp: Some(to_k8s(t0())),
        count: Some(1),
        ..Default::default()
    };
    assert_eq!(event_entry(&plain).what, "Normal Requested");
}
