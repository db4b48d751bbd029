//! Does a request fit its PrivilegedRole and the requester's Eligibilities, now?
//!
//! The same function decides at creation (refusal → `Denied`) and on every later reconcile of an
//! active grant (refusal → `Revoked`), so a grant never outlives the rules it was granted under.
use chrono::{DateTime, Duration, Utc};

use crate::api::{ActivationRequestSpec, Eligibility, PrivilegedRole, Requester, RoleKind};
use crate::time::{duration_from_k8s, format_duration};

use super::eligibility::{EligibilityWindow, window_state};
use super::identity::subject_matches;
use super::reasons;

/// What a valid request is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Namespaces to bind in (empty for a cluster-wide role).
    pub namespaces: Vec<String>,
    pub duration: Duration,
    /// Eligibilities that allow this exact grant now.
    pub eligibilities: Vec<String>,
    /// The grant cannot outlast the latest window end of those eligibilities (None: unbounded).
    pub eligible_until: Option<DateTime<Utc>>,
    /// The earliest time one of those eligibilities changes state: re-check then.
    pub recheck_at: Option<DateTime<Utc>>,
}

/// Why a request is refused: a reason constant and a message naming exactly what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The refusal for a request that names a namespace that does not exist (a fact the webhook reads
/// from the API server; the controller meets it as the API server's 404 and denies the same way,
/// see [`super::lifecycle::namespace_missing`]).
pub fn namespace_not_found(namespace: &str) -> Refusal {
    Refusal::new(
        super::reasons::NAMESPACE_NOT_FOUND,
        format!(
            "namespace {namespace} does not exist: nothing can be granted there (create the \
             namespace first, or request only namespaces that exist)"
        ),
    )
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// Resolves the namespaces a request binds in, checked against the role's scope.
fn resolve_namespaces(
    spec: &ActivationRequestSpec,
    role: &PrivilegedRole,
) -> Result<Vec<String>, Refusal> {
    let role_name = role.metadata.name.as_deref().unwrap_or_default();
    let scope = &role.spec.scope;
    if scope.cluster_wide {
        if !spec.namespaces.is_empty() {
            return Err(Refusal::new(
                reasons::NAMESPACES_ON_CLUSTER_WIDE_ROLE,
                format!("role {role_name} is granted cluster-wide; spec.namespaces must be empty"),
            ));
        }
        return Ok(vec![]);
    }
    if spec.namespaces.is_empty() {
        return match scope.namespaces.as_slice() {
            [only] => Ok(vec![only.clone()]),
            allowed => Err(Refusal::new(
                reasons::NAMESPACES_REQUIRED,
                format!(
                    "role {role_name} is namespaced: set spec.namespaces to some of {}",
                    list(allowed)
                ),
            )),
        };
    }
    let mut namespaces = spec.namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    if let Some(bad) = namespaces.iter().find(|ns| !scope.namespaces.contains(ns)) {
        return Err(Refusal::new(
            reasons::NAMESPACE_OUTSIDE_SCOPE,
            format!(
                "namespace {bad} is not allowed by role {role_name}, which allows {}",
                list(&scope.namespaces)
            ),
        ));
    }
    Ok(namespaces)
}

/// A RoleBinding's roleRef names a Role *in the binding's namespace*: a Role can only be granted
/// in its own namespace, and never cluster-wide. The CRD's CEL rules say the same; this keeps a
/// role that slipped past them from granting a same-named Role elsewhere.
fn check_role_kind(namespaces: &[String], role: &PrivilegedRole) -> Result<(), Refusal> {
    let role_name = role.metadata.name.as_deref().unwrap_or_default();
    let role_ref = &role.spec.role_ref;
    if role_ref.kind != RoleKind::Role {
        return Ok(());
    }
    let home = role_ref.namespace.as_deref().unwrap_or_default();
    if namespaces.is_empty() {
        return Err(Refusal::new(
            reasons::NAMESPACE_OUTSIDE_SCOPE,
            format!(
                "role {role_name} grants Role {home}/{}, which cannot be granted cluster-wide",
                role_ref.name
            ),
        ));
    }
    if let Some(bad) = namespaces.iter().find(|ns| ns.as_str() != home) {
        return Err(Refusal::new(
            reasons::NAMESPACE_OUTSIDE_SCOPE,
            format!(
                "namespace {bad} is not allowed by role {role_name}: Role {home}/{} can only be granted in {home}",
                role_ref.name
            ),
        ));
    }
    Ok(())
}

fn check_justification_and_ticket(
    spec: &ActivationRequestSpec,
    role: &PrivilegedRole,
) -> Result<(), Refusal> {
    let role_name = role.metadata.name.as_deref().unwrap_or_default();
    if role.spec.require_justification
        && spec
            .justification
            .as_deref()
            .is_none_or(|j| j.trim().is_empty())
    {
        return Err(Refusal::new(
            reasons::JUSTIFICATION_REQUIRED,
            format!("role {role_name} requires spec.justification"),
        ));
    }
    if let Some(pattern) = &role.spec.ticket_pattern {
        let re = regex::Regex::new(pattern).map_err(|e| {
            Refusal::new(
                reasons::INVALID_TICKET_PATTERN,
                format!("role {role_name} has an invalid ticketPattern: {e}"),
            )
        })?;
        match spec.ticket.as_deref() {
            None | Some("") => {
                return Err(Refusal::new(
                    reasons::TICKET_REQUIRED,
                    format!("role {role_name} requires spec.ticket matching {pattern}"),
                ));
            }
            Some(ticket) if !re.is_match(ticket) => {
                return Err(Refusal::new(
                    reasons::TICKET_MISMATCH,
                    format!(
                        "ticket {ticket} does not match {pattern} required by role {role_name}"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Step-up: the authenticated identity must carry one of the required `extra` values.
fn check_requester_attributes(requester: &Requester, role: &PrivilegedRole) -> Result<(), Refusal> {
    let Some(required) = &role.spec.require_requester_attributes else {
        return Ok(());
    };
    let values = requester
        .extra
        .get(&required.key)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if values.iter().any(|v| required.any_of.contains(v)) {
        return Ok(());
    }
    let role_name = role.metadata.name.as_deref().unwrap_or_default();
    Err(Refusal::new(
        reasons::REQUESTER_ATTRIBUTES_MISSING,
        format!(
            "role {role_name} requires the authenticated attribute {} to include one of {}; {} has {}",
            required.key,
            list(&required.any_of),
            requester.username,
            list(values)
        ),
    ))
}

/// The duration asked for (or the role's default), checked against the role's maximum.
pub fn requested_duration(
    spec: &ActivationRequestSpec,
    role: &PrivilegedRole,
) -> Result<Duration, Refusal> {
    let role_name = role.metadata.name.as_deref().unwrap_or_default();
    let duration = duration_from_k8s(
        spec.duration
            .as_ref()
            .unwrap_or(&role.spec.default_duration),
    );
    // Timestamps are persisted at whole seconds: a shorter grant would expire as it starts.
    if duration < Duration::seconds(1) {
        return Err(Refusal::new(
            reasons::DURATION_TOO_SHORT,
            format!(
                "duration {} is too short: a grant lasts at least 1s",
                format_duration(duration)
            ),
        ));
    }
    let max = duration_from_k8s(&role.spec.max_duration);
    if duration > max {
        return Err(Refusal::new(
            reasons::DURATION_TOO_LONG,
            format!(
                "duration {} exceeds the maximum {} of role {role_name}",
                format_duration(duration),
                format_duration(max)
            ),
        ));
    }
    Ok(duration)
}

/// Why one eligibility naming the requester does not allow this grant, if it does not.
fn eligibility_refusal(
    elig: &Eligibility,
    namespaces: &[String],
    duration: Duration,
    now: DateTime<Utc>,
) -> Option<Refusal> {
    let name = elig.metadata.name.as_deref().unwrap_or_default();
    match window_state(&elig.spec, now) {
        EligibilityWindow::NotYetValid(at) => {
            return Some(Refusal::new(
                reasons::ELIGIBILITY_NOT_YET_VALID,
                format!("eligibility {name} is valid only from {}", at.to_rfc3339()),
            ));
        }
        EligibilityWindow::Expired(at) => {
            return Some(Refusal::new(
                reasons::ELIGIBILITY_EXPIRED,
                format!("eligibility {name} ended at {}", at.to_rfc3339()),
            ));
        }
        EligibilityWindow::Within(_) => {}
    }
    if !elig.spec.namespaces.is_empty() {
        // An eligibility narrowed to namespaces never allows a cluster-wide grant, which would
        // reach far beyond them.
        if namespaces.is_empty() {
            return Some(Refusal::new(
                reasons::NAMESPACE_OUTSIDE_SCOPE,
                format!(
                    "eligibility {name} allows only namespaces {}, but the role is granted cluster-wide",
                    list(&elig.spec.namespaces)
                ),
            ));
        }
        if let Some(bad) = namespaces
            .iter()
            .find(|ns| !elig.spec.namespaces.contains(ns))
        {
            return Some(Refusal::new(
                reasons::NAMESPACE_OUTSIDE_SCOPE,
                format!(
                    "namespace {bad} is not allowed by eligibility {name}, which allows {}",
                    list(&elig.spec.namespaces)
                ),
            ));
        }
    }
    if let Some(max) = elig.spec.max_duration.as_ref().map(duration_from_k8s)
        && duration > max
    {
        return Some(Refusal::new(
            reasons::DURATION_TOO_LONG,
            format!(
                "duration {} exceeds the maximum {} of eligibility {name}",
                format_duration(duration),
                format_duration(max)
            ),
        ));
    }
    None
}

/// The instant a not-yet-active request is judged at: its `startAt` when that is still ahead
/// (an eligibility opening before then is enough; one closing before then refuses it now),
/// otherwise `now`.
pub fn judged_at(spec: &ActivationRequestSpec, now: DateTime<Utc>) -> DateTime<Utc> {
    spec.start_at
        .as_ref()
        .map(crate::time::from_k8s)
        .filter(|start| *start > now)
        .unwrap_or(now)
}

/// Validates a request against its role and the eligibilities for that role.
///
/// `eligibilities` may include ones for other roles or subjects; they are filtered here.
pub fn validate(
    spec: &ActivationRequestSpec,
    requester: &Requester,
    role: &PrivilegedRole,
    eligibilities: &[&Eligibility],
    now: DateTime<Utc>,
) -> Result<Grant, Refusal> {
    let role_name = role.metadata.name.as_deref().unwrap_or_default();
    let namespaces = resolve_namespaces(spec, role)?;
    check_role_kind(&namespaces, role)?;
    let duration = requested_duration(spec, role)?;
    check_justification_and_ticket(spec, role)?;
    check_requester_attributes(requester, role)?;

    let mut naming: Vec<&Eligibility> = eligibilities
        .iter()
        .copied()
        .filter(|e| {
            e.spec.role == role_name
                && e.spec
                    .subjects
                    .iter()
                    .any(|s| subject_matches(s, requester))
        })
        .collect();
    // By name, so that the refusal reported does not depend on the order the cache lists them in.
    naming.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if naming.is_empty() {
        return Err(Refusal::new(
            reasons::NOT_ELIGIBLE,
            format!(
                "{} is not eligible for role {role_name}: no Eligibility names the user or any of their groups",
                requester.username
            ),
        ));
    }
    let mut allowing = Vec::new();
    let mut first_refusal = None;
    for elig in naming {
        match eligibility_refusal(elig, &namespaces, duration, now) {
            None => allowing.push(elig),
            Some(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    if allowing.is_empty() {
        return Err(first_refusal.unwrap_or_else(|| {
            Refusal::new(reasons::NOT_ELIGIBLE, "no eligibility allows this request")
        }));
    }
    let ends: Vec<Option<DateTime<Utc>>> = allowing
        .iter()
        .map(|e| window_state(&e.spec, now).next_change())
        .collect();
    // Unbounded if any allowing eligibility is unbounded; otherwise the latest end.
    let eligible_until = if ends.iter().any(Option::is_none) {
        None
    } else {
        ends.iter().flatten().max().copied()
    };
    let recheck_at = ends.iter().flatten().min().copied();
    let mut names: Vec<String> = allowing
        .iter()
        .filter_map(|e| e.metadata.name.clone())
        .collect();
    names.sort();
    Ok(Grant {
        namespaces,
        duration,
        eligibilities: names,
        eligible_until,
        recheck_at,
    })
}
