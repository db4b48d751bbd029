//! Everything `kubectl pim` prints, as pure functions of what it read and of `now`.
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use kubepim::api::{ActivationRequest, Decision, Phase};
use kubepim::ops::{Activatable, Entry};
use kubepim::time::{format_duration, from_k8s};
use serde::Serialize;

use crate::cli::Output;

/// kubectl's column layout: left-aligned, three spaces apart, upper-case headers.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(w - cell.chars().count() + 3));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// kubectl-style short age: `45s`, `12m`, `5h`, `3d`.
pub fn age(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn phase_of(ar: &ActivationRequest) -> String {
    ar.phase().map_or("Pending".into(), |p| p.to_string())
}

/// `approved/required` (`1/2`), or just the count when the role could not be read.
fn approvals_cell(ar: &ActivationRequest, required: Option<u32>) -> String {
    let approved = ar
        .status
        .iter()
        .flat_map(|s| &s.approvals)
        .filter(|a| a.decision == Decision::Approved)
        .count();
    match required {
        Some(r) => format!("{approved}/{r}"),
        None => approved.to_string(),
    }
}

fn expires_cell(ar: &ActivationRequest, now: DateTime<Utc>) -> String {
    match ar.status.as_ref().and_then(|s| s.expires_at.as_ref()) {
        Some(at) if ar.phase() == Some(Phase::Active) => format!("in {}", age(from_k8s(at) - now)),
        Some(at) => rfc3339(from_k8s(at)),
        None => "-".into(),
    }
}

/// `kubectl pim ls`; `required` maps role name → approvals needed (roles the caller can read).
pub fn requests_table(
    requests: &[ActivationRequest],
    required: &BTreeMap<String, u32>,
    now: DateTime<Utc>,
    wide: bool,
) -> String {
    let mut headers = vec![
        "NAME",
        "REQUESTER",
        "ROLE",
        "NAMESPACES",
        "PHASE",
        "APPROVALS",
        "EXPIRES",
        "AGE",
    ];
    if wide {
        headers.extend(["TICKET", "REASON", "MESSAGE"]);
    }
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|ar| {
            let ns = if ar.spec.namespaces.is_empty() {
                "<cluster>".to_string()
            } else {
                ar.spec.namespaces.join(",")
            };
            let created = ar.metadata.creation_timestamp.as_ref().map(from_k8s);
            let mut row = vec![
                ar.metadata.name.clone().unwrap_or_default(),
                ar.requester_name().to_string(),
                ar.spec.role.clone(),
                ns,
                phase_of(ar),
                approvals_cell(ar, required.get(&ar.spec.role).copied()),
                expires_cell(ar, now),
                created.map_or("-".into(), |c| age(now - c)),
            ];
            if wide {
                let status = ar.status.clone().unwrap_or_default();
                row.extend([
                    ar.spec.ticket.clone().unwrap_or_else(|| "-".into()),
                    status.reason.unwrap_or_else(|| "-".into()),
                    status.message.unwrap_or_default(),
                ]);
            }
            row
        })
        .collect();
    if rows.is_empty() {
        return "No activation requests found.\n".into();
    }
    table(&headers, &rows)
}

fn window_cell(a: &Activatable) -> String {
    let until = a.eligible_until.map(rfc3339);
    match (a.eligible_from, until) {
        (Some(from), Some(until)) => format!("from {} until {until}", rfc3339(from)),
        (Some(from), None) => format!("from {}", rfc3339(from)),
        (None, Some(until)) => format!("until {until}"),
        (None, None) => "now, no end".into(),
    }
}

