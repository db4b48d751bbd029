use super::*;
use crate::admission::TLS_SECRET_NAME;

fn settings() -> WebhookSettings {
    WebhookSettings {
        namespace: "kubepim-system".into(),
        ..Default::default()
    }
}

#[test]
fn secret_round_trip() {
    let names = settings().certificate_names();
    let material = certs::renew(None, &names, Utc::now()).unwrap().unwrap();
    let secret = secret_for(&settings(), &material, Some("7".into()));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(secret.metadata.name.as_deref(), Some(TLS_SECRET_NAME));
    assert_eq!(secret.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(material_from_secret(&secret), Some(material));
    let mut partial = secret;
    partial.data.as_mut().unwrap().remove(keys::CA_KEY);
    assert_eq!(material_from_secret(&partial), None);
}
