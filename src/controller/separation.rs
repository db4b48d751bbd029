//! The separation-of-duties analysis, run by the leader every `--separation-interval` over the
//! kept history (the request cache): [`crate::policy::separation::analyse`], then per
//! PrivilegedRole its `status.separationFindings` (written only when they changed), a Warning
//! Event for each finding the role's status did not show yet (so a restart announces nothing
//! twice), and the `kubepim_separation_findings{kind}` gauge.
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::events::EventType;

use crate::api::{PrivilegedRole, SeparationFinding};
use crate::policy::separation::{Decided, Finding, FindingKind, Thresholds, analyse};

use super::Error;
use super::calls;
use super::context::Context;

/// At most this many findings are kept in one role's status (the CRD's bound).
const PER_ROLE: usize = 10;
pub const EVENT_REASON: &str = "SeparationOfDuties";

#[derive(Debug, Clone, PartialEq)]
pub struct SeparationSettings {
    /// `None`: the analysis is off.
    pub interval: Option<Duration>,
    pub thresholds: Thresholds,
}

impl Default for SeparationSettings {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(300)),
            thresholds: Thresholds::default(),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub findings: usize,
    pub statuses_written: usize,
    pub events: usize,
}

/// Runs the analysis every interval until `stop` (the first pass after one interval).
pub async fn run(ctx: &Context, settings: SeparationSettings, stop: impl Future<Output = ()>) {
    let Some(interval) = settings.interval else {
        return;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval.max(Duration::from_secs(1))) => {}
            _ = &mut stop => return,
        }
        match pass(ctx, &settings.thresholds).await {
            Ok(outcome) => tracing::debug!(?outcome, "separation-of-duties analysis done"),
            Err(error) => tracing::warn!(%error, "separation-of-duties analysis failed"),
        }
    }
}

/// One analysis of everything the cache holds.
pub async fn pass(ctx: &Context, thresholds: &Thresholds) -> Result<PassOutcome, Error> {
    let roles = ctx.roles.state();
    let break_glass: BTreeSet<String> = roles
        .iter()
        .filter(|r| r.spec.break_glass)
        .map(|r| r.name_any())
        .collect();
    let history: Vec<Decided> = ctx
        .requests
        .state()
        .iter()
        .filter_map(|r| Decided::of(r, break_glass.contains(&r.spec.role)))
        .collect();
    let findings = analyse(&history, thresholds, ctx.now());
    for kind in FindingKind::ALL {
        ctx.metrics.set_separation_findings(
            kind.as_str(),
            findings.iter().filter(|f| f.kind == kind).count(),
        );
    }
    let mut by_role: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for finding in &findings {
        for role in &finding.roles {
            by_role.entry(role.as_str()).or_default().push(finding);
        }
    }
    let mut outcome = PassOutcome {
        findings: findings.len(),
        ..Default::default()
    };
    let mut first_error = None;
    for role in &roles {
        let name = role.name_any();
        let mine = by_role.get(name.as_str()).cloned().unwrap_or_default();
        match report(ctx, role, &mine).await {
            Ok((written, events)) => {
                outcome.statuses_written += usize::from(written);
                outcome.events += events;
            }
            Err(error) => {
                tracing::warn!(%error, role = %name, "could not report separation-of-duties findings");
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(outcome), Err)
}

fn entry(finding: &Finding) -> SeparationFinding {
    SeparationFinding {
        kind: finding.kind.as_str().into(),
        people: finding.people.iter().take(8).cloned().collect(),
        message: finding.message.chars().take(512).collect(),
    }
}

/// Writes the role's findings when they changed; announces the ones it did not show yet.
async fn report(
    ctx: &Context,
    role: &PrivilegedRole,
    findings: &[&Finding],
) -> Result<(bool, usize), Error> {
    let entries: Vec<SeparationFinding> =
        findings.iter().take(PER_ROLE).map(|f| entry(f)).collect();
    let shown: Vec<SeparationFinding> = role
        .status
        .as_ref()
        .and_then(|s| s.separation_findings.clone())
        .unwrap_or_default();
    if entries == shown {
        return Ok((false, 0));
    }
    let name = role.name_any();
    calls::patch_status::<PrivilegedRole>(
        &ctx.client,
        &name,
        &serde_json::json!({ "separationFindings": entries }),
        "patch role status (separation of duties)",
    )
    .await?;
    let mut events = 0;
    for finding in &entries {
        let known = shown
            .iter()
            .any(|s| s.kind == finding.kind && s.people == finding.people);
        if !known {
            tracing::warn!(role = %name, kind = %finding.kind, "{}", finding.message);
            ctx.publish(
                role,
                EventType::Warning,
                EVENT_REASON,
                "Analyse",
                format!("{}: {}", finding.kind, finding.message),
            );
            events += 1;
        }
    }
    Ok((true, events))
}
