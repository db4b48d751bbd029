//! Separation of duties, read from the kept history: patterns in who approves whom that no single
//! request shows. Each detector is a plain function of the requests and `now`; the controller runs
//! them periodically and reports what they find (PrivilegedRole status, Warning Events, metrics).
//!
//! - reciprocal approvals: A approved a request of B's and B one of A's, within the window;
//! - one approver covering most of a role's approved activations;
//! - an approver of a role who also requests it often (approving their peers' use of the very
//!   privilege they use);
//! - break-glass use per person above a count;
//! - approvals faster than a person plausibly reads a request.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use crate::api::{ActivationRequest, Decision};
use crate::time::from_k8s;

/// Where the detectors draw the line (configurable: `--separation-*` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Only requests created this far back count.
    pub window: Duration,
    /// An approval sooner than this after the request was made is too fast to have been read.
    pub fast_approval: Duration,
    /// One approver's share of a role's approved activations that is a finding…
    pub concentration: f64,
    /// …once the role has at least this many approved activations in the window.
    pub concentration_min: usize,
    /// Requests of a role by one of its approvers that make them a frequent requester.
    pub approver_requests: usize,
    /// Break-glass activations per person in the window that are a finding.
    pub break_glass_uses: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window: Duration::days(30),
            fast_approval: Duration::seconds(5),
            concentration: 0.8,
            concentration_min: 10,
            approver_requests: 3,
            break_glass_uses: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    ReciprocalApproval,
    ApproverConcentration,
    ApproverIsRequester,
    BreakGlassUse,
    FastApproval,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ReciprocalApproval => "ReciprocalApproval",
            FindingKind::ApproverConcentration => "ApproverConcentration",
            FindingKind::ApproverIsRequester => "ApproverIsRequester",
            FindingKind::BreakGlassUse => "BreakGlassUse",
            FindingKind::FastApproval => "FastApproval",
        }
    }

    pub const ALL: [FindingKind; 5] = [
        FindingKind::ReciprocalApproval,
        FindingKind::ApproverConcentration,
        FindingKind::ApproverIsRequester,
        FindingKind::BreakGlassUse,
        FindingKind::FastApproval,
    ];
}

/// One finding: the roles it concerns, the people, the requests that show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub kind: FindingKind,
    pub roles: BTreeSet<String>,
    pub people: Vec<String>,
    pub requests: BTreeSet<String>,
    pub message: String,
}

impl Finding {
    /// Stable across passes while the finding holds (its evidence may grow): what "reported once"
    /// is keyed by.
    pub fn key(&self) -> String {
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        format!(
            "{}/{}/{}",
            self.kind.as_str(),
            roles.join(","),
            self.people.join(",")
        )
    }
}

/// A request as the detectors see it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub name: String,
    pub role: String,
    pub requester: String,
    pub created_at: DateTime<Utc>,
    /// Approvals that counted in its favour: (approver, when).
    pub approvals: Vec<(String, Option<DateTime<Utc>>)>,
    pub activated: bool,
    pub break_glass: bool,
}

impl Decided {
    /// `None` for a request without an admission-stamped requester or creation time.
    pub fn of(request: &ActivationRequest, break_glass: bool) -> Option<Self> {
        let requester = request.requester_name();
        let created_at = request.metadata.creation_timestamp.as_ref().map(from_k8s)?;
        if requester.is_empty() {
            return None;
        }
        let status = request.status.as_ref();
        Some(Self {
            name: request.metadata.name.clone().unwrap_or_default(),
            role: request.spec.role.clone(),
            requester: requester.to_string(),
            created_at,
            approvals: status
                .map(|s| {
                    s.approvals
                        .iter()
                        .filter(|a| a.decision == Decision::Approved && a.approver != requester)
                        .map(|a| (a.approver.clone(), a.time.as_ref().map(from_k8s)))
                        .collect()
                })
                .unwrap_or_default(),
            activated: status.is_some_and(|s| s.activated_at.is_some()),
            break_glass,
        })
    }
}

/// Every finding in `history` (requests created within the window before `now`), sorted.
pub fn analyse(history: &[Decided], thresholds: &Thresholds, now: DateTime<Utc>) -> Vec<Finding> {
    let recent: Vec<&Decided> = history
        .iter()
        .filter(|r| r.created_at >= now - thresholds.window && r.created_at <= now)
        .collect();
    let mut findings = Vec::new();
    findings.extend(reciprocal(&recent));
    findings.extend(concentration(&recent, thresholds));
    findings.extend(approver_is_requester(&recent, thresholds));
    findings.extend(break_glass(&recent, thresholds));
    findings.extend(fast_approvals(&recent, thresholds));
    findings.sort();
    findings
}

/// Approver → requester → the requests (with their roles) approved.
type Approved<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a Decided>>>;

fn approved_by<'a>(recent: &[&'a Decided]) -> Approved<'a> {
    let mut by: Approved<'a> = BTreeMap::new();
    for r in recent {
        for (approver, _) in &r.approvals {
            by.entry(approver.as_str())
                .or_default()
                .entry(r.requester.as_str())
                .or_default()
                .push(r);
        }
    }
    by
}

