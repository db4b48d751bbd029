//! Fast feedback: every refusal the controller would make at creation, with its exact wording.
use chrono::{DateTime, TimeZone, Utc};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};

use super::*;
use crate::admission::fixtures::*;
use crate::policy::reasons;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

/// payments-admin: the `admin` ClusterRole in payments or billing, 1h by default, 4h at most.
fn role() -> PrivilegedRole {
    serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1",
        "kind": "PrivilegedRole",
        "metadata": {"name": "payments-admin"},
        "spec": {
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "scope": {"namespaces": ["payments", "billing"]},
            "defaultDuration": "1h",
            "maxDuration": "4h",
            "approval": {"requiredApprovals": 1, "approvers": {"groups": ["sre-leads"]}},
            "requireJustification": true,
        }
    }))
    .expect("role")
}

fn role_with(f: impl FnOnce(&mut Value)) -> PrivilegedRole {
    let mut v = serde_json::to_value(role()).unwrap();
    f(&mut v["spec"]);
    serde_json::from_value(v).unwrap()
}

/// The payments-oncall group may use payments-admin.
fn oncall() -> Eligibility {
    serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1",
        "kind": "Eligibility",
        "metadata": {"name": "payments-oncall"},
        "spec": {"role": "payments-admin", "subjects": [{"kind": "Group", "name": "payments-oncall"}]}
    }))
    .expect("eligibility")
}

fn oncall_with(f: impl FnOnce(&mut Value)) -> Eligibility {
    let mut v = serde_json::to_value(oncall()).unwrap();
    f(&mut v["spec"]);
    serde_json::from_value(v).unwrap()
}

fn mallory() -> Value {
    json!({"username": "mallory", "uid": "uid-mallory", "groups": ["developers", "system:authenticated"]})
}

fn create_by(user: Value, spec: Value) -> AdmissionRequest<DynamicObject> {
    parse(review_json(
        "CREATE",
        None,
        user,
        request_object(spec, None, None),
        None,
    ))
}

fn check(
    user: Value,
    spec: Value,
    role: Option<&PrivilegedRole>,
    eligibilities: &[&Eligibility],
) -> Verdict {
    let req = create_by(user, spec);
    let candidate = candidate(&req).expect("a CREATE of an ActivationRequest");
    check_candidate(&candidate, role, eligibilities, &[], now())
}

/// Refused with `reason`, and with exactly the message the controller records.
fn assert_refused_like_the_controller(
    user: Value,
    spec_json: Value,
    role: &PrivilegedRole,
    eligibilities: &[&Eligibility],
    reason: &str,
) -> String {
    let verdict = check(user.clone(), spec_json.clone(), Some(role), eligibilities);
    let Verdict::Deny(refusal) = verdict else {
        panic!("admitted: {verdict:?}")
    };
    assert_eq!(refusal.reason, reason, "{refusal}");
    // The controller's view: the same spec, the requester it gets stamped.
    let typed: crate::api::ActivationRequestSpec = serde_json::from_value(spec_json).unwrap();
    let requester =
        crate::admission::requester_from(&serde_json::from_value(user).unwrap()).unwrap();
    let controller =
        crate::policy::validate(&typed, &requester, role, eligibilities, now()).unwrap_err();
    assert_eq!(refusal, controller);
    // What the caller sees after the API server's prefix.
    let response = respond(
        &create_by(json!({"username": "x"}), spec()),
        &Verdict::Deny(refusal.clone()),
    );
    assert!(!response.allowed);
    assert_eq!(response.result.code, 403);
    assert_eq!(
        response.result.message,
        format!("{}: {}", refusal.reason, refusal.message)
    );
    response.result.message
}

#[test]
fn eligible_request_is_admitted_without_warning() {
    assert_eq!(
        check(alice(), spec(), Some(&role()), &[&oncall()]),
        Verdict::Allow { warning: None }
    );
}

#[test]
fn not_eligible() {
    let message = assert_refused_like_the_controller(
        mallory(),
        spec(),
        &role(),
        &[&oncall()],
        reasons::NOT_ELIGIBLE,
    );
    assert_eq!(
        message,
        "NotEligible: mallory is not eligible for role payments-admin: no Eligibility names the user or any of their groups"
    );
}

#[test]
fn requester_is_the_caller_not_the_forged_field() {
    // mallory writes alice (eligible) as requester: checked as mallory.
    let mut s = spec();
    s["requester"] = json!({"username": "alice", "groups": ["payments-oncall"]});
    let Verdict::Deny(refusal) = check(mallory(), s, Some(&role()), &[&oncall()]) else {
        panic!("admitted")
    };
    assert!(
        refusal.message.starts_with("mallory is not eligible"),
        "{refusal}"
    );
}

