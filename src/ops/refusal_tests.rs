//! The messages below are what a real API server returns with the chart's policies and the
//! operator's webhook (as the e2e suites see them).
use super::*;

const VAP: &str = "activationrequests.kubepim.io \"r1\" is forbidden: ValidatingAdmissionPolicy \
     'kubepim-request-status' with binding 'kubepim-request-status' denied request: ";

fn vap(rest: &str) -> String {
    format!("{VAP}{rest}")
}

#[test]
fn each_admission_refusal_of_a_decision_has_its_kind_and_sentence() {
    let cases = [
        (
            vap("you cannot approve or deny your own request: 'alice' is the requester of r1"),
            RefusalKind::SelfApproval,
            "it is your own request",
        ),
        (
            vap("'mallory' may not approve or deny requests for PrivilegedRole 'db': that needs the verb 'approve' on privilegedroles/db (group kubepim.io)"),
            RefusalKind::NotAnApprover,
            "not an approver",
        ),
        (
            "admission webhook \"identity.kubepim.io\" denied the request: bob has already recorded a decision on this request; approvals cannot be changed".to_string(),
            RefusalKind::AlreadyDecided,
            "already decided",
        ),
        (
            vap("request r1 is Denied: approvals after a terminal phase are refused"),
            RefusalKind::Terminal,
            "has already ended",
        ),
        (
            vap("request r1 was cancelled by its requester: approvals after a cancel are refused"),
            RefusalKind::Terminal,
            "has already ended",
        ),
        (
            vap("ServiceAccount 'system:serviceaccount:ci:robot' cannot approve or deny requests: approvals are decisions of people"),
            RefusalKind::ServiceAccount,
            "ServiceAccount cannot approve",
        ),
    ];
    for (message, kind, words) in cases {
        let r = explain(Op::Approve, "r1", 403, &message);
        assert_eq!(r.kind, kind, "{message}");
        assert!(r.sentence.contains(words), "{kind:?}: {}", r.sentence);
        // The server's message is never lost.
        assert_eq!(r.server.as_deref(), Some(message.as_str()));
        assert!(r.to_string().contains(&message));
    }
}

#[test]
fn sentences_name_the_operation_and_the_request() {
    let r = explain(
        Op::Deny,
        "alice-db-x1",
        403,
        &vap("you cannot approve or deny your own request"),
    );
    assert_eq!(
        r.sentence,
        "You cannot deny alice-db-x1: it is your own request. Another approver of its role has to decide."
    );
}

#[test]
fn rbac_refusal_is_no_permission() {
    let m = "activationrequests.kubepim.io \"r1\" is forbidden: User \"eve\" cannot patch resource \
             \"activationrequests/status\" in API group \"kubepim.io\" at the cluster scope";
    assert_eq!(
        explain(Op::Approve, "r1", 403, m).kind,
        RefusalKind::NoPermission
    );
}

#[test]
fn cancel_by_someone_else() {
    let m = "activationrequests.kubepim.io \"r1\" is forbidden: ValidatingAdmissionPolicy 'kubepim-request-update' with binding 'x' denied request: only the requester 'alice' may cancel request r1 (you are 'bob')";
    let r = explain(Op::Cancel, "r1", 403, m);
    assert_eq!(r.kind, RefusalKind::NotRequester);
    assert_eq!(r.sentence, "Only the requester of r1 can cancel it.");
}

#[test]
fn webhook_outage_is_not_a_decision() {
    let m = "Internal error occurred: failed calling webhook \"identity.kubepim.io\": failed to call webhook: Post \"https://127.0.0.1:9443/mutate\": dial tcp: connection refused";
    let r = explain(Op::Approve, "r1", 500, m);
    assert_eq!(r.kind, RefusalKind::WebhookUnavailable);
    assert!(r.sentence.contains("outage, not a decision"));
}

#[test]
fn create_refused_by_fast_feedback_quotes_the_controller() {
    let m = "admission webhook \"request.kubepim.io\" denied the request: NotEligible: mallory is not eligible for role db";
    let r = explain(Op::Create, "db-mallory-", 403, m);
    assert_eq!(r.kind, RefusalKind::RequestInvalid);
    assert_eq!(
        r.sentence,
        "The request would be denied, so it was not created: NotEligible: mallory is not eligible for role db"
    );
}

#[test]
fn name_taken_on_create() {
    let r = explain(
        Op::Create,
        "r1",
        409,
        "activationrequests.kubepim.io \"r1\" already exists",
    );
    assert_eq!(r.kind, RefusalKind::AlreadyExists);
    assert!(r.sentence.contains("--name"));
}

#[test]
fn unknown_messages_still_read_well() {
    let r = explain(Op::Approve, "r1", 422, "something new");
    assert_eq!(r.kind, RefusalKind::Other);
    assert_eq!(
        r.to_string(),
        "The API server refused to approve r1.\n  the API server said: something new"
    );
}

#[test]
fn local_refusals_have_no_server_message() {
    let r = Refusal::local(RefusalKind::AlreadyDecided, "done");
    assert_eq!(r.to_string(), "done");
}