/// `kubectl pim roles`.
pub fn roles_table(roles: &[Activatable], wide: bool) -> String {
    if roles.is_empty() {
        return "You are not eligible for any PrivilegedRole.\n".into();
    }
    let mut headers = vec!["ROLE", "SCOPE", "MAX", "DEFAULT", "APPROVALS", "ELIGIBLE"];
    if wide {
        headers.extend(["ELIGIBILITY", "TICKET"]);
    }
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|a| {
            let scope = if a.cluster_wide {
                "<cluster>".into()
            } else {
                a.namespaces.join(",")
            };
            let approvals = match (a.required_approvals, a.break_glass) {
                (_, true) => "none (break-glass)".into(),
                (0, _) => "none".into(),
                (n, _) => n.to_string(),
            };
            let mut row = vec![
                a.role.clone(),
                scope,
                format_duration(a.max_duration),
                format_duration(a.default_duration),
                approvals,
                window_cell(a),
            ];
            if wide {
                row.push(a.eligibility.clone());
                row.push(a.ticket_pattern.clone().unwrap_or_else(|| "-".into()));
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

fn entries(out: &mut String, list: &[Entry]) {
    for e in list {
        let at = e.at.map_or("-".into(), rfc3339);
        out.push_str(&format!("  {at:<20}  {}\n", e.what));
    }
}

/// `kubectl pim show` as text.
pub fn show_text(
    ar: &ActivationRequest,
    timeline: &[Entry],
    events: &Result<Vec<Entry>, String>,
) -> String {
    let status = ar.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut field = |k: &str, v: &str| out.push_str(&format!("{:<12}{v}\n", format!("{k}:")));
    field("Name", ar.metadata.name.as_deref().unwrap_or_default());
    field("Role", &ar.spec.role);
    field("Requester", ar.requester_name());
    let ns = ar.spec.namespaces.join(", ");
    field(
        "Namespaces",
        if ns.is_empty() { "<cluster-wide>" } else { &ns },
    );
    let phase = phase_of(ar);
    match &status.reason {
        Some(r) => field("Phase", &format!("{phase} ({r})")),
        None => field("Phase", &phase),
    }
    if let Some(m) = &status.message {
        field("Message", m);
    }
    out.push_str("Timeline:\n");
    entries(&mut out, timeline);
    out.push_str("Events:\n");
    match events {
        Ok(list) if list.is_empty() => out.push_str("  <none>\n"),
        Ok(list) => entries(&mut out, list),
        Err(why) => out.push_str(&format!("  <{why}>\n")),
    }
    out
}

/// What `--wait` has reported so far: a line is printed when this changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    phase: Option<Phase>,
    decisions: usize,
}

/// Progress lines for a new version of the request (none when nothing changed).
pub fn progress(
    seen: &mut Seen,
    ar: &ActivationRequest,
    required: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let status = ar.status.clone().unwrap_or_default();
    let name = ar.metadata.name.as_deref().unwrap_or_default();
    let mut lines = Vec::new();
    for a in status.approvals.iter().skip(seen.decisions) {
        let verb = match a.decision {
            Decision::Approved => "approved",
            Decision::Denied => "denied",
        };
        let reason = a
            .reason
            .as_deref()
            .map_or(String::new(), |r| format!(": \"{r}\""));
        lines.push(format!(
            "{name}: {verb} by {}{reason} ({})",
            a.approver,
            approvals_cell(ar, required)
        ));
    }
    seen.decisions = seen.decisions.max(status.approvals.len());
    let phase = status.phase.unwrap_or(Phase::Pending);
    if seen.phase != Some(phase) {
        seen.phase = Some(phase);
        lines.push(match phase {
            Phase::Pending => match required {
                Some(0) => format!("{name}: Pending, activating (no approval needed)"),
                _ => format!(
                    "{name}: Pending, waiting for approval ({})",
                    approvals_cell(ar, required)
                ),
            },
            Phase::Scheduled => format!(
                "{name}: Scheduled, starts at {}",
                ar.spec
                    .start_at
                    .as_ref()
                    .map_or("-".into(), |t| rfc3339(from_k8s(t)))
            ),
            Phase::Active => {
                let until = status.expires_at.as_ref().map(from_k8s);
                let until = until.map_or(String::new(), |u| {
                    format!(" until {} (in {})", rfc3339(u), age(u - now))
                });
                format!("{name}: Active{until}")
            }
            ended => ended_line(ar, ended),
        });
    }
    lines
}

/// `NAME ended Denied: DeniedByApprover: ...`
pub fn ended_line(ar: &ActivationRequest, phase: Phase) -> String {
    let status = ar.status.clone().unwrap_or_default();
    let name = ar.metadata.name.as_deref().unwrap_or_default();
    let mut line = format!("{name}: {phase}");
    if let Some(r) = status.reason {
        line.push_str(&format!(": {r}"));
    }
    if let Some(m) = status.message {
        line.push_str(&format!(": {m}"));
    }
    line
}

/// `-o json|yaml`.
pub fn document<T: Serialize>(value: &T, format: Output) -> Result<String, String> {
    match format {
        Output::Yaml => serde_saphyr::to_string(value).map_err(|e| e.to_string()),
        _ => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    }
}

/// The request as `kubectl get -o yaml` shows it: without managedFields, which only tell
/// field ownership and drown the rest.
pub fn for_display(ar: &ActivationRequest) -> ActivationRequest {
    let mut ar = ar.clone();
    ar.metadata.managed_fields = None;
    ar
}

/// A kubectl-style `List` of requests.
pub fn list_document(items: &[ActivationRequest]) -> serde_json::Value {
    let items: Vec<ActivationRequest> = items.iter().map(for_display).collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// `kubectl pim review list`: one line per item I may decide.
pub fn review_items(rows: &[(String, Vec<kubepim::ops::reviews::MyItem<'_>>)]) -> String {
    let mut table = vec![vec![
        "REVIEW".to_string(),
        "ITEM".into(),
        "ROLE".into(),
        "USES".into(),
        "LAST USED".into(),
        "HOURS".into(),
        "RECOMMENDED".into(),
        "MINE".into(),
        "LATEST".into(),
    ]];
    for (review, items) in rows {
        for i in items {
            let e = &i.item.evidence;
            table.push(vec![
                review.clone(),
                i.item.id.clone(),
                i.item.role.clone(),
                e.activations.to_string(),
                e.last_used
                    .as_ref()
                    .map_or("never".into(), |t| t.0.to_string()),
                format!("{}", e.elevated_hours),
                format!(
                    "{} ({})",
                    i.item.recommendation.as_str(),
                    i.item.recommendation_reason
                ),
                i.mine.map_or("-".into(), |d| d.as_str().to_string()),
                i.latest
                    .map_or("-".into(), |(d, by)| format!("{} by {by}", d.as_str())),
            ]);
        }
    }
    if table.len() == 1 {
        return "no open review items for you to decide\n".into();
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;

/// The footholds a review recorded: one line each, whether `--remove` deletes it.
pub fn footholds(found: &[kubepim::api::FootholdRef]) -> String {
    let mut out = String::from("KIND\tOBJECT\tREMOVABLE\tWHY\n");
    for f in found {
        let object = match &f.namespace {
            Some(ns) => format!("{ns}/{}", f.name),
            None => f.name.clone(),
        };
        let removable = if kubepim::ops::footholds::removable(f).is_some() {
            "yes"
        } else {
            "no"
        };
        out.push_str(&format!("{}\t{object}\t{removable}\t{}\n", f.kind, f.why));
    }
    out
}
