//! `/mutate`: identities from `request.userInfo`, never from what the caller wrote. Pure.
//!
//! - CREATE of an ActivationRequest: `spec.requester` is set to the caller (username, uid,
//!   groups, extra), replacing anything written there, and the finalizer
//!   [`FINALIZER`](crate::api::FINALIZER) is added (once), which saves the controller a write.
//! - UPDATE of `activationrequests/status`: the approval the caller appended gets `approver` and
//!   `groups` from the caller and `time` = now, whatever the caller wrote. Approvers therefore
//!   write only `decision` and `reason`. Entries that existed before are never touched; a write
//!   that removes, reorders or changes them, or that appends more than one, is refused. Writes that
//!   append nothing (the controller's) pass unchanged.
//!
//! How approvers write (`kubectl patch activationrequest NAME --subresource=status ...`):
//! - JSON patch, `add /status/approvals/-` with `{"decision": "Approved", "reason": "..."}` (or
//!   `add /status/approvals` with a one-entry list when there is none yet). `approver` may be left
//!   out although the CRD requires it: the API server applies the patch, calls mutating admission
//!   and only then validates against the schema, so the stamped entry is what is validated
//!   (checked against kube-apiserver 1.32 in `tests/e2e_webhook.rs`). The patch is computed on
//!   the raw JSON of the object for that reason: the entry need not parse as an `Approval`.
//! - Merge patch: JSON merge patch replaces the whole list, so it must carry the existing entries
//!   unchanged plus the new one (any change to them is refused here).
//! - Server-side apply: `approvals` is a list-map keyed by `approver`, so the entry must name an
//!   approver to be merged at all; send your own username (it is overwritten anyway).
use chrono::{DateTime, Utc};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::{Map, Value, json};

use crate::api::FINALIZER;

use super::request::{forbidden, is_activation_request, requester_from};

/// What `/mutate` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Admit with these JSON-patch operations (none: unchanged).
    Patch(Vec<Value>),
    /// Refuse, with a message for the caller.
    Deny(String),
}

/// The mutation for one admission request: the caller's authenticated identity stamped into the
/// requester or the appended approval, or a refusal when the write cannot be stamped (no
/// username, approvals changed rather than appended).
pub fn stamp_identities(req: &AdmissionRequest<DynamicObject>, now: DateTime<Utc>) -> Mutation {
    if super::mutate_review::is_access_review(req) {
        return match (&req.operation, req.sub_resource.as_deref()) {
            (Operation::Update, Some("status")) => super::mutate_review::on_status_update(req, now),
            _ => Mutation::Patch(vec![]),
        };
    }
    if !is_activation_request(req) {
        // Not ours (a misconfigured rule): admit unchanged.
        return Mutation::Patch(vec![]);
    }
    match (&req.operation, req.sub_resource.as_deref()) {
        (Operation::Create, None) => on_create(req),
        (Operation::Update, Some("status")) => on_status_update(req, now),
        _ => Mutation::Patch(vec![]),
    }
}

/// The admission response for one request: [`stamp_identities`], then the patch or the refusal.
pub fn review(req: &AdmissionRequest<DynamicObject>, now: DateTime<Utc>) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    match stamp_identities(req, now) {
        Mutation::Patch(ops) if ops.is_empty() => response,
        Mutation::Patch(ops) => {
            match serde_json::from_value::<json_patch::Patch>(Value::Array(ops)) {
                Ok(patch) => response.with_patch(patch).unwrap_or_else(|e| {
                    AdmissionResponse::from(req)
                        .deny(format!("kubepim webhook: cannot encode its patch: {e}"))
                }),
                Err(e) => response.deny(format!("kubepim webhook: cannot encode its patch: {e}")),
            }
        }
        Mutation::Deny(message) => forbidden(response, message),
    }
}

fn object_json(obj: Option<&DynamicObject>) -> Option<Value> {
    obj.and_then(|o| serde_json::to_value(o).ok())
}

