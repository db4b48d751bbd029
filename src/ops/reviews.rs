//! Access reviews for people: the items I may decide, deciding one, and the evidence report for
//! auditors (`kubepim review report`). The admission policy `review-status` is the authority; the
//! checks here only explain a refusal before anything is written.
use std::fmt::Write as _;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::api::{AccessReview, ItemDecision, Requester, ReviewDecision, ReviewItem, ReviewPhase};
use crate::policy::review_decisions::{ReviewRefusal, may_review, outcomes};

use super::OpsError;
use super::refusal::{Refusal, RefusalKind};

/// One item as its reviewer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MyItem<'a> {
    pub item: &'a ReviewItem,
    /// My latest decision on it, if any.
    pub mine: Option<ReviewDecision>,
    /// The latest decision on it by anyone, and by whom.
    pub latest: Option<(ReviewDecision, &'a str)>,
}

/// The items of `review` that `me` may decide (never my own access, see [`may_review`]).
pub fn my_items<'a>(review: &'a AccessReview, me: &Requester) -> Vec<MyItem<'a>> {
    let Some(status) = review.status.as_ref() else {
        return vec![];
    };
    let last = |item: &ReviewItem, reviewer: Option<&str>| {
        status
            .decisions
            .iter()
            .rev()
            .find(|d| d.item == item.id && reviewer.is_none_or(|r| d.reviewer == r))
    };
    status
        .items
        .iter()
        .filter(|i| may_review(&review.spec, i, &me.username, &me.groups).is_ok())
        .map(|item| MyItem {
            item,
            mine: last(item, Some(&me.username)).map(|d| d.decision),
            latest: last(item, None).map(|d| (d.decision, d.reviewer.as_str())),
        })
        .collect()
}

fn refusal(e: ReviewRefusal) -> OpsError {
    let kind = match e {
        ReviewRefusal::SelfReview { .. } => RefusalKind::SelfApproval,
        ReviewRefusal::NotAReviewer { .. } => RefusalKind::NotAnApprover,
        ReviewRefusal::ServiceAccount(_) => RefusalKind::ServiceAccount,
        ReviewRefusal::NotOpen(_) => RefusalKind::Terminal,
        _ => RefusalKind::Other,
    };
    OpsError::Refused(Refusal::local(kind, e.to_string()))
}

/// The decision entry as the policy wants it: my own name and groups, exactly as authenticated.
pub fn decision_entry(
    me: &Requester,
    item: &str,
    decision: ReviewDecision,
    comment: Option<&str>,
) -> ItemDecision {
    ItemDecision {
        item: item.into(),
        decision,
        reviewer: me.username.clone(),
        groups: me.groups.clone(),
        at: Some(crate::time::to_k8s(chrono::Utc::now())),
        comment: comment.map(str::to_string),
    }
}

/// Appends my decision on `item` of review `name`, conditional on the version read (a decision
/// appended meanwhile by someone else makes it retry on the fresh review).
pub async fn decide(
    client: &Client,
    me: &Requester,
    name: &str,
    item: &str,
    decision: ReviewDecision,
    comment: Option<&str>,
) -> Result<AccessReview, OpsError> {
    let api: Api<AccessReview> = Api::all(client.clone());
    let entry = decision_entry(me, item, decision, comment);
    for attempt in 1..=10u64 {
        let review = api
            .get(name)
            .await
            .map_err(|e| OpsError::kube(format!("reading access review {name}"), e))?;
        let status = review.status.clone().unwrap_or_default();
        if status.phase != Some(ReviewPhase::Open) {
            let phase = status
                .phase
                .map_or("not open yet".into(), |p| format!("{p:?}"));
            return Err(refusal(ReviewRefusal::NotOpen(phase)));
        }
        let Some(target) = status.items.iter().find(|i| i.id == item) else {
            return Err(refusal(ReviewRefusal::NoSuchItem(item.into())));
        };
        may_review(&review.spec, target, &me.username, &me.groups).map_err(refusal)?;
        let mut decisions: Vec<Value> = status
            .decisions
            .iter()
            .filter_map(|d| serde_json::to_value(d).ok())
            .collect();
        decisions.push(serde_json::to_value(&entry).map_err(|e| OpsError::Invalid {
            what: "decision".into(),
            message: e.to_string(),
        })?);
        let patch = json!({
            "metadata": {"resourceVersion": review.metadata.resource_version},
            "status": {"decisions": decisions},
        });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => return Ok(updated),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => {
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                return Err(OpsError::Refused(Refusal {
                    kind: RefusalKind::Other,
                    sentence: format!("your decision on {item} in review {name} was refused"),
                    server: Some(e.message),
                }));
            }
            Err(e) => {
                return Err(OpsError::kube(
                    format!("recording the decision on {item} in review {name}"),
                    e,
                ));
            }
        }
    }
    Err(OpsError::Invalid {
        what: "decision".into(),
        message: format!("review {name} kept changing; try again"),
    })
}

/// Formats of `kubepim review report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    #[default]
    Md,
    Csv,
    Json,
}

