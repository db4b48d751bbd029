//! A request's story in order: created, each decision with who and when, activated (and where),
//! expiry, the end; and the Events the controller recorded about it.
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::api::{ActivationRequest, Decision};
use crate::time::{duration_from_k8s, format_duration, from_k8s, from_k8s_micro};

/// One line of a timeline. `at` is absent when nobody recorded the time (an approval written
/// without the webhook, which is what stamps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub at: Option<DateTime<Utc>>,
    pub what: String,
}

fn entry(at: Option<DateTime<Utc>>, what: impl Into<String>) -> Entry {
    Entry {
        at,
        what: what.into(),
    }
}

/// The request's timeline as of `now` (which decides between "expires" and "expired").
pub fn timeline(ar: &ActivationRequest, now: DateTime<Utc>) -> Vec<Entry> {
    let spec = &ar.spec;
    let mut out = Vec::new();
    let scope = if spec.namespaces.is_empty() {
        String::new()
    } else {
        format!(" in {}", spec.namespaces.join(", "))
    };
    let duration = spec
        .duration
        .as_ref()
        .map_or("the role's default duration".into(), |d| {
            format_duration(duration_from_k8s(d))
        });
    let mut created = format!(
        "requested {}{scope} for {duration} by {}",
        spec.role,
        or_unknown(ar.requester_name())
    );
    if let Some(j) = spec.justification.as_deref().filter(|j| !j.is_empty()) {
        created.push_str(&format!(": \"{j}\""));
    }
    if let Some(t) = &spec.ticket {
        created.push_str(&format!(" (ticket {t})"));
    }
    out.push(entry(
        ar.metadata.creation_timestamp.as_ref().map(from_k8s),
        created,
    ));
    if let Some(start) = &spec.start_at {
        out.push(entry(Some(from_k8s(start)), "scheduled start"));
    }
    let status = ar.status.clone().unwrap_or_default();
    for a in &status.approvals {
        let verb = match a.decision {
            Decision::Approved => "approved",
            Decision::Denied => "denied",
        };
        let mut what = format!("{verb} by {}", a.approver);
        if let Some(r) = a.reason.as_deref().filter(|r| !r.is_empty()) {
            what.push_str(&format!(": \"{r}\""));
        }
        out.push(entry(a.time.as_ref().map(from_k8s), what));
    }
    if let Some(at) = &status.activated_at {
        let bindings: Vec<String> = status
            .bindings
            .iter()
            .map(|b| match &b.namespace {
                Some(ns) => format!("{} {ns}/{}", b.kind, b.name),
                None => format!("{} {}", b.kind, b.name),
            })
            .collect();
        let what = if bindings.is_empty() {
            "activated".to_string()
        } else {
            format!("activated: {}", bindings.join(", "))
        };
        out.push(entry(Some(from_k8s(at)), what));
    }
    if let Some(at) = &status.expires_at {
        let at = from_k8s(at);
        let verb = if at > now { "expires" } else { "expired" };
        out.push(entry(Some(at), verb));
    }
    if let Some(phase) = status.phase.filter(|p| p.is_terminal()) {
        // The controller records no phase time; its last condition change is when it ended.
        let at = status
            .conditions
            .iter()
            .map(|c| from_k8s(&c.last_transition_time))
            .max();
        let mut what = format!("ended {phase}");
        if let Some(reason) = &status.reason {
            what.push_str(&format!(" ({reason})"));
        }
        if let Some(message) = &status.message {
            what.push_str(&format!(": {message}"));
        }
        out.push(entry(at, what));
    }
    // Stable: entries without a time keep their place after what precedes them.
    let mut last = None;
    let mut keyed: Vec<(Option<DateTime<Utc>>, usize, Entry)> = Vec::new();
    for (i, e) in out.into_iter().enumerate() {
        last = e.at.or(last);
        keyed.push((last, i, e));
    }
    keyed.sort_by_key(|(at, i, _)| (*at, *i));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "(unknown requester)"
    } else {
        s
    }
}

/// An Event as a timeline entry: `Normal Activated: message (x3)`.
pub fn event_entry(ev: &Event) -> Entry {
    let at = ev
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(from_k8s_micro)
        .or_else(|| ev.last_timestamp.as_ref().map(from_k8s))
        .or_else(|| ev.event_time.as_ref().map(from_k8s_micro))
        .or_else(|| ev.metadata.creation_timestamp.as_ref().map(from_k8s));
    let count = ev
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(ev.count)
        .filter(|c| *c > 1);
    let mut what = format!(
        "{} {}",
        ev.type_.as_deref().unwrap_or("Normal"),
        ev.reason.as_deref().unwrap_or("")
    );
    if let Some(m) = ev.message.as_deref().filter(|m| !m.is_empty()) {
        what.push_str(&format!(": {m}"));
    }
    if let Some(c) = count {
        what.push_str(&format!(" (x{c})"));
    }
    entry(at, what)
}

/// The Events about this request (core v1, matched on involvedObject), oldest first. Events of
/// cluster-scoped objects land in `default`, so that namespace is read when listing all is not
/// allowed. `Err` says why none could be read; it is for display, not a failure of `show`.
pub async fn events_of(client: &Client, ar: &ActivationRequest) -> Result<Vec<Entry>, String> {
    let name = ar.metadata.name.as_deref().unwrap_or_default();
    let mut selector = format!("involvedObject.kind=ActivationRequest,involvedObject.name={name}");
    if let Some(uid) = &ar.metadata.uid {
        // A request deleted and created again under the same name is another story.
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let lp = ListParams::default().fields(&selector);
    let listed = match Api::<Event>::all(client.clone()).list(&lp).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            Api::<Event>::namespaced(client.clone(), "default")
                .list(&lp)
                .await
        }
        other => other,
    };
    let mut entries: Vec<Entry> = listed
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => {
                "not allowed to read Events (ask for `list events` in namespace default)"
                    .to_string()
            }
            e => format!("could not read Events: {e}"),
        })?
        .items
        .iter()
        .map(event_entry)
        .collect();
    entries.sort_by_key(|e| e.at);
    Ok(entries)
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
