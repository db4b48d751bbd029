//! `/validate`: fast feedback at `kubectl apply` time. Pure, given role and eligibility snapshots.
//!
//! A request the controller would deny anyway (not eligible, outside the eligibility window,
//! namespace not allowed, duration over the maximum, justification or ticket missing, step-up
//! attributes missing, a privilege budget used up) is refused at CREATE with the controller's own
//! reason and wording: both call [`crate::policy::validate`] and [`crate::policy::budget::check`],
//! with the requester taken from `request.userInfo` (what the mutating step stamps).
//!
//! The controller remains the authority. This check only ever refuses what the controller would
//! refuse given the same snapshots, and it admits whenever it cannot tell:
//! - the role is not known (not yet in the operator's cache, or really missing): admitted with a
//!   warning; the controller denies `RoleNotFound` if it stays missing;
//! - the object cannot be read as an ActivationRequest, or the API server sent no username:
//!   admitted; schema validation and the controller handle it.
//!
//! Snapshots can lag behind the API server (an Eligibility created a moment ago), so the server
//! confirms a refusal against a fresh read before sending it (see [`super::server`]).
use chrono::{DateTime, Utc};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

use crate::api::{
    ActivationRequest, ActivationRequestSpec, Eligibility, PrivilegedRole, Requester,
};
use crate::policy::extension::Related;
use crate::policy::{Refusal, budget, validate};

use super::request::{forbidden, is_activation_request, requester_from};

/// What fast feedback needs from a CREATE: the spec and the authenticated requester.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub spec: ActivationRequestSpec,
    pub requester: Requester,
}

/// The outcome of fast feedback.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Admit, optionally with a warning shown to the caller.
    Allow { warning: Option<String> },
    /// Refuse with the controller's reason and message.
    Deny(Refusal),
}

/// The request to check, or `None` when there is nothing to check (not a CREATE of an
/// ActivationRequest, no username, or an object that does not read as one).
pub fn candidate(req: &AdmissionRequest<DynamicObject>) -> Option<Candidate> {
    if !is_activation_request(req)
        || req.operation != Operation::Create
        || req.sub_resource.is_some()
    {
        return None;
    }
    let requester = requester_from(&req.user_info)?;
    let spec = req.object.as_ref()?.data.get("spec")?;
    let spec: ActivationRequestSpec = serde_json::from_value(spec.clone()).ok()?;
    Some(Candidate { spec, requester })
}

/// Checks a candidate against the snapshots: the role it names (`None`: unknown), the
/// eligibilities (any; filtered by the policy) and the kept requests (any; what budgets count).
pub fn check_candidate(
    candidate: &Candidate,
    role: Option<&PrivilegedRole>,
    eligibilities: &[&Eligibility],
    history: &[Related<'_>],
    now: DateTime<Utc>,
) -> Verdict {
    let Some(role) = role else {
        return Verdict::Allow {
            warning: Some(format!(
                "PrivilegedRole {} is not known to kubepim yet; the operator will decide",
                candidate.spec.role
            )),
        };
    };
    let at = crate::policy::validation::judged_at(&candidate.spec, now);
    match validate(
        &candidate.spec,
        &candidate.requester,
        role,
        eligibilities,
        at,
    ) {
        Ok(grant) => {
            let ask = budget::Ask {
                // Not created yet: nothing in the history is this request.
                request_name: "",
                requester: &candidate.requester.username,
                role: &candidate.spec.role,
                duration: grant.duration,
            };
            match budget::check(&ask, role, &grant, eligibilities, history, now) {
                Ok(()) => Verdict::Allow { warning: None },
                Err(refusal) => Verdict::Deny(refusal),
            }
        }
        Err(refusal) => Verdict::Deny(refusal),
    }
}

/// The requests a budget may count for `candidate`: its requester's, for its role.
pub fn history_of<'a>(
    candidate: &Candidate,
    requests: impl IntoIterator<Item = &'a ActivationRequest>,
) -> Vec<&'a ActivationRequest> {
    requests
        .into_iter()
        .filter(|r| {
            r.spec.role == candidate.spec.role && r.requester_name() == candidate.requester.username
        })
        .collect()
}

/// The history as the policy reads it (a request without status has never been active).
pub fn related<'a>(
    requests: &[&'a ActivationRequest],
    empty: &'a crate::api::ActivationRequestStatus,
) -> Vec<Related<'a>> {
    requests
        .iter()
        .map(|r| Related {
            name: r.metadata.name.as_deref().unwrap_or_default(),
            spec: &r.spec,
            status: r.status.as_ref().unwrap_or(empty),
        })
        .collect()
}

/// The admission response for a verdict.
pub fn respond(req: &AdmissionRequest<DynamicObject>, verdict: &Verdict) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(req);
    match verdict {
        Verdict::Allow { warning: None } => response,
        Verdict::Allow { warning: Some(w) } => {
            response.warnings = Some(vec![w.clone()]);
            response
        }
        Verdict::Deny(refusal) => forbidden(response, refusal.to_string()),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
