//! Bounded API calls: every call on the grant/revoke path has a time limit, because the client's
//! own defaults allow a hung call to hold a revocation for minutes.
use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::Error;

/// Upper bound for one API call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Field manager for every write the controller makes.
pub const MANAGER: &str = "kubepim";

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

/// Merge-patches the status of a cluster-scoped object as kubepim.
pub async fn patch_status<K>(
    client: &Client,
    name: &str,
    status: &impl serde::Serialize,
    what: &'static str,
) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let patch = Patch::Merge(serde_json::json!({ "status": status }));
    bounded(what, api.patch_status(name, &params, &patch)).await
}