#[test]
fn outside_the_eligibility_window() {
    let later = oncall_with(|s| s["notBefore"] = json!("2026-03-02T11:00:00Z"));
    let message = assert_refused_like_the_controller(
        alice(),
        spec(),
        &role(),
        &[&later],
        reasons::ELIGIBILITY_NOT_YET_VALID,
    );
    assert_eq!(
        message,
        "EligibilityNotYetValid: eligibility payments-oncall is valid only from 2026-03-02T11:00:00+00:00"
    );
    let ended = oncall_with(|s| s["notAfter"] = json!("2026-03-02T09:00:00Z"));
    let message = assert_refused_like_the_controller(
        alice(),
        spec(),
        &role(),
        &[&ended],
        reasons::ELIGIBILITY_EXPIRED,
    );
    assert_eq!(
        message,
        "EligibilityExpired: eligibility payments-oncall ended at 2026-03-02T09:00:00+00:00"
    );
}

#[test]
fn namespace_not_allowed() {
    let mut s = spec();
    s["namespaces"] = json!(["kube-system"]);
    let message = assert_refused_like_the_controller(
        alice(),
        s,
        &role(),
        &[&oncall()],
        reasons::NAMESPACE_OUTSIDE_SCOPE,
    );
    assert_eq!(
        message,
        "NamespaceNotAllowed: namespace kube-system is not allowed by role payments-admin, which allows [payments, billing]"
    );
    // Narrowed by the eligibility.
    let narrowed = oncall_with(|s| s["namespaces"] = json!(["billing"]));
    let message = assert_refused_like_the_controller(
        alice(),
        spec(),
        &role(),
        &[&narrowed],
        reasons::NAMESPACE_OUTSIDE_SCOPE,
    );
    assert_eq!(
        message,
        "NamespaceNotAllowed: namespace payments is not allowed by eligibility payments-oncall, which allows [billing]"
    );
}

#[test]
fn duration_over_the_maximum() {
    let mut s = spec();
    s["duration"] = json!("5h");
    let message = assert_refused_like_the_controller(
        alice(),
        s,
        &role(),
        &[&oncall()],
        reasons::DURATION_TOO_LONG,
    );
    assert_eq!(
        message,
        "DurationTooLong: duration 5h0m0s exceeds the maximum 4h0m0s of role payments-admin"
    );
    let short = oncall_with(|s| s["maxDuration"] = json!("30m"));
    let message = assert_refused_like_the_controller(
        alice(),
        spec(),
        &role(),
        &[&short],
        reasons::DURATION_TOO_LONG,
    );
    assert_eq!(
        message,
        "DurationTooLong: duration 1h0m0s exceeds the maximum 30m0s of eligibility payments-oncall"
    );
}

#[test]
fn justification_missing() {
    let mut s = spec();
    s.as_object_mut().unwrap().remove("justification");
    let message = assert_refused_like_the_controller(
        alice(),
        s,
        &role(),
        &[&oncall()],
        reasons::JUSTIFICATION_REQUIRED,
    );
    assert_eq!(
        message,
        "JustificationRequired: role payments-admin requires spec.justification"
    );
}

#[test]
fn ticket_missing_or_wrong() {
    let ticketed = role_with(|s| s["ticketPattern"] = json!("^INC-[0-9]+$"));
    let message = assert_refused_like_the_controller(
        alice(),
        spec(),
        &ticketed,
        &[&oncall()],
        reasons::TICKET_REQUIRED,
    );
    assert_eq!(
        message,
        "TicketRequired: role payments-admin requires spec.ticket matching ^INC-[0-9]+$"
    );
    let mut s = spec();
    s["ticket"] = json!("JIRA-1");
    let message = assert_refused_like_the_controller(
        alice(),
        s,
        &ticketed,
        &[&oncall()],
        reasons::TICKET_MISMATCH,
    );
    assert_eq!(
        message,
        "TicketMismatch: ticket JIRA-1 does not match ^INC-[0-9]+$ required by role payments-admin"
    );
    let mut s = spec();
    s["ticket"] = json!("INC-7");
    assert_eq!(
        check(alice(), s, Some(&ticketed), &[&oncall()]),
        Verdict::Allow { warning: None }
    );
}

#[test]
fn step_up_attributes_come_from_the_authenticator() {
    let step_up =
        role_with(|s| s["requireRequesterAttributes"] = json!({"key": "amr", "anyOf": ["hwk"]}));
    // alice authenticated with pwd+mfa, not a hardware key.
    let message = assert_refused_like_the_controller(
        alice(),
        spec(),
        &step_up,
        &[&oncall()],
        reasons::REQUESTER_ATTRIBUTES_MISSING,
    );
    assert_eq!(
        message,
        "RequesterAttributesMissing: role payments-admin requires the authenticated attribute amr to include one of [hwk]; alice has [pwd, mfa]"
    );
    // Writing the attribute into the spec does not help: only userInfo counts.
    let mut s = spec();
    s["requester"] = json!({"username": "alice", "extra": {"amr": ["hwk"]}});
    assert!(matches!(
        check(alice(), s, Some(&step_up), &[&oncall()]),
        Verdict::Deny(_)
    ));
    // With the attribute authenticated: admitted.
    let mut with_key = alice();
    with_key["extra"]["amr"] = json!(["hwk"]);
    assert_eq!(
        check(with_key, spec(), Some(&step_up), &[&oncall()]),
        Verdict::Allow { warning: None }
    );
}

