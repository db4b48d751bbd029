use kube::CustomResourceExt;
fn main() {
    for crd in [kubepim::api::PrivilegedRole::crd(), kubepim::api::Eligibility::crd(), kubepim::api::ActivationRequest::crd()] {
        println!("---\n{}", serde_json::to_string_pretty(&crd).unwrap());
    }
}
