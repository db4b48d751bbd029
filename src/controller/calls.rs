//! Every API call a reconciler makes goes through here: bounded in time (the client's own
//! defaults let a hung call hold a revocation for minutes), paged where it lists, written as
//! kubepim's field manager, and its refusals read by HTTP code in one place.
use std::fmt::Debug;
use std::time::Duration;

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Error;

/// Upper bound for one API call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Field manager for every write the controller makes.
pub const MANAGER: &str = "kubepim";

/// Objects per page of a list: large enough that a list of 10,000 takes 20 round trips, small
/// enough that one page never holds much memory.
pub const PAGE_SIZE: u32 = 500;

/// Cluster-scoped kinds whose objects the reconcilers patch by name.
pub trait ClusterObject:
    Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
{
}

impl<K> ClusterObject for K where
    K: Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
{
}

/// Runs one API call within [`CALL_TIMEOUT`], naming it in the error.
pub async fn bounded<T>(
    what: &'static str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|source| Error::Kube { what, source }),
        Err(_) => Err(Error::Timeout { what }),
    }
}

/// A list read page by page, each page a bounded call:
/// `while let Some(items) = pages.next().await? { … }`.
pub struct Pages<'a, K: Clone + DeserializeOwned + Debug> {
    api: &'a Api<K>,
    params: Option<ListParams>,
    what: &'static str,
}

/// The pages of `api.list(params)`, [`PAGE_SIZE`] objects at a time.
pub fn pages<'a, K: Clone + DeserializeOwned + Debug>(
    api: &'a Api<K>,
    params: ListParams,
    what: &'static str,
) -> Pages<'a, K> {
    Pages {
        api,
        params: Some(params.limit(PAGE_SIZE)),
        what,
    }
}

impl<K: Clone + DeserializeOwned + Debug> Pages<'_, K> {
    /// The next page's objects; `None` once the last page was read.
    pub async fn next(&mut self) -> Result<Option<Vec<K>>, Error> {
        let Some(params) = self.params.take() else {
            return Ok(None);
        };
        let page = bounded(self.what, self.api.list(&params)).await?;
        self.params = page
            .metadata
            .continue_
            .filter(|token| !token.is_empty())
            .map(|token| params.continue_token(&token));
        Ok(Some(page.items))
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Merge-patches the status of a cluster-scoped object as kubepim.
pub async fn patch_status<K: ClusterObject>(
    client: &Client,
    name: &str,
    status: &impl serde::Serialize,
    what: &'static str,
) -> Result<K, Error> {
    let patch = Patch::Merge(serde_json::json!({ "status": status }));
    bounded(
        what,
        Api::<K>::all(client.clone()).patch_status(name, &params(), &patch),
    )
    .await
}

/// Merge-patches a status, conditional on the resourceVersion the decision was made on: when the
/// object changed since (an approval arrived), the API server answers 409 and nothing is written.
pub async fn patch_status_at<K: ClusterObject>(
    client: &Client,
    name: &str,
    resource_version: Option<String>,
    status: Value,
    what: &'static str,
) -> Result<K, Error> {
    let patch =
        serde_json::json!({"metadata": {"resourceVersion": resource_version}, "status": status});
    bounded(
        what,
        Api::<K>::all(client.clone()).patch_status(name, &params(), &Patch::Merge(&patch)),
    )
    .await
}

/// A JSON patch (RFC 6902) of a cluster-scoped object; its `test` operations make it conditional
/// (a failed test is 422).
pub async fn json_patch<K: ClusterObject>(
    client: &Client,
    name: &str,
    operations: Value,
    what: &'static str,
) -> Result<K, Error> {
    let operations: json_patch::Patch =
        serde_json::from_value(operations).map_err(Error::Serialize)?;
    bounded(
        what,
        Api::<K>::all(client.clone()).patch(name, &params(), &Patch::Json::<()>(operations)),
    )
    .await
}

/// What a call's failure means for the reconcile that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 404: the object (or its namespace) is not there.
    NotFound,
    /// 409: a conflict: the object exists, or changed since it was read.
    Conflict,
    /// 422: invalid, or a JSON patch's `test` failed.
    Invalid,
    /// Anything else (another code, a timeout, a transport error).
    Other,
}

impl Error {
    /// The HTTP code the API server answered with, if it answered.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            _ => None,
        }
    }

    /// The answer as a [`Refusal`] a reconciler branches on.
    pub fn refusal(&self) -> Refusal {
        match self.api_code() {
            Some(404) => Refusal::NotFound,
            Some(409) => Refusal::Conflict,
            Some(422) => Refusal::Invalid,
            _ => Refusal::Other,
        }
    }
}
