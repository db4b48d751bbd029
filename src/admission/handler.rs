//! One admission review, end to end: parsed, answered by [`super::mutate`] or
//! [`super::validate`] (a fast-feedback refusal confirmed against a fresh read first), counted
//! and logged with its uid, operation, resource, name, user and decision. Apart from the HTTPS
//! plumbing in [`super::server`], which needs to know nothing of what a review means.
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use http::StatusCode;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::Instrument;

use crate::api::{ActivationRequest, Eligibility, PrivilegedRole};
use crate::policy::extension::{self, Related};

use super::telemetry::ReviewCounts;
use super::validate::{self, Candidate, Verdict};
use super::{MUTATE_PATH, mutate};

/// A refusal is confirmed against a fresh read, within this limit (the API server waits for the
/// webhook for `timeoutSeconds`, 5 s by default).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// The operator's caches of roles, eligibilities and requests, read by fast feedback.
#[derive(Clone)]
pub struct Snapshots {
    pub roles: Store<PrivilegedRole>,
    pub eligibilities: Store<Eligibility>,
    /// What privilege budgets count.
    pub requests: Store<ActivationRequest>,
}

/// Answers admission reviews.
#[derive(Clone, Default)]
pub struct Handler {
    snapshots: Option<Snapshots>,
    /// Confirms fast-feedback refusals against the API server (the caches may lag).
    client: Option<Client>,
    pub(super) reviews: Arc<ReviewCounts>,
}

impl Handler {
    pub fn new(snapshots: Option<Snapshots>, client: Option<Client>) -> Self {
        Self {
            snapshots,
            client,
            reviews: Arc::default(),
        }
    }

