//! Writing and reading ActivationRequests as their requester or an approver would with kubectl.
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt, core::Duration as KubeDuration};
use serde_json::{Value, json};

use crate::api::{ActivationRequest, ActivationRequestSpec, Decision, PrivilegedRole, Requester};

use super::OpsError;
use super::refusal::{Op, explain};
use super::roles::can_decide;

/// What a person asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    pub role: String,
    pub namespaces: Vec<String>,
    pub duration: Option<KubeDuration>,
    pub justification: String,
    pub ticket: Option<String>,
    pub start_at: Option<DateTime<Utc>>,
    /// The Active request this one extends (`spec.extends`).
    pub extends: Option<String>,
    /// `None`: the API server generates one from [`name_prefix`].
    pub name: Option<String>,
}

/// The longest prefix for `generateName`: the API server appends 5 characters, and the name
/// must stay a DNS label (63) so that it reads well in `kubepim-<request>` binding names.
const PREFIX_MAX: usize = 58;

/// `<role>-<user>-`, lowercased, with everything outside `[a-z0-9-]` turned into `-` (a
/// ServiceAccount's `system:serviceaccount:ns:name` included), shortened to fit a DNS label.
pub fn name_prefix(role: &str, user: &str) -> String {
    let clean = |s: &str| -> String {
        let mapped: String = s
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .collect();
        let mut out = String::with_capacity(mapped.len());
        for c in mapped.chars() {
            if !(c == '-' && out.ends_with('-')) {
                out.push(c);
            }
        }
        out.trim_matches('-').to_string()
    };
    let (mut role, mut user) = (clean(role), clean(user));
    // Share the room, the role first: it is what people scan a list for.
    let room = PREFIX_MAX - 2;
    if role.len() + user.len() > room {
        let user_room = (room / 3).max(room.saturating_sub(role.len()));
        user.truncate(user_room.min(user.len()));
        role.truncate(room - user.len());
    }
    let parts: Vec<&str> = [role.trim_end_matches('-'), user.trim_end_matches('-')]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return "request-".into();
    }
    format!("{}-", parts.join("-"))
}

/// The object to create. The requester is the caller's own identity: the webhook would stamp
/// the same, and without the webhook the admission policy requires exactly this.
pub fn build(new: &NewRequest, me: &Requester) -> ActivationRequest {
    let metadata = ObjectMeta {
        name: new.name.clone(),
        generate_name: new
            .name
            .is_none()
            .then(|| name_prefix(&new.role, &me.username)),
        ..Default::default()
    };
    ActivationRequest {
        metadata,
        spec: ActivationRequestSpec {
            role: new.role.clone(),
            namespaces: new.namespaces.clone(),
            duration: new.duration,
            justification: Some(new.justification.clone()),
            ticket: new.ticket.clone(),
            start_at: new.start_at.map(crate::time::to_k8s),
            cancel: false,
            extends: new.extends.clone(),
            requester: Some(me.clone()),
        },
        status: None,
    }
}

/// The extension of `original`: the same role and namespaces, its own duration and
/// justification; it runs on from the original's expiry once approved.
pub fn extension_of(
    original: &ActivationRequest,
    duration: Option<KubeDuration>,
    justification: String,
    ticket: Option<String>,
) -> NewRequest {
    NewRequest {
        role: original.spec.role.clone(),
        namespaces: original.spec.namespaces.clone(),
        duration,
        justification,
        ticket,
        start_at: None,
        extends: Some(original.name_any()),
        name: None,
    }
}

/// Maps an API error on `op` to a refusal (4xx and webhook outages) or a plain error.
fn refused(op: Op, name: &str, what: &str, e: kube::Error) -> OpsError {
    match &e {
        kube::Error::Api(s) if s.code == 404 && op != Op::Create => {
            OpsError::NotFound(name.to_string())
        }
        kube::Error::Api(s)
            if matches!(s.code, 400 | 403 | 409 | 422)
                || s.message.contains("failed calling webhook") =>
        {
            OpsError::Refused(explain(op, name, s.code, &s.message))
        }
        _ => OpsError::kube(what, e),
    }
}

/// Creates the request as the caller.
pub async fn create(
    client: &Client,
    new: &NewRequest,
    me: &Requester,
) -> Result<ActivationRequest, OpsError> {
    let request = build(new, me);
    let label = new
        .name
        .clone()
        .unwrap_or_else(|| name_prefix(&new.role, &me.username));
    Api::<ActivationRequest>::all(client.clone())
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| refused(Op::Create, &label, "creating the request", e))
}

pub async fn get(client: &Client, name: &str) -> Result<ActivationRequest, OpsError> {
    Api::<ActivationRequest>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => OpsError::NotFound(name.to_string()),
            e => OpsError::kube(format!("reading {name}"), e),
        })
}

/// Every request the caller can see (filtering is the caller's business: the spec fields are
/// not selectable server-side).
pub async fn list(client: &Client) -> Result<Vec<ActivationRequest>, OpsError> {
    Api::<ActivationRequest>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| OpsError::kube("listing activation requests", e))
}