fn reciprocal(recent: &[&Decided]) -> Vec<Finding> {
    let by = approved_by(recent);
    let mut out = Vec::new();
    for (a, requesters) in &by {
        for (b, a_for_b) in requesters {
            // Each pair once, in name order.
            if a >= b {
                continue;
            }
            let Some(b_for_a) = by.get(b).and_then(|r| r.get(a)) else {
                continue;
            };
            let shown: Vec<&&Decided> = a_for_b.iter().chain(b_for_a.iter()).collect();
            out.push(Finding {
                kind: FindingKind::ReciprocalApproval,
                roles: shown.iter().map(|r| r.role.clone()).collect(),
                people: vec![a.to_string(), b.to_string()],
                requests: shown.iter().map(|r| r.name.clone()).collect(),
                message: format!(
                    "{a} and {b} approve each other's requests: {a} approved {} of {b}'s, {b} {} of {a}'s",
                    a_for_b.len(),
                    b_for_a.len()
                ),
            });
        }
    }
    out
}

fn concentration(recent: &[&Decided], thresholds: &Thresholds) -> Vec<Finding> {
    let mut by_role: BTreeMap<&str, Vec<&Decided>> = BTreeMap::new();
    for r in recent
        .iter()
        .filter(|r| r.activated && !r.approvals.is_empty())
    {
        by_role.entry(r.role.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (role, approved) in by_role {
        if approved.len() < thresholds.concentration_min {
            continue;
        }
        let mut per_approver: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &approved {
            let approvers: BTreeSet<&str> = r.approvals.iter().map(|(a, _)| a.as_str()).collect();
            for a in approvers {
                *per_approver.entry(a).or_default() += 1;
            }
        }
        for (approver, count) in per_approver {
            let share = count as f64 / approved.len() as f64;
            if share >= thresholds.concentration {
                out.push(Finding {
                    kind: FindingKind::ApproverConcentration,
                    roles: [role.to_string()].into(),
                    people: vec![approver.to_string()],
                    requests: BTreeSet::new(),
                    message: format!(
                        "{approver} approved {count} of {} activations of {role} ({:.0} %)",
                        approved.len(),
                        share * 100.0
                    ),
                });
            }
        }
    }
    out
}

fn approver_is_requester(recent: &[&Decided], thresholds: &Thresholds) -> Vec<Finding> {
    // (role, person) → approvals given / requests made.
    let mut approvals: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut requests: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for r in recent {
        requests
            .entry((r.role.as_str(), r.requester.as_str()))
            .or_default()
            .push(r.name.as_str());
        for (a, _) in &r.approvals {
            *approvals.entry((r.role.as_str(), a.as_str())).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for ((role, person), given) in approvals {
        let Some(made) = requests.get(&(role, person)) else {
            continue;
        };
        if made.len() >= thresholds.approver_requests {
            out.push(Finding {
                kind: FindingKind::ApproverIsRequester,
                roles: [role.to_string()].into(),
                people: vec![person.to_string()],
                requests: made.iter().map(|n| n.to_string()).collect(),
                message: format!(
                    "{person} approves {role} ({given} approval(s)) and requests it often ({} request(s))",
                    made.len()
                ),
            });
        }
    }
    out
}

fn break_glass(recent: &[&Decided], thresholds: &Thresholds) -> Vec<Finding> {
    let mut per_person: BTreeMap<&str, Vec<&Decided>> = BTreeMap::new();
    for r in recent.iter().filter(|r| r.break_glass && r.activated) {
        per_person.entry(r.requester.as_str()).or_default().push(r);
    }
    per_person
        .into_iter()
        .filter(|(_, uses)| uses.len() >= thresholds.break_glass_uses)
        .map(|(person, uses)| Finding {
            kind: FindingKind::BreakGlassUse,
            roles: uses.iter().map(|r| r.role.clone()).collect(),
            people: vec![person.to_string()],
            requests: uses.iter().map(|r| r.name.clone()).collect(),
            message: format!(
                "{person} used break-glass {} time(s) in {} day(s)",
                uses.len(),
                thresholds.window.num_days()
            ),
        })
        .collect()
}

fn fast_approvals(recent: &[&Decided], thresholds: &Thresholds) -> Vec<Finding> {
    // Per (role, approver): the requests approved too fast.
    let mut fast: BTreeMap<(&str, &str), Vec<(&str, Duration)>> = BTreeMap::new();
    for r in recent {
        for (approver, at) in &r.approvals {
            if let Some(at) = at {
                let after = *at - r.created_at;
                if after < thresholds.fast_approval {
                    fast.entry((r.role.as_str(), approver.as_str()))
                        .or_default()
                        .push((r.name.as_str(), after));
                }
            }
        }
    }
    fast.into_iter()
        .map(|((role, approver), requests)| {
            let quickest = requests
                .iter()
                .map(|(_, d)| d.num_milliseconds().max(0))
                .min()
                .unwrap_or(0);
            Finding {
                kind: FindingKind::FastApproval,
                roles: [role.to_string()].into(),
                people: vec![approver.to_string()],
                requests: requests.iter().map(|(n, _)| n.to_string()).collect(),
                message: format!(
                    "{approver} approved {} request(s) for {role} less than {} s after they were made (quickest {:.1} s)",
                    requests.len(),
                    thresholds.fast_approval.num_seconds(),
                    quickest as f64 / 1000.0
                ),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "separation_tests.rs"]
mod tests;
