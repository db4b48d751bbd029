use chrono::Utc;

use super::*;
use crate::admission::WebhookSettings;
use crate::admission::certs;

fn settings() -> WebhookSettings {
    WebhookSettings {
        namespace: "kubepim-system".into(),
        ..Default::default()
    }
}

#[test]
fn resolver_swaps_and_reports_changes() {
    let names = settings().certificate_names();
    let a = certs::renew(None, &names, Utc::now()).unwrap().unwrap();
    let b = certs::renew(None, &names, Utc::now()).unwrap().unwrap();
    let resolver = Resolver::default();
    assert!(!resolver.is_loaded());
    assert!(resolver.set(&a.serving).unwrap());
    assert!(!resolver.set(&a.serving).unwrap());
    assert!(resolver.set(&b.serving).unwrap());
    assert!(resolver.is_loaded());
    // A key that does not belong to the certificate is refused, and the old one kept.
    let mismatched = CertAndKey {
        cert_pem: a.serving.cert_pem.clone(),
        key_pem: b.serving.key_pem.clone(),
    };
    assert!(resolver.set(&mismatched).is_err());
    assert!(!resolver.set(&b.serving).unwrap());
}
