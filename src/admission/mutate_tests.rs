//! `/mutate` decisions: AdmissionReview JSON in, patch or refusal out.
use chrono::{DateTime, TimeZone, Utc};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

use super::*;
use crate::admission::fixtures::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

fn create(user: Value, object: Value) -> AdmissionRequest<DynamicObject> {
    parse(review_json("CREATE", None, user, object, None))
}

fn status_update(user: Value, old: Value, new: Value) -> AdmissionRequest<DynamicObject> {
    parse(review_json("UPDATE", Some("status"), user, new, Some(old)))
}

fn ops(m: Mutation) -> Vec<Value> {
    match m {
        Mutation::Patch(ops) => ops,
        Mutation::Deny(msg) => panic!("denied: {msg}"),
    }
}

fn denied(m: Mutation) -> String {
    match m {
        Mutation::Deny(msg) => msg,
        Mutation::Patch(ops) => panic!("admitted with {ops:?}"),
    }
}

/// The object after the API server applied our patch.
fn applied(req: &AdmissionRequest<DynamicObject>, ops: Vec<Value>) -> Value {
    let mut object = serde_json::to_value(req.object.as_ref().unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
    json_patch::patch(&mut object, &patch).expect("patch applies");
    object
}

fn stamped_alice() -> Value {
    json!({
        "username": "alice",
        "uid": "uid-alice",
        "groups": ["payments-oncall", "developers", "system:authenticated"],
        "extra": {"amr": ["pwd", "mfa"], "authentication.kubernetes.io/credential-id": ["X509SHA256=ab"]},
    })
}

// ------------------------------------------------------------------------------------------------
// CREATE

/// A literal review, exactly as kube-apiserver 1.32 posts it for `kubectl create` by alice.
const CREATE_BY_ALICE: &str = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"c1d5a7e2-0b52-4a53-a1f3-3d0bb0d7c7f1","kind":{"group":"kubepim.io","version":"v1alpha1","kind":"ActivationRequest"},"resource":{"group":"kubepim.io","version":"v1alpha1","resource":"activationrequests"},"requestKind":{"group":"kubepim.io","version":"v1alpha1","kind":"ActivationRequest"},"requestResource":{"group":"kubepim.io","version":"v1alpha1","resource":"activationrequests"},"name":"alice-payments","operation":"CREATE","userInfo":{"username":"alice","uid":"uid-alice","groups":["payments-oncall","developers","system:authenticated"]},"object":{"apiVersion":"kubepim.io/v1alpha1","kind":"ActivationRequest","metadata":{"creationTimestamp":null,"managedFields":[{"apiVersion":"kubepim.io/v1alpha1","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{".":{},"f:duration":{},"f:justification":{},"f:role":{}}},"manager":"kubectl-create","operation":"Update","time":"2026-03-02T10:00:00Z"}],"name":"alice-payments","uid":"7b0c3f55-5f2e-4b59-9f55-6a1f9f1f0d11"},"spec":{"duration":"1h","justification":"INC-1","role":"payments-admin"}},"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}"#;

#[test]
fn create_stamps_the_requester_and_adds_the_finalizer() {
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(CREATE_BY_ALICE).unwrap();
    let req: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
    let ops = ops(stamp_identities(&req, now()));
    assert_eq!(
        ops,
        vec![
            json!({"op": "add", "path": "/spec/requester",
                   "value": {"username": "alice", "uid": "uid-alice", "groups": ["payments-oncall", "developers", "system:authenticated"]}}),
            json!({"op": "add", "path": "/metadata/finalizers", "value": ["kubepim.io/revoke-bindings"]}),
        ]
    );
}

#[test]
fn forged_requester_is_overwritten_with_the_caller() {
    let forged = json!({"username": "bob", "uid": "uid-bob", "groups": ["system:masters"], "extra": {"amr": ["mfa"], "x": ["y"]}});
    let mut s = spec();
    s["requester"] = forged;
    let req = create(alice(), request_object(s, None, None));
    let object = applied(&req, ops(stamp_identities(&req, now())));
    assert_eq!(object["spec"]["requester"], stamped_alice());
    // Everything else the requester wrote is kept.
    assert_eq!(object["spec"]["role"], "payments-admin");
    assert_eq!(object["spec"]["justification"], "INC-1");
}

#[test]
fn groups_extra_and_uid_are_copied_from_user_info() {
    let req = create(alice(), request_object(spec(), None, None));
    let object = applied(&req, ops(stamp_identities(&req, now())));
    let requester: crate::api::Requester =
        serde_json::from_value(object["spec"]["requester"].clone()).unwrap();
    assert_eq!(requester.username, "alice");
    assert_eq!(requester.uid.as_deref(), Some("uid-alice"));
    assert_eq!(
        requester.groups,
        ["payments-oncall", "developers", "system:authenticated"]
    );
    assert_eq!(requester.extra["amr"], ["pwd", "mfa"]);
    assert_eq!(
        requester.extra["authentication.kubernetes.io/credential-id"],
        ["X509SHA256=ab"]
    );
}

#[test]
fn a_caller_without_groups_or_extra_gets_neither() {
    let req = create(
        json!({"username": "carol"}),
        request_object(spec(), None, None),
    );
    let object = applied(&req, ops(stamp_identities(&req, now())));
    assert_eq!(object["spec"]["requester"], json!({"username": "carol"}));
}

#[test]
fn finalizer_is_added_once() {
    // None yet: the list is created.
    let req = create(alice(), request_object(spec(), None, None));
    let once = applied(&req, ops(stamp_identities(&req, now())));
    assert_eq!(
        once["metadata"]["finalizers"],
        json!(["kubepim.io/revoke-bindings"])
    );
    // Someone else's finalizer: ours is appended.
    let req = create(
        alice(),
        request_object(spec(), None, Some(json!(["example.com/keep"]))),
    );
    let object = applied(&req, ops(stamp_identities(&req, now())));
    assert_eq!(
        object["metadata"]["finalizers"],
        json!(["example.com/keep", "kubepim.io/revoke-bindings"])
    );
    // Already there (written by the caller, or a reinvocation): not added again, nor anything else.
    let req = create(alice(), once);
    assert_eq!(ops(stamp_identities(&req, now())), Vec::<Value>::new());
}

#[test]
fn create_without_a_username_is_refused() {
    let req = create(
        json!({"groups": ["system:unauthenticated"]}),
        request_object(spec(), None, None),
    );
    assert!(denied(stamp_identities(&req, now())).contains("no username"));
}

#[test]
fn review_carries_uid_patch_type_and_patch() {
    let req = create(alice(), request_object(spec(), None, None));
    let response = review(&req, now());
    assert!(response.allowed);
    assert_eq!(response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    let json = serde_json::to_value(response.into_review()).unwrap();
    assert_eq!(json["response"]["patchType"], "JSONPatch");
    assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(json["kind"], "AdmissionReview");
    // kube encodes the patch bytes as a list of numbers, which the API server's decoder accepts
    // for a []byte field as well as base64.
    let bytes: Vec<u8> =
        serde_json::from_value(json["response"]["patch"].clone()).expect("patch bytes");
    let ops: Vec<Value> = serde_json::from_slice(&bytes).expect("a JSON patch");
    assert_eq!(ops[0]["path"], "/spec/requester");
}

#[test]
fn other_resources_and_operations_pass_unchanged() {
    let mut review = review_json(
        "CREATE",
        None,
        alice(),
        request_object(spec(), None, None),
        None,
    );
    review["request"]["resource"]["resource"] = json!("privilegedroles");
    assert_eq!(
        ops(stamp_identities(&parse(review), now())),
        Vec::<Value>::new()
    );
    // An UPDATE of the main resource (e.g. spec.cancel) is not stamped.
    let obj = request_object(spec(), None, None);
    let req = parse(review_json("UPDATE", None, alice(), obj.clone(), Some(obj)));
    assert_eq!(ops(stamp_identities(&req, now())), Vec::<Value>::new());
}

// ------------------------------------------------------------------------------------------------
// UPDATE of /status: approvals

fn carol_approved() -> Value {
    json!({"approver": "carol", "groups": ["sre-leads", "payments-oncall", "system:authenticated"],
           "decision": "Approved", "reason": "ok", "time": "2026-03-02T09:58:00Z"})
}

fn pending(approvals: Vec<Value>) -> Value {
    let mut status = json!({"phase": "Pending", "reason": "AwaitingApproval"});
    if !approvals.is_empty() {
        status["approvals"] = Value::Array(approvals);
    }
    request_object(
        spec(),
        Some(status),
        Some(json!(["kubepim.io/revoke-bindings"])),
    )
}

#[test]
fn appended_approval_gets_approver_groups_and_time_from_the_caller() {
    let old = pending(vec![]);
    let new = pending(vec![
        json!({"decision": "Approved", "reason": "looks fine"}),
    ]);
    let req = status_update(bob(), old, new);
    let object = applied(&req, ops(stamp_identities(&req, now())));
    assert_eq!(
        object["status"]["approvals"],
        json!([{"approver": "bob", "groups": ["sre-leads", "system:authenticated"],
                "decision": "Approved", "reason": "looks fine", "time": "2026-03-02T10:00:00Z"}])
    );
}

#[test]
fn forged_approver_groups_and_time_are_overwritten() {
    let old = pending(vec![carol_approved()]);
    let forged = json!({"approver": "carol-2", "groups": ["system:masters"], "decision": "Denied",
                        "reason": "no", "time": "2020-01-01T00:00:00Z"});
    let new = pending(vec![carol_approved(), forged]);
    let req = status_update(bob(), old, new);
    let ops = ops(stamp_identities(&req, now()));
    // Only the appended entry is touched.
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["path"], "/status/approvals/1");
    let object = applied(&req, ops);
    assert_eq!(
        object["status"]["approvals"],
        json!([carol_approved(), {"approver": "bob", "groups": ["sre-leads", "system:authenticated"],
                "decision": "Denied", "reason": "no", "time": "2026-03-02T10:00:00Z"}])
    );
}

#[test]
fn approver_without_groups_records_none() {
    let old = pending(vec![]);
    let new = pending(vec![
        json!({"decision": "Approved", "groups": ["sre-leads"]}),
    ]);
    let req = status_update(json!({"username": "dave"}), old, new);
    let object = applied(&req, ops(stamp_identities(&req, now())));
    assert_eq!(
        object["status"]["approvals"],
        json!([{"approver": "dave", "decision": "Approved", "time": "2026-03-02T10:00:00Z"}])
    );
}

#[test]
fn pre_existing_entries_are_never_touched() {
    let dave = json!({"approver": "dave", "decision": "Approved"});
    let old = pending(vec![carol_approved(), dave.clone()]);
    let new = pending(vec![
        carol_approved(),
        dave.clone(),
        json!({"decision": "Approved"}),
    ]);
    let req = status_update(bob(), old, new);
    let ops = ops(stamp_identities(&req, now()));
    assert!(
        ops.iter().all(|op| op["path"] == "/status/approvals/2"),
        "{ops:?}"
    );
    let object = applied(&req, ops);
    assert_eq!(object["status"]["approvals"][0], carol_approved());
    assert_eq!(object["status"]["approvals"][1], dave);
}

#[test]
fn controller_status_write_passes_unchanged() {
    let old = pending(vec![carol_approved()]);
    let mut new = pending(vec![carol_approved()]);
    new["status"]["phase"] = json!("Active");
    new["status"]["expiresAt"] = json!("2026-03-02T11:00:00Z");
    let req = status_update(operator(), old, new);
    assert_eq!(ops(stamp_identities(&req, now())), Vec::<Value>::new());
    // Also the very first status write (no status before).
    let old = request_object(spec(), None, Some(json!(["kubepim.io/revoke-bindings"])));
    let req = status_update(operator(), old, pending(vec![]));
    assert_eq!(ops(stamp_identities(&req, now())), Vec::<Value>::new());
}

#[test]
fn changing_removing_or_reordering_existing_approvals_is_refused() {
    let dave = json!({"approver": "dave", "decision": "Approved"});
    let old = pending(vec![carol_approved(), dave.clone()]);
    let mut edited = carol_approved();
    edited["decision"] = json!("Denied");
    for (what, new) in [
        ("removed", pending(vec![carol_approved()])),
        ("edited", pending(vec![edited, dave.clone()])),
        ("reordered", pending(vec![dave.clone(), carol_approved()])),
        (
            "replaced and appended",
            pending(vec![
                dave.clone(),
                dave.clone(),
                json!({"decision": "Approved"}),
            ]),
        ),
        ("all cleared", pending(vec![])),
    ] {
        let req = status_update(bob(), old.clone(), new);
        assert!(
            denied(stamp_identities(&req, now())).contains("append-only"),
            "{what}"
        );
    }
}

#[test]
fn two_approvals_in_one_write_are_refused() {
    let old = pending(vec![]);
    let new = pending(vec![
        json!({"decision": "Approved"}),
        json!({"decision": "Approved"}),
    ]);
    let req = status_update(bob(), old, new);
    assert!(denied(stamp_identities(&req, now())).contains("one approval per write"));
}

#[test]
fn a_second_decision_by_the_same_approver_is_refused() {
    let old = pending(vec![carol_approved()]);
    let new = pending(vec![
        carol_approved(),
        json!({"approver": "someone-else", "decision": "Denied"}),
    ]);
    let carol = json!({"username": "carol", "groups": ["sre-leads", "payments-oncall", "system:authenticated"]});
    let req = status_update(carol, old, new);
    assert!(
        denied(stamp_identities(&req, now())).contains("carol has already recorded a decision")
    );
}

#[test]
fn an_approval_that_is_not_an_object_is_refused() {
    let req = status_update(bob(), pending(vec![]), pending(vec![json!("Approved")]));
    assert!(denied(stamp_identities(&req, now())).contains("must be an object"));
}

#[test]
fn anonymous_approval_is_refused() {
    let req = status_update(
        json!({}),
        pending(vec![]),
        pending(vec![json!({"decision": "Approved"})]),
    );
    assert!(denied(stamp_identities(&req, now())).contains("no username"));
}

#[test]
fn refusal_is_forbidden_with_the_message() {
    let req = status_update(bob(), pending(vec![carol_approved()]), pending(vec![]));
    let response = review(&req, now());
    assert!(!response.allowed);
    assert_eq!(response.result.code, 403);
    assert_eq!(response.result.reason, "Forbidden");
    assert!(response.result.message.contains("append-only"));
}

#[test]
fn status_update_without_the_old_object_is_refused() {
    let review = review_json(
        "UPDATE",
        Some("status"),
        bob(),
        pending(vec![carol_approved()]),
        None,
    );
    assert!(denied(stamp_identities(&parse(review), now())).contains("no old object"));
}
