//! Semantic checks: what the CRD schema cannot see, because it needs other objects, the clock,
//! or knowledge of how the operator decides.
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::api::{Eligibility, PrivilegedRole, SubjectKind};
use crate::policy::approvals::{UnreachableQuorum, unreachable_quorum};
use crate::policy::identity::is_service_account_group;
use crate::policy::{self, EligibilityWindow, is_service_account, window_state};
use crate::time::{duration_from_k8s, format_duration, from_k8s};

use super::findings::{Findings, Subject};
use super::objects::{Kind, Located, PolicySet};

/// Runs every semantic check over the whole set.
pub fn check_set(set: &PolicySet, now: DateTime<Utc>, findings: &mut Findings) {
    duplicate_names(set, findings);
    removed_by_reviews(set, findings);
    // The first of duplicate names is the one the checks resolve references to.
    let mut roles: HashMap<&str, &PrivilegedRole> = HashMap::new();
    for role in &set.roles {
        let name = role.subject.name.as_str();
        roles.entry(name).or_insert(&role.resource);
        approver_quorum(role, findings);
        service_account_approvers(role, findings);
        ticket_pattern(role, findings);
    }
    for elig in &set.eligibilities {
        eligibility_window(elig, now, findings);
        system_group_subjects(elig, findings);
        let role_name = elig.resource.spec.role.as_str();
        match roles.get(role_name) {
            Some(role) => {
                eligibility_namespaces(elig, role, findings);
                eligibility_max_duration(elig, role, findings);
            }
            // Its own findings say why it could not be read; "missing" would mislead.
            None if set.is_declared(Kind::PrivilegedRole, role_name) => {}
            None => findings.error(
                &elig.subject,
                Some("spec.role"),
                format!("PrivilegedRole {role_name} is not defined in the checked files"),
            ),
        }
    }
    let eligibilities: Vec<&Eligibility> = set.eligibilities.iter().map(|e| &e.resource).collect();
    for request in &set.requests {
        would_be_granted(request, set, &roles, &eligibilities, now, findings);
    }
}

/// Names are unique per kind: a second object with the same name replaces the first on apply.
fn duplicate_names(set: &PolicySet, findings: &mut Findings) {
    let mut first: HashMap<(Kind, &str), &Subject> = HashMap::new();
    for (kind, subject) in &set.declared {
        match first.get(&(*kind, subject.name.as_str())) {
            Some(earlier) => findings.error(
                subject,
                Some("metadata.name"),
                format!(
                    "duplicate {} name {}: also defined in {} (document {}); the later one would replace it",
                    kind.as_str(),
                    subject.name,
                    earlier.source.file,
                    earlier.source.document
                ),
            ),
            None => {
                first.insert((*kind, subject.name.as_str()), subject);
            }
        }
    }
}

/// A role whose requests can never be approved is an error before it merges.
fn approver_quorum(role: &Located<PrivilegedRole>, findings: &mut Findings) {
    if let Some(UnreachableQuorum { required, humans }) = unreachable_quorum(&role.resource.spec) {
        findings.error(
            &role.subject,
            Some("spec.approval.requiredApprovals"),
            format!(
                "{required} approvals are required but only {humans} distinct approver user(s) can \
                 give one (ServiceAccounts and repeated names do not count) and no approver group \
                 is named: no request for this role can ever be approved"
            ),
        );
    }
}

fn service_account_approvers(role: &Located<PrivilegedRole>, findings: &mut Findings) {
    let approvers = &role.resource.spec.approval.approvers;
    for user in approvers.users.iter().filter(|u| is_service_account(u)) {
        findings.warning(
            &role.subject,
            Some("spec.approval.approvers.users"),
            format!("{user} is a ServiceAccount: approvals by ServiceAccounts never count"),
        );
    }
    for group in approvers
        .groups
        .iter()
        .filter(|g| is_service_account_group(g))
    {
        findings.warning(
            &role.subject,
            Some("spec.approval.approvers.groups"),
            format!("{group} holds only ServiceAccounts: approvals by ServiceAccounts never count"),
        );
    }
}