#[test]
fn unknown_role_is_admitted_with_a_warning() {
    let verdict = check(mallory(), spec(), None, &[]);
    let Verdict::Allow {
        warning: Some(warning),
    } = &verdict
    else {
        panic!("{verdict:?}")
    };
    assert!(warning.contains("payments-admin is not known"), "{warning}");
    assert!(
        warning.len() <= 120,
        "kubectl shows warnings up to 120 characters"
    );
    let response = respond(&create_by(mallory(), spec()), &verdict);
    assert!(response.allowed);
    assert_eq!(response.warnings.as_deref(), Some(&[warning.clone()][..]));
}

#[test]
fn only_creates_of_activation_requests_are_checked() {
    let obj = request_object(spec(), None, None);
    assert!(
        candidate(&parse(review_json(
            "UPDATE",
            None,
            mallory(),
            obj.clone(),
            Some(obj.clone())
        )))
        .is_none()
    );
    assert!(
        candidate(&parse(review_json(
            "UPDATE",
            Some("status"),
            mallory(),
            obj.clone(),
            Some(obj.clone())
        )))
        .is_none()
    );
    let mut other = review_json("CREATE", None, mallory(), obj.clone(), None);
    other["request"]["resource"]["resource"] = json!("eligibilities");
    assert!(candidate(&parse(other)).is_none());
    // Without a username (the mutating step refuses it) or without a readable spec: nothing to check.
    assert!(candidate(&parse(review_json("CREATE", None, json!({}), obj, None))).is_none());
    let unreadable = request_object(json!({"role": 7}), None, None);
    assert!(
        candidate(&parse(review_json(
            "CREATE",
            None,
            alice(),
            unreadable,
            None
        )))
        .is_none()
    );
}

/// A kept request by `who` for `role` that held it from `from` to `to`.
fn past_grant(
    name: &str,
    who: &str,
    role: &str,
    from: &str,
    to: &str,
) -> crate::api::ActivationRequest {
    serde_json::from_value(json!({
        "apiVersion": "kubepim.io/v1alpha1",
        "kind": "ActivationRequest",
        "metadata": {"name": name},
        "spec": {"role": role, "namespaces": ["payments"], "duration": "8h", "justification": "INC-1",
                 "requester": {"username": who}},
        "status": {"phase": "Expired", "activatedAt": from, "expiresAt": to, "endedAt": to}
    }))
    .expect("request")
}

#[test]
fn a_used_up_budget_is_refused_with_the_usage() {
    let budgeted = role_with(|s| s["budget"] = json!({"maxElevated": "8h", "per": "168h"}));
    let kept = [
        // alice held payments-admin for 7h10m two days ago.
        past_grant(
            "a-1",
            "alice",
            "payments-admin",
            "2026-02-28T08:00:00Z",
            "2026-02-28T15:10:00Z",
        ),
        // Neither bob's grant nor alice's of another role is hers on this role.
        past_grant(
            "b-1",
            "bob",
            "payments-admin",
            "2026-03-01T08:00:00Z",
            "2026-03-01T16:00:00Z",
        ),
        past_grant(
            "a-2",
            "alice",
            "cluster-view",
            "2026-03-01T08:00:00Z",
            "2026-03-01T16:00:00Z",
        ),
    ];
    let req = create_by(alice(), spec());
    let asked = candidate(&req).expect("a candidate");
    let history = history_of(&asked, &kept);
    assert_eq!(history.len(), 1, "only alice's grants of the role");
    let empty = Default::default();
    let history = related(&history, &empty);
    let verdict = check_candidate(&asked, Some(&budgeted), &[&oncall()], &history, now());
    let Verdict::Deny(refusal) = verdict else {
        panic!("admitted: {verdict:?}")
    };
    assert_eq!(refusal.reason, reasons::BUDGET_EXCEEDED);
    assert_eq!(
        refusal.message,
        "alice used 7h10m of 8h in the last 7d on role payments-admin; this request asks for 1h \
         (budget: spec.budget of PrivilegedRole payments-admin)"
    );
    // Fifty minutes fit.
    let mut fits = spec();
    fits["duration"] = json!("50m");
    let req = create_by(alice(), fits);
    let smaller = candidate(&req).expect("a candidate");
    assert_eq!(
        check_candidate(&smaller, Some(&budgeted), &[&oncall()], &history, now()),
        Verdict::Allow { warning: None }
    );
}