/// One row of the report: the item, its evidence, the decisions on it and its outcome (recorded
/// at close; for an open review, what it would be now).
fn rows(review: &AccessReview) -> Vec<Value> {
    let Some(status) = review.status.as_ref() else {
        return vec![];
    };
    let projected = outcomes(&review.spec, status);
    status
        .items
        .iter()
        .zip(projected)
        .map(|(item, projected)| {
            let decisions: Vec<&ItemDecision> = status
                .decisions
                .iter()
                .filter(|d| d.item == item.id)
                .collect();
            json!({
                "item": item.id,
                "eligibility": item.eligibility,
                "role": item.role,
                "subjectKind": format!("{:?}", item.subject.kind),
                "subject": match &item.subject.namespace {
                    Some(ns) => format!("{ns}/{}", item.subject.name),
                    None => item.subject.name.clone(),
                },
                "activations": item.evidence.activations,
                "lastUsed": item.evidence.last_used,
                "elevatedHours": item.evidence.elevated_hours,
                "approvers": item.evidence.approvers,
                // From the audit record, where it covered the grants (empty otherwise).
                "auditedRequests": item.evidence.activity.as_ref().map(|a| a.requests),
                "unusedGrants": item.evidence.activity.as_ref().map(|a| a.unused_grants),
                "recommendation": item.recommendation.as_str(),
                "recommendationReason": item.recommendation_reason,
                "decisions": decisions,
                "outcome": item.outcome.unwrap_or(projected).as_str(),
                "outcomeRecorded": item.outcome.is_some(),
            })
        })
        .collect()
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn decided_by(row: &Value) -> String {
    row["decisions"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| format!("{} {}", text(&d["reviewer"]), text(&d["decision"])))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The evidence report of `review` for auditors.
pub fn report(review: &AccessReview, format: ReportFormat) -> String {
    let name = review.metadata.name.clone().unwrap_or_default();
    let status = review.status.clone().unwrap_or_default();
    let rows = rows(review);
    match format {
        ReportFormat::Json => {
            let doc = json!({
                "review": name,
                "phase": status.phase.map(|p| format!("{p:?}")),
                "dueAt": status.due_at,
                "closedAt": status.closed_at,
                "defaultDecision": review.spec.default_decision.as_str(),
                "reviewers": review.spec.reviewers,
                "items": rows,
            });
            let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
            out.push('\n');
            out
        }
        ReportFormat::Csv => {
            let columns = [
                "item",
                "eligibility",
                "role",
                "subjectKind",
                "subject",
                "activations",
                "lastUsed",
                "elevatedHours",
                "approvers",
                "auditedRequests",
                "unusedGrants",
                "recommendation",
                "outcome",
            ];
            let mut out = columns.join(",");
            out.push_str(",decisions\n");
            for row in &rows {
                let fields: Vec<String> =
                    columns.iter().map(|c| csv_field(&text(&row[*c]))).collect();
                let _ = writeln!(out, "{},{}", fields.join(","), csv_field(&decided_by(row)));
            }
            out
        }
        ReportFormat::Md => {
            let mut out = format!("# Access review {name}\n\n");
            let phase = status
                .phase
                .map_or("not open yet".into(), |p| format!("{p:?}"));
            let _ = writeln!(out, "- Phase: {phase}");
            if let Some(due) = &status.due_at {
                let _ = writeln!(out, "- Due: {}", due.0);
            }
            if let Some(closed) = &status.closed_at {
                let _ = writeln!(out, "- Closed: {}", closed.0);
            }
            let _ = writeln!(
                out,
                "- Undecided items: {}\n- Reviewers: users [{}], groups [{}]{}\n",
                review.spec.default_decision.as_str(),
                review.spec.reviewers.users.join(", "),
                review.spec.reviewers.groups.join(", "),
                if review.spec.reviewers.subjects_approvers {
                    ", and the subjects' approvers"
                } else {
                    ""
                }
            );
            out.push_str("| Eligibility | Role | Subject | Activations | Last used | Elevated h | Approvers | API requests (unused grants) | Recommendation | Decisions | Outcome |\n");
            out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
            for row in &rows {
                let cell = |v: String| v.replace('|', "\\|");
                let _ = writeln!(
                    out,
                    "| {} | {} | {} {} | {} | {} | {} | {} | {} | {} ({}) | {} | {}{} |",
                    cell(text(&row["eligibility"])),
                    cell(text(&row["role"])),
                    text(&row["subjectKind"]),
                    cell(text(&row["subject"])),
                    text(&row["activations"]),
                    text(&row["lastUsed"]),
                    text(&row["elevatedHours"]),
                    cell(text(&row["approvers"])),
                    match row["auditedRequests"].as_i64() {
                        Some(n) => format!("{n} ({})", text(&row["unusedGrants"])),
                        None => "no audit record".into(),
                    },
                    text(&row["recommendation"]),
                    cell(text(&row["recommendationReason"])),
                    cell(decided_by(row)),
                    text(&row["outcome"]),
                    if row["outcomeRecorded"] == json!(true) {
                        ""
                    } else {
                        " (if closed now)"
                    },
                );
            }
            out
        }
    }
}

#[cfg(test)]
#[path = "reviews_tests.rs"]
mod tests;