/// The first line of a regex error that says what is wrong (they span several lines, with a
/// caret under the position; a finding is one line).
fn regex_error_summary(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(|| text.lines().collect::<Vec<_>>().join(" "), str::to_owned)
}

fn ticket_pattern(role: &Located<PrivilegedRole>, findings: &mut Findings) {
    let Some(pattern) = &role.resource.spec.ticket_pattern else {
        return;
    };
    if let Err(e) = regex::Regex::new(pattern) {
        findings.error(
            &role.subject,
            Some("spec.ticketPattern"),
            format!(
                "{pattern:?} is not a valid regular expression ({}): every request would be denied",
                regex_error_summary(&e)
            ),
        );
        return;
    }
    let anchored = (pattern.starts_with('^') || pattern.starts_with("\\A"))
        && (pattern.ends_with('$') || pattern.ends_with("\\z"));
    if !anchored {
        findings.warning(
            &role.subject,
            Some("spec.ticketPattern"),
            format!(
                "{pattern:?} is not anchored with ^ and $: any ticket that merely contains a match is accepted"
            ),
        );
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn eligibility_window(elig: &Located<Eligibility>, now: DateTime<Utc>, findings: &mut Findings) {
    let spec = &elig.resource.spec;
    if let (Some(start), Some(end)) = (
        spec.not_before.as_ref().map(from_k8s),
        spec.not_after.as_ref().map(from_k8s),
    ) && end <= start
    {
        findings.error(
            &elig.subject,
            Some("spec.notAfter"),
            format!(
                "the window is empty: notAfter {} is not later than notBefore {}",
                rfc3339(end),
                rfc3339(start)
            ),
        );
        return;
    }
    if let EligibilityWindow::Expired(end) = window_state(spec, now) {
        findings.warning(
            &elig.subject,
            Some("spec.notAfter"),
            format!(
                "the window ended at {}: this eligibility no longer allows anything; remove it",
                rfc3339(end)
            ),
        );
    }
}

/// Who a Kubernetes system group contains, for the groups that make many identities eligible.
fn system_group_members(group: &str) -> Option<String> {
    match group {
        "system:authenticated" => Some("every authenticated user and ServiceAccount".into()),
        "system:unauthenticated" => Some("every anonymous caller".into()),
        "system:serviceaccounts" => Some("every ServiceAccount in the cluster".into()),
        "system:masters" => {
            Some("cluster administrators, who already hold every permission".into())
        }
        _ => group
            .strip_prefix("system:serviceaccounts:")
            .map(|ns| format!("every ServiceAccount in namespace {ns}")),
    }
}

fn system_group_subjects(elig: &Located<Eligibility>, findings: &mut Findings) {
    for (i, subject) in elig.resource.spec.subjects.iter().enumerate() {
        if subject.kind != SubjectKind::Group {
            continue;
        }
        if let Some(members) = system_group_members(&subject.name) {
            findings.warning(
                &elig.subject,
                Some(&format!("spec.subjects[{i}]")),
                format!(
                    "group {} contains {members}: all of them become eligible",
                    subject.name
                ),
            );
        }
    }
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn eligibility_namespaces(
    elig: &Located<Eligibility>,
    role: &PrivilegedRole,
    findings: &mut Findings,
) {
    let namespaces = &elig.resource.spec.namespaces;
    if namespaces.is_empty() {
        return;
    }
    let role_name = role.metadata.name.as_deref().unwrap_or_default();
    let scope = &role.spec.scope;
    if scope.cluster_wide {
        // A cluster-wide grant reaches far beyond the namespaces, so the operator refuses every
        // request resting on such an eligibility: it is useless, and its author misread the role.
        findings.error(
            &elig.subject,
            Some("spec.namespaces"),
            format!(
                "role {role_name} is granted cluster-wide, which namespaces {} cannot narrow: \
                 the operator refuses every request resting on this eligibility",
                list(namespaces)
            ),
        );
        return;
    }
    let outside: Vec<String> = namespaces
        .iter()
        .filter(|ns| !scope.namespaces.contains(ns))
        .cloned()
        .collect();
    if !outside.is_empty() {
        findings.error(
            &elig.subject,
            Some("spec.namespaces"),
            format!(
                "namespaces {} are outside the scope of role {role_name}, which allows {}",
                list(&outside),
                list(&scope.namespaces)
            ),
        );
    }
}

fn eligibility_max_duration(
    elig: &Located<Eligibility>,
    role: &PrivilegedRole,
    findings: &mut Findings,
) {
    let Some(elig_max) = elig
        .resource
        .spec
        .max_duration
        .as_ref()
        .map(duration_from_k8s)
    else {
        return;
    };
    let role_max = duration_from_k8s(&role.spec.max_duration);
    if elig_max > role_max {
        findings.error(
            &elig.subject,
            Some("spec.maxDuration"),
            format!(
                "{} is longer than the maximum {} of role {}: an eligibility can only narrow its role",
                format_duration(elig_max),
                format_duration(role_max),
                role.metadata.name.as_deref().unwrap_or_default()
            ),
        );
    }
}

/// Runs the operator's own validation for a request, at `now`, against the checked roles and
/// eligibilities.
fn would_be_granted(
    request: &Located<crate::api::ActivationRequest>,
    set: &PolicySet,
    roles: &HashMap<&str, &PrivilegedRole>,
    eligibilities: &[&Eligibility],
    now: DateTime<Utc>,
    findings: &mut Findings,
) {
    let spec = &request.resource.spec;
    let Some(requester) = &spec.requester else {
        findings.warning(
            &request.subject,
            Some("spec.requester"),
            "not set: admission stamps it from the caller's identity, so whether this request \
             would be granted cannot be checked offline",
        );
        return;
    };
    let Some(role) = roles.get(spec.role.as_str()) else {
        if !set.is_declared(Kind::PrivilegedRole, &spec.role) {
            findings.error(
                &request.subject,
                Some("spec.role"),
                format!(
                    "would be denied: {}: PrivilegedRole {} is not defined in the checked files",
                    policy::reasons::ROLE_NOT_FOUND,
                    spec.role
                ),
            );
        }
        return;
    };
    let at = policy::validation::judged_at(spec, now);
    // Checked files carry no request status, so no usage: a budget refuses here only a request
    // that asks for more than the whole budget.
    let verdict = policy::validate(spec, requester, role, eligibilities, at).and_then(|grant| {
        let ask = policy::budget::Ask {
            request_name: "",
            requester: &requester.username,
            role: &spec.role,
            duration: grant.duration,
        };
        policy::budget::check(&ask, role, &grant, eligibilities, &[], at)
    });
    if let Err(refusal) = verdict {
        findings.error(
            &request.subject,
            None,
            format!("would be denied: {}: {}", refusal.reason, refusal.message),
        );
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;

/// Eligibilities still in Git that a closed access review (an export among the checked files)
/// removed a subject from. The operator no longer honours that subject, but only while the
/// Eligibility is unchanged: the next edit of it in Git, whatever it changes, makes the subject
/// eligible again. So Git must drop the subject, or keep it on purpose after a new review.
fn removed_by_reviews(set: &PolicySet, findings: &mut Findings) {
    use crate::api::{ReviewDecision, ReviewPhase};
    for review in &set.reviews {
        let Some(status) = review.resource.status.as_ref() else {
            continue;
        };
        if status.phase != Some(ReviewPhase::Closed) {
            continue;
        }
        for item in status
            .items
            .iter()
            .filter(|i| i.outcome == Some(ReviewDecision::Remove))
        {
            for elig in set
                .eligibilities
                .iter()
                .filter(|e| e.subject.name == item.eligibility)
            {
                if let Some(index) = elig
                    .resource
                    .spec
                    .subjects
                    .iter()
                    .position(|s| *s == item.subject)
                {
                    findings.error(
                        &elig.subject,
                        Some(&format!("spec.subjects[{index}]")),
                        format!(
                            "{:?} {} was removed by access review {}: drop it from this Eligibility \
                             (the operator stops honouring it, but the next change to this file \
                             would make it eligible again)",
                            item.subject.kind, item.subject.name, review.subject.name
                        ),
                    );
                }
            }
        }
    }
}
