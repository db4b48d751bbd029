use super::*;

#[test]
fn url_hosts() {
    assert_eq!(
        url_host("https://127.0.0.1:8443").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        url_host("https://localhost/x").as_deref(),
        Some("localhost")
    );
    assert_eq!(url_host("https://[::1]:8443/").as_deref(), Some("::1"));
    assert_eq!(
        url_host("https://webhook.example.com").as_deref(),
        Some("webhook.example.com")
    );
    assert_eq!(url_host("http://x"), None);
    assert_eq!(url_host("https://"), None);
}

#[test]
fn settings_need_what_their_mode_needs() {
    let base = WebhookSettings {
        namespace: "kubepim".into(),
        ..Default::default()
    };
    assert!(base.check().is_ok());
    let files = WebhookSettings {
        cert_mode: CertMode::Files,
        ..base.clone()
    };
    assert!(
        files
            .check()
            .unwrap_err()
            .to_string()
            .contains("--webhook-cert-dir")
    );
    let no_ns = WebhookSettings {
        namespace: String::new(),
        ..base.clone()
    };
    assert!(
        no_ns
            .check()
            .unwrap_err()
            .to_string()
            .contains("--namespace")
    );
    let plain = WebhookSettings {
        url: Some("http://127.0.0.1:8443".into()),
        ..base
    };
    assert!(plain.check().unwrap_err().to_string().contains("https://"));
}
