//! What both endpoints share about an admission request: whether it is one of ours, who sent
//! it, and how a refusal is answered. Apart from [`super::mutate`] and [`super::validate`] so that
//! both depend on it and neither on the other.
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};

use crate::api::{GROUP, Requester};

/// The resource this webhook is for.
pub const RESOURCE: &str = "activationrequests";

/// Is this request about `activationrequests` of our group (possibly a subresource)?
pub fn is_activation_request(req: &AdmissionRequest<DynamicObject>) -> bool {
    req.resource.group == GROUP && req.resource.resource == RESOURCE
}

/// The requester as the API server authenticated the caller; `None` without a username.
pub fn requester_from(user: &UserInfo) -> Option<Requester> {
    let username = user.username.clone().filter(|u| !u.is_empty())?;
    Some(Requester {
        username,
        uid: user.uid.clone().filter(|u| !u.is_empty()),
        groups: user.groups.clone().unwrap_or_default(),
        extra: user.extra.clone().unwrap_or_default().into_iter().collect(),
    })
}

/// Refuses with HTTP 403 Forbidden and `message` (the API server prefixes the webhook's name).
pub fn forbidden(response: AdmissionResponse, message: impl ToString) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