    /// Handles one review on `path`; `Err` is an HTTP error for a body that is not a review.
    pub async fn review(
        &self,
        path: &str,
        body: &[u8],
    ) -> Result<AdmissionReview<DynamicObject>, (StatusCode, String)> {
        let endpoint = if path == MUTATE_PATH {
            "mutate"
        } else {
            "validate"
        };
        let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|e| {
            self.reviews.count(endpoint, "error");
            (
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}"),
            )
        })?;
        let req: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| {
            self.reviews.count(endpoint, "error");
            (
                StatusCode::BAD_REQUEST,
                "AdmissionReview without a request".to_string(),
            )
        })?;
        let span = tracing::info_span!(
            "admission",
            uid = %req.uid,
            endpoint = path,
            operation = ?req.operation,
            resource = %req.resource.resource,
            subresource = req.sub_resource.as_deref().unwrap_or(""),
            name = %req.name,
            user = req.user_info.username.as_deref().unwrap_or(""),
            dry_run = req.dry_run,
        );
        let started = Instant::now();
        let response = match path {
            MUTATE_PATH => mutate::review(&req, Utc::now()),
            _ => self.validate(&req).instrument(span.clone()).await,
        };
        let patched = response.patch.is_some();
        self.reviews.count(
            endpoint,
            if response.allowed {
                "allowed"
            } else {
                "refused"
            },
        );
        span.in_scope(|| {
            if response.allowed {
                tracing::info!(
                    allowed = true,
                    patched,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "admitted"
                );
            } else {
                tracing::info!(
                    allowed = false,
                    why = %response.result.message,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "refused"
                );
            }
        });
        Ok(response.into_review())
    }

    async fn validate(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let Some(candidate) = validate::candidate(req) else {
            return AdmissionResponse::from(req);
        };
        let now = Utc::now();
        let verdict = match &self.snapshots {
            None => Verdict::Allow { warning: None },
            Some(snapshots) => {
                let role = snapshots.roles.get(&ObjectRef::new(&candidate.spec.role));
                let eligibilities = snapshots.eligibilities.state();
                let refs: Vec<&Eligibility> = eligibilities.iter().map(AsRef::as_ref).collect();
                let requests = snapshots.requests.state();
                let history = validate::history_of(&candidate, requests.iter().map(AsRef::as_ref));
                let empty = Default::default();
                let history = validate::related(&history, &empty);
                validate::check_candidate(&candidate, role.as_deref(), &refs, &history, now)
            }
        };
        let verdict = match verdict {
            Verdict::Deny(refusal) => self.confirm(&candidate, refusal).await,
            allow => match self.absent_namespace(&candidate).await {
                Some(namespace) => {
                    Verdict::Deny(crate::policy::validation::namespace_not_found(&namespace))
                }
                None => match self.misfit_extension(&candidate).await {
                    Some(refusal) => Verdict::Deny(refusal),
                    None => allow,
                },
            },
        };
        validate::respond(req, &verdict)
    }

    /// The first requested namespace the API server says does not exist. Anything short of a
    /// clear 404 (no client, a refused or slow read) admits: the controller denies it then.
    async fn absent_namespace(&self, candidate: &Candidate) -> Option<String> {
        let client = self.client.as_ref()?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for namespace in &candidate.spec.namespaces {
            match tokio::time::timeout(CONFIRM_TIMEOUT, namespaces.get_metadata_opt(namespace))
                .await
            {
                Ok(Ok(None)) => return Some(namespace.clone()),
                Ok(Ok(Some(_))) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, %namespace, "could not read the namespace; admitting");
                    return None;
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Why an extension (`spec.extends`) can never be granted, judged on a fresh read of the
    /// request it names: missing, someone else's, another role, more namespaces, or not active.
    /// Anything short of a clear answer admits: the controller judges it again at approval.
    async fn misfit_extension(&self, candidate: &Candidate) -> Option<crate::policy::Refusal> {
        let name = candidate.spec.extends.as_deref()?;
        let client = self.client.as_ref()?;
        let requests: Api<ActivationRequest> = Api::all(client.clone());
        let original = match tokio::time::timeout(CONFIRM_TIMEOUT, requests.get_opt(name)).await {
            Ok(Ok(original)) => original,
            Ok(Err(error)) => {
                tracing::debug!(%error, original = name, "could not read the original; admitting");
                return None;
            }
            Err(_) => return None,
        };
        let status = original
            .as_ref()
            .and_then(|o| o.status.clone())
            .unwrap_or_default();
        let related = original.as_ref().map(|o| Related {
            name,
            spec: &o.spec,
            status: &status,
        });
        extension::judge(
            &candidate.spec,
            &candidate.requester.username,
            related,
            Utc::now(),
        )
        .err()
    }

    /// A refusal from the caches is sent only if a fresh read refuses too; when the fresh read
    /// fails, the request is admitted and the controller decides.
    async fn confirm(&self, candidate: &Candidate, refusal: crate::policy::Refusal) -> Verdict {
        let Some(client) = &self.client else {
            return Verdict::Deny(refusal);
        };
        let fresh = async {
            let role = Api::<PrivilegedRole>::all(client.clone())
                .get_opt(&candidate.spec.role)
                .await?;
            let eligibilities = Api::<Eligibility>::all(client.clone())
                .list(&ListParams::default())
                .await?;
            // Only a budget refusal needs the requests (a cached grant may have ended since). Any
            // other refusal the fresh read clears is admitted unbudgeted: the controller judges it.
            let requests = if refusal.reason == crate::policy::reasons::BUDGET_EXCEEDED {
                Api::<ActivationRequest>::all(client.clone())
                    .list(&ListParams::default())
                    .await?
                    .items
            } else {
                Vec::new()
            };
            Ok::<_, kube::Error>((role, eligibilities.items, requests))
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, fresh).await {
            Ok(Ok((role, eligibilities, requests))) => {
                let refs: Vec<&Eligibility> = eligibilities.iter().collect();
                let history = validate::history_of(candidate, &requests);
                let empty = Default::default();
                let history = validate::related(&history, &empty);
                validate::check_candidate(candidate, role.as_ref(), &refs, &history, Utc::now())
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not confirm a refusal; admitting (the operator decides)");
                Verdict::Allow { warning: None }
            }
            Err(_) => {
                tracing::warn!("confirming a refusal timed out; admitting (the operator decides)");
                Verdict::Allow { warning: None }
            }
        }
    }
}
