//! `/mutate` for `accessreviews/status`: the decision a reviewer appended gets `reviewer` and
//! `groups` from the caller and `at` = now, whatever the caller wrote, as approvals are stamped
//! (see [`super::mutate`]). Existing decisions are never touched; a write that removes, reorders
//! or changes them, or appends more than one, is refused. The `review-status` admission policy
//! checks the same (and who may decide which item) without the webhook.
use chrono::{DateTime, Utc};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use serde_json::{Map, Value, json};

use super::mutate::Mutation;
use super::request::requester_from;

/// Plural of the AccessReview kind.
pub const RESOURCE: &str = "accessreviews";

pub fn is_access_review(req: &AdmissionRequest<DynamicObject>) -> bool {
    req.resource.group == crate::api::GROUP && req.resource.resource == RESOURCE
}

fn decisions(object: Option<&Value>) -> Vec<Value> {
    match object.and_then(|o| o.pointer("/status/decisions")) {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![],
    }
}

pub fn on_status_update(req: &AdmissionRequest<DynamicObject>, now: DateTime<Utc>) -> Mutation {
    let json = |o: Option<&DynamicObject>| o.and_then(|o| serde_json::to_value(o).ok());
    let new = json(req.object.as_ref());
    let Some(old) = json(req.old_object.as_ref()) else {
        return Mutation::Deny("no old object in the admission request for a status update".into());
    };
    let before = decisions(Some(&old));
    let after = decisions(new.as_ref());
    if after.len() < before.len() || after[..before.len()] != before[..] {
        return Mutation::Deny(
            "status.decisions is append-only: existing decisions may not be removed, reordered or changed".into(),
        );
    }
    let entry = match &after[before.len()..] {
        // Nothing appended (the controller's writes): unchanged.
        [] => return Mutation::Patch(vec![]),
        [entry] => entry,
        more => {
            return Mutation::Deny(format!(
                "append one decision per write, not {}: each is recorded under the caller's own name",
                more.len()
            ));
        }
    };
    let Some(reviewer) = requester_from(&req.user_info) else {
        return Mutation::Deny(
            "the API server sent no username for this request: refusing to record an anonymous decision".into(),
        );
    };
    let Value::Object(fields) = entry else {
        return Mutation::Deny("a decision must be an object with item and decision".into());
    };
    let mut stamped: Map<String, Value> = fields.clone();
    stamped.insert("reviewer".into(), Value::String(reviewer.username));
    if reviewer.groups.is_empty() {
        stamped.remove("groups");
    } else {
        stamped.insert("groups".into(), json!(reviewer.groups));
    }
    let at = serde_json::to_value(crate::time::to_k8s(now)).unwrap_or(Value::Null);
    stamped.insert("at".into(), at);
    let stamped = Value::Object(stamped);
    if &stamped == entry {
        return Mutation::Patch(vec![]);
    }
    Mutation::Patch(vec![json!({
        "op": "replace",
        "path": format!("/status/decisions/{}", before.len()),
        "value": stamped,
    })])
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::admission::fixtures::{parse, review_json};
    use crate::admission::mutate::stamp_identities;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
    }

    fn status_update(old: Value, new: Value) -> AdmissionRequest<DynamicObject> {
        let mut review = review_json(
            "UPDATE",
            Some("status"),
            json!({"username": "bob", "groups": ["sre-leads", "system:authenticated"]}),
            new,
            Some(old),
        );
        let resource = json!({"group": "kubepim.io", "version": "v1alpha1", "resource": RESOURCE});
        review["request"]["resource"] = resource.clone();
        review["request"]["requestResource"] = resource;
        review["request"]["kind"]["kind"] = json!("AccessReview");
        parse(review)
    }

    fn review(decisions: Value) -> Value {
        json!({"apiVersion": "kubepim.io/v1alpha1", "kind": "AccessReview",
               "metadata": {"name": "q1"}, "status": {"phase": "Open", "decisions": decisions}})
    }

    #[test]
    fn the_appended_decision_is_stamped_with_the_caller() {
        let kept = json!({"item": "pay/User/alice", "decision": "Keep", "reviewer": "carol"});
        let req = status_update(
            review(json!([kept])),
            review(
                json!([kept, {"item": "pay/User/mallory", "decision": "Remove", "reviewer": "carol"}]),
            ),
        );
        let Mutation::Patch(ops) = stamp_identities(&req, now()) else {
            panic!("refused");
        };
        assert_eq!(
            ops,
            [
                json!({"op": "replace", "path": "/status/decisions/1", "value": {
                "item": "pay/User/mallory", "decision": "Remove", "reviewer": "bob",
                "groups": ["sre-leads", "system:authenticated"], "at": "2026-03-02T10:00:00Z"}})
            ]
        );
    }

    #[test]
    fn edits_and_two_at_once_are_refused_and_controller_writes_pass() {
        let a = json!({"item": "pay/User/alice", "decision": "Keep", "reviewer": "bob"});
        let b = json!({"item": "pay/User/mallory", "decision": "Keep", "reviewer": "bob"});
        let edited = json!({"item": "pay/User/alice", "decision": "Remove", "reviewer": "bob"});
        for (old, new, want) in [
            (json!([a]), json!([edited]), "append-only"),
            (
                json!([]),
                json!([a, b]),
                "append one decision per write, not 2",
            ),
        ] {
            match stamp_identities(&status_update(review(old), review(new)), now()) {
                Mutation::Deny(message) => assert!(message.contains(want), "{message}"),
                Mutation::Patch(ops) => panic!("admitted with {ops:?}"),
            }
        }
        let unchanged = stamp_identities(
            &status_update(review(json!([a])), review(json!([a]))),
            now(),
        );
        assert_eq!(unchanged, Mutation::Patch(vec![]));
    }
}