fn on_create(req: &AdmissionRequest<DynamicObject>) -> Mutation {
    let Some(requester) = requester_from(&req.user_info) else {
        return Mutation::Deny("the API server sent no username for this request: refusing to record an anonymous requester".into());
    };
    let Some(object) = object_json(req.object.as_ref()) else {
        return Mutation::Deny("no object in the admission request".into());
    };
    let mut ops = Vec::new();
    let requester = serde_json::to_value(&requester).unwrap_or(Value::Null);
    match object.get("spec") {
        // `add` replaces a member that exists: a forged requester is overwritten.
        Some(Value::Object(spec)) if spec.get("requester") != Some(&requester) => {
            ops.push(json!({"op": "add", "path": "/spec/requester", "value": requester}));
        }
        Some(Value::Object(_)) => {}
        // No spec: schema validation refuses the object; nothing to stamp into.
        _ => {}
    }
    match object.pointer("/metadata/finalizers") {
        None | Some(Value::Null) => {
            ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}));
        }
        Some(Value::Array(finalizers)) if !finalizers.iter().any(|f| f == FINALIZER) => {
            ops.push(json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}));
        }
        Some(_) => {}
    }
    Mutation::Patch(ops)
}

fn approvals(object: Option<&Value>) -> Vec<Value> {
    match object.and_then(|o| o.pointer("/status/approvals")) {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![],
    }
}

fn approver_of(entry: &Value) -> Option<&str> {
    entry.get("approver").and_then(Value::as_str)
}

fn on_status_update(req: &AdmissionRequest<DynamicObject>, now: DateTime<Utc>) -> Mutation {
    let new = object_json(req.object.as_ref());
    let Some(old) = object_json(req.old_object.as_ref()) else {
        // Without the old object nothing tells appended entries from existing ones.
        return Mutation::Deny("no old object in the admission request for a status update".into());
    };
    let before = approvals(Some(&old));
    let after = approvals(new.as_ref());
    if after.len() < before.len() || after[..before.len()] != before[..] {
        return Mutation::Deny(
            "status.approvals is append-only: existing approvals may not be removed, reordered or changed".into(),
        );
    }
    let appended = &after[before.len()..];
    match appended {
        // Nothing appended (e.g. the controller's status writes): unchanged.
        [] => Mutation::Patch(vec![]),
        [entry] => stamp(req, &before, entry, before.len(), now),
        _ => Mutation::Deny(format!(
            "append one approval per write, not {}: each is recorded under the caller's own name",
            appended.len()
        )),
    }
}

fn stamp(
    req: &AdmissionRequest<DynamicObject>,
    before: &[Value],
    entry: &Value,
    index: usize,
    now: DateTime<Utc>,
) -> Mutation {
    let Some(approver) = requester_from(&req.user_info) else {
        return Mutation::Deny("the API server sent no username for this request: refusing to record an anonymous approval".into());
    };
    let Value::Object(fields) = entry else {
        return Mutation::Deny("an approval must be an object with decision and reason".into());
    };
    if before
        .iter()
        .any(|e| approver_of(e) == Some(approver.username.as_str()))
    {
        return Mutation::Deny(format!(
            "{} has already recorded a decision on this request; approvals cannot be changed",
            approver.username
        ));
    }
    let mut stamped: Map<String, Value> = fields.clone();
    stamped.insert("approver".into(), Value::String(approver.username));
    if approver.groups.is_empty() {
        stamped.remove("groups");
    } else {
        stamped.insert("groups".into(), json!(approver.groups));
    }
    let time = serde_json::to_value(crate::time::to_k8s(now)).unwrap_or(Value::Null);
    stamped.insert("time".into(), time);
    let stamped = Value::Object(stamped);
    if &stamped == entry {
        return Mutation::Patch(vec![]);
    }
    Mutation::Patch(vec![json!({
        "op": "replace",
        "path": format!("/status/approvals/{index}"),
        "value": stamped,
    })])
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;