/// The approval entry `me` appends: decision and reason, with the caller's own name and groups
/// (the webhook stamps the same; without it the admission policy requires exactly these).
pub fn approval_entry(me: &Requester, decision: Decision, reason: Option<&str>) -> Value {
    let mut entry = json!({
        "approver": me.username,
        "groups": me.groups,
        "decision": decision,
    });
    if let Some(reason) = reason {
        entry["reason"] = json!(reason);
    }
    entry
}

/// The JSON patch that appends `entry` to what `current` holds.
///
/// `add /status/approvals/-` appends atomically, but only onto an existing list (422 otherwise).
/// Creating the list with `add /status/approvals` (or `/status`) would *replace* one written in
/// the meantime, so that first write is guarded by a `test` of the resourceVersion.
pub fn append_patch(current: &ActivationRequest, entry: Value) -> Value {
    let has_approvals = current
        .status
        .as_ref()
        .is_some_and(|s| !s.approvals.is_empty());
    if has_approvals {
        return json!([{ "op": "add", "path": "/status/approvals/-", "value": entry }]);
    }
    let rv = current
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let add = if current.status.is_some() {
        json!({ "op": "add", "path": "/status/approvals", "value": [entry] })
    } else {
        json!({ "op": "add", "path": "/status", "value": { "approvals": [entry] } })
    };
    json!([{ "op": "test", "path": "/metadata/resourceVersion", "value": rv }, add])
}

/// Is this 422 the resourceVersion `test` failing (someone wrote in between), rather than an
/// admission refusal?
fn lost_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422
        && !s.message.contains("ValidatingAdmissionPolicy")
        && !s.message.contains("admission webhook"))
}

/// `me` records `decision` on request `name` by appending to `status.approvals`.
///
/// Refused before writing when the decision would not count (see [`can_decide`]); the server's
/// admission layer has the last word on everything else (a terminal request, a forged entry).
pub async fn decide(
    client: &Client,
    me: &Requester,
    name: &str,
    decision: Decision,
    reason: Option<&str>,
) -> Result<ActivationRequest, OpsError> {
    let op = match decision {
        Decision::Approved => Op::Approve,
        Decision::Denied => Op::Deny,
    };
    let api: Api<ActivationRequest> = Api::all(client.clone());
    let entry = approval_entry(me, decision, reason);
    let mut current = get(client, name).await?;
    // An approver who may not read roles still gets the server's verdict.
    let role = Api::<PrivilegedRole>::all(client.clone())
        .get_opt(&current.spec.role)
        .await
        .ok()
        .flatten();
    let mut attempt = 0;
    loop {
        attempt += 1;
        can_decide(me, &current, role.as_ref()).map_err(OpsError::Refused)?;
        let patch: json_patch::Patch =
            serde_json::from_value(append_patch(&current, entry.clone())).map_err(|e| {
                OpsError::Invalid {
                    what: "approval patch".into(),
                    message: e.to_string(),
                }
            })?;
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(updated) => return Ok(updated),
            Err(e) if lost_race(&e) && attempt < 10 => {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                current = get(client, name).await?;
            }
            Err(e) => {
                let what = format!("recording the decision on {name}");
                return Err(refused(op, name, &what, e));
            }
        }
    }
}

/// The requester ends the request (or grant) early: `spec.cancel: true`.
pub async fn cancel(client: &Client, name: &str) -> Result<ActivationRequest, OpsError> {
    Api::<ActivationRequest>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .map_err(|e| refused(Op::Cancel, name, &format!("cancelling {name}"), e))
}

/// Polls `name` until `done` holds, calling `progress` on every version seen.
///
/// A read per second rather than a watch: it needs only `get`, costs the API server next to
/// nothing for one object, and rides out restarts and dropped connections without resync logic.
pub async fn wait_until(
    client: &Client,
    name: &str,
    timeout: Duration,
    mut done: impl FnMut(&ActivationRequest) -> bool,
    mut progress: impl FnMut(&ActivationRequest),
) -> Result<ActivationRequest, OpsError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_seen: Option<ActivationRequest> = None;
    let mut last_error = String::new();
    loop {
        match get(client, name).await {
            Ok(ar) => {
                progress(&ar);
                if done(&ar) {
                    return Ok(ar);
                }
                last_seen = Some(ar);
                last_error.clear();
            }
            Err(OpsError::NotFound(_)) if last_seen.is_some() => {
                return Err(OpsError::Deleted(name.into()));
            }
            Err(OpsError::NotFound(n)) => return Err(OpsError::NotFound(n)),
            // Transient (connection, 5xx): keep trying until the deadline, say it then.
            Err(e) => last_error = format!("; last error: {e}"),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let phase = last_seen
                .as_ref()
                .and_then(ActivationRequest::phase)
                .map_or("without a phase".to_string(), |p| p.to_string());
            return Err(OpsError::TimedOut {
                name: name.into(),
                after: crate::time::format_duration(
                    chrono::Duration::from_std(timeout).unwrap_or_default(),
                ),
                phase,
                last: last_error,
            });
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
