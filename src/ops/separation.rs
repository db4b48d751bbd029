//! `kubepim separation report`: the separation-of-duties findings of a history, for auditors —
//! the same detectors the operator runs ([`crate::policy::separation`]), over the requests and
//! roles of a cluster or of an export (`kubectl get activationrequests,privilegedroles -o yaml`).
use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::{ActivationRequest, PrivilegedRole};
use crate::policy::separation::{Decided, Finding, Thresholds, analyse};

/// Formats of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    #[default]
    Md,
    Json,
}

/// The requests and roles of a YAML or JSON document: one object, a `kind: List`, or several
/// documents. Other kinds are skipped.
pub fn objects_of(text: &str) -> Result<(Vec<ActivationRequest>, Vec<PrivilegedRole>), String> {
    let mut requests = Vec::new();
    let mut roles = Vec::new();
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let mut objects = Vec::new();
    for doc in documents {
        match doc.get("items").and_then(Value::as_array) {
            Some(items) => objects.extend(items.iter().cloned()),
            None => objects.push(doc),
        }
    }
    for object in objects {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "ActivationRequest" => requests.push(
                serde_json::from_value(object).map_err(|e| format!("an ActivationRequest: {e}"))?,
            ),
            "PrivilegedRole" => roles.push(
                serde_json::from_value(object).map_err(|e| format!("a PrivilegedRole: {e}"))?,
            ),
            _ => {}
        }
    }
    Ok((requests, roles))
}

/// The findings in `requests` at `now` (break-glass roles known from `roles`).
pub fn findings(
    requests: &[ActivationRequest],
    roles: &[PrivilegedRole],
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let break_glass: BTreeSet<&str> = roles
        .iter()
        .filter(|r| r.spec.break_glass)
        .filter_map(|r| r.metadata.name.as_deref())
        .collect();
    let history: Vec<Decided> = requests
        .iter()
        .filter_map(|r| Decided::of(r, break_glass.contains(r.spec.role.as_str())))
        .collect();
    analyse(&history, thresholds, now)
}

/// The report of `findings` over `requests` requests.
pub fn report(
    findings: &[Finding],
    requests: usize,
    thresholds: &Thresholds,
    now: DateTime<Utc>,
    format: ReportFormat,
) -> String {
    match format {
        ReportFormat::Json => {
            let doc = json!({
                "at": now.to_rfc3339(),
                "windowDays": thresholds.window.num_days(),
                "requests": requests,
                "findings": findings.iter().map(|f| json!({
                    "kind": f.kind.as_str(),
                    "roles": f.roles,
                    "people": f.people,
                    "requests": f.requests,
                    "message": f.message,
                })).collect::<Vec<_>>(),
            });
            let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
            out.push('\n');
            out
        }
        ReportFormat::Md => {
            let mut out = format!(
                "# Separation of duties\n\n- At: {}\n- Window: {} days\n- Requests read: {requests}\n- Findings: {}\n\n",
                now.to_rfc3339(),
                thresholds.window.num_days(),
                findings.len()
            );
            if findings.is_empty() {
                out.push_str("Nothing found.\n");
                return out;
            }
            out.push_str("| Finding | Roles | People | Requests | What |\n|---|---|---|---|---|\n");
            for f in findings {
                let cell = |v: String| v.replace('|', "\\|");
                let roles: Vec<&str> = f.roles.iter().map(String::as_str).collect();
                let shown: Vec<&str> = f.requests.iter().take(10).map(String::as_str).collect();
                let more = f.requests.len().saturating_sub(shown.len());
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {}{} | {} |",
                    f.kind.as_str(),
                    cell(roles.join(", ")),
                    cell(f.people.join(", ")),
                    cell(shown.join(", ")),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    },
                    cell(f.message.clone()),
                );
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: kubepim.io/v1alpha1
    kind: ActivationRequest
    metadata: {name: a1, creationTimestamp: "2026-03-01T10:00:00Z"}
    spec:
      role: db-admin
      requester: {username: alice, groups: []}
    status:
      approvals:
        - {approver: bob, decision: Approved, time: "2026-03-01T10:05:00Z"}
  - apiVersion: kubepim.io/v1alpha1
    kind: ActivationRequest
    metadata: {name: b1, creationTimestamp: "2026-03-01T11:00:00Z"}
    spec:
      role: db-admin
      requester: {username: bob, groups: []}
    status:
      approvals:
        - {approver: alice, decision: Approved, time: "2026-03-01T11:00:02Z"}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: ignored}
"#;

    fn now() -> DateTime<Utc> {
        "2026-03-02T00:00:00Z".parse().expect("a time")
    }

    #[test]
    fn an_export_reports_reciprocal_and_fast_approvals() {
        let (requests, roles) = objects_of(EXPORT).expect("an export");
        assert_eq!((requests.len(), roles.len()), (2, 0));
        let found = findings(&requests, &roles, &Thresholds::default(), now());
        let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["ReciprocalApproval", "FastApproval"]);
        let md = report(
            &found,
            requests.len(),
            &Thresholds::default(),
            now(),
            ReportFormat::Md,
        );
        assert!(md.contains("- Findings: 2\n"), "{md}");
        assert!(
            md.contains("| ReciprocalApproval | db-admin | alice, bob | a1, b1 |"),
            "{md}"
        );
        assert!(
            md.contains("| FastApproval | db-admin | alice | b1 |"),
            "{md}"
        );
        let json: Value = serde_json::from_str(&report(
            &found,
            2,
            &Thresholds::default(),
            now(),
            ReportFormat::Json,
        ))
        .expect("JSON");
        assert_eq!(json["findings"][0]["people"], json!(["alice", "bob"]));
        assert_eq!(json["requests"], 2);
    }

    #[test]
    fn a_clean_history_says_so_and_garbage_is_refused() {
        let md = report(&[], 0, &Thresholds::default(), now(), ReportFormat::Md);
        assert!(md.ends_with("Nothing found.\n"), "{md}");
        assert!(objects_of("kind: [unclosed").is_err());
    }
}
