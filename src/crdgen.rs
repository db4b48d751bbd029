//! CRD YAML generated from the Rust types; `crds/` is kept equal to this by a test.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{AccessReview, ActivationRequest, Eligibility, PrivilegedRole};

/// All CRDs, in install order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        PrivilegedRole::crd(),
        Eligibility::crd(),
        ActivationRequest::crd(),
        AccessReview::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream.
pub fn all_crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
