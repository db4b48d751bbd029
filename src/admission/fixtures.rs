//! AdmissionReview fixtures shared by the webhook's unit tests: what kube-apiserver posts.
#![allow(dead_code)]
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

pub fn alice() -> Value {
    json!({
        "username": "alice",
        "uid": "uid-alice",
        "groups": ["payments-oncall", "developers", "system:authenticated"],
        "extra": {"amr": ["pwd", "mfa"], "authentication.kubernetes.io/credential-id": ["X509SHA256=ab"]},
    })
}

pub fn bob() -> Value {
    json!({"username": "bob", "uid": "uid-bob", "groups": ["sre-leads", "system:authenticated"]})
}

pub fn operator() -> Value {
    json!({"username": "system:serviceaccount:kubepim:kubepim", "uid": "uid-op",
           "groups": ["system:serviceaccounts", "system:serviceaccounts:kubepim", "system:authenticated"]})
}

/// An ActivationRequest as the API server sends it in `request.object`.
pub fn request_object(spec: Value, status: Option<Value>, finalizers: Option<Value>) -> Value {
    let mut metadata = json!({"name": "alice-payments", "uid": "0d1f", "creationTimestamp": null});
    if let Some(f) = finalizers {
        metadata["finalizers"] = f;
    }
    let mut obj = json!({
        "apiVersion": "kubepim.io/v1alpha1",
        "kind": "ActivationRequest",
        "metadata": metadata,
        "spec": spec,
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

pub fn spec() -> Value {
    json!({"role": "payments-admin", "namespaces": ["payments"], "duration": "1h", "justification": "INC-1"})
}

/// An AdmissionReview (admission.k8s.io/v1) as the API server posts it.
pub fn review_json(
    operation: &str,
    sub: Option<&str>,
    user: Value,
    object: Value,
    old: Option<Value>,
) -> Value {
    let mut request = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "kubepim.io", "version": "v1alpha1", "kind": "ActivationRequest"},
        "resource": {"group": "kubepim.io", "version": "v1alpha1", "resource": "activationrequests"},
        "requestKind": {"group": "kubepim.io", "version": "v1alpha1", "kind": "ActivationRequest"},
        "requestResource": {"group": "kubepim.io", "version": "v1alpha1", "resource": "activationrequests"},
        "name": "alice-payments",
        "operation": operation,
        "userInfo": user,
        "object": object,
        "oldObject": old,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" }},
    });
    if let Some(sub) = sub {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

pub fn parse(review: Value) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(review).expect("AdmissionReview");
    review.try_into().expect("request")
}
