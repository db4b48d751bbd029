//! History retention: an ended request kept for the retention period is exported to the audit
//! stream, then deleted — conditional on the version exported, so a request that changed since
//! (it cannot, once terminal, but an admin can edit anything) is exported again before it goes.
//!
//! Export is at least once: a deletion that fails after the export is retried on the next pass
//! with a second export line (the record's `uid` tells them apart from another request).
use std::collections::HashMap;
use std::time::Duration;

use kube::api::{DeleteParams, Preconditions};
use kube::{Api, ResourceExt};

use crate::api::{ActivationRequest, Eligibility};
use crate::audit::{self, AuditRecord};
use crate::policy::retention::{due, ended_at, export_record, kept_for_budgets};
use crate::time::from_k8s;

use super::Error;
use super::calls::{Refusal, bounded};
use super::context::Context;

/// At most this many requests are deleted per pass: years of history deleted by a first run
/// must not crowd out the grants' own API calls.
pub const PER_PASS: usize = 200;

/// How long ended requests are kept, and how often they are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `None`: kept forever.
    pub keep_for: Option<Duration>,
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            keep_for: Some(Duration::from_secs(90 * 24 * 3600)),
            interval: Duration::from_secs(3600),
        }
    }
}

/// One pass over the cached requests: exports and deletes those due. Returns how many were
/// deleted; a failed deletion is logged, the pass goes on, and its first error is returned.
pub async fn prune(ctx: &Context, keep_for: Duration) -> Result<usize, Error> {
    let Ok(keep_for) = chrono::Duration::from_std(keep_for) else {
        return Ok(0);
    };
    let requests = ctx.requests.state();
    let now = ctx.now();
    // Once per role, not per request: each lookup scans every Eligibility.
    let mut by_role: HashMap<&str, chrono::Duration> = HashMap::new();
    for request in &requests {
        let role = request.spec.role.as_str();
        by_role.entry(role).or_insert_with(|| {
            let eligibilities = ctx.eligibilities_for(role);
            let eligibilities: Vec<&Eligibility> =
                eligibilities.iter().map(AsRef::as_ref).collect();
            keep_for.max(kept_for_budgets(ctx.role(role).as_deref(), &eligibilities))
        });
    }
    let retention_of = |request: &ActivationRequest| {
        by_role
            .get(request.spec.role.as_str())
            .copied()
            .unwrap_or(keep_for)
    };
    let mut deleted = 0;
    let mut first_error = None;
    for request in due(
        requests.iter().map(AsRef::as_ref),
        retention_of,
        now,
        PER_PASS,
    ) {
        export(request);
        match delete_exported(ctx, request).await {
            Ok(true) => {
                deleted += 1;
                ctx.metrics.observe_history_deleted();
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, request = %request.name_any(), "history retention: deletion failed; kept until the next pass");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(deleted),
    }
}

fn export(request: &ActivationRequest) {
    let name = request.name_any();
    let status = request.status.clone().unwrap_or_default();
    let ended = ended_at(request).unwrap_or_default();
    let approvers: Vec<String> = status
        .approvals
        .iter()
        .map(|a| a.approver.clone())
        .collect();
    let message = format!(
        "{} request exported before deletion (ended {}, kept for the history retention)",
        status.phase.map(|p| p.as_str()).unwrap_or_default(),
        ended.to_rfc3339(),
    );
    let record = AuditRecord {
        decision: crate::policy::transition::AuditDecision::HistoryExported,
        request: &name,
        requester: request.requester_name(),
        role: &request.spec.role,
        namespaces: &request.spec.namespaces,
        until: status.expires_at.as_ref().map(from_k8s),
        approvers: &approvers,
        reason: status.reason.as_deref().unwrap_or_default(),
        message: &message,
        break_glass: false,
    };
    audit::export(&record, &export_record(request, ended));
}

/// Deletes exactly the exported version. `false`: already gone, or changed since (exported again
/// next pass).
async fn delete_exported(ctx: &Context, request: &ActivationRequest) -> Result<bool, Error> {
    let api: Api<ActivationRequest> = Api::all(ctx.client.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: request.uid(),
            resource_version: request.resource_version(),
        }),
        ..DeleteParams::default()
    };
    let name = request.name_any();
    match bounded("delete ended request", api.delete(&name, &params)).await {
        Ok(_) => Ok(true),
        Err(error) if matches!(error.refusal(), Refusal::NotFound | Refusal::Conflict) => Ok(false),
        Err(error) => Err(error),
    }
}
