use super::*;

#[test]
fn configuration_patch_sets_bundle_and_url_and_drops_service() {
    let config = json!({"webhooks": [
        {"name": "a.kubepim.io", "clientConfig": {"service": {"name": "kubepim-webhook", "namespace": "x"}}},
        {"name": "b.kubepim.io", "clientConfig": {"caBundle": "QUJD", "url": "https://127.0.0.1:8443/mutate"}},
    ]});
    let ops = client_config_patch(&config, Some("QUJD"), Some("https://127.0.0.1:8443/mutate"));
    assert_eq!(
        ops,
        vec![
            json!({"op": "test", "path": "/webhooks/0/name", "value": "a.kubepim.io"}),
            json!({"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "QUJD"}),
            json!({"op": "add", "path": "/webhooks/0/clientConfig/url", "value": "https://127.0.0.1:8443/mutate"}),
            json!({"op": "remove", "path": "/webhooks/0/clientConfig/service"}),
        ]
    );
    // Up to date: nothing to write.
    let mut patched = config.clone();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert!(
        client_config_patch(
            &patched,
            Some("QUJD"),
            Some("https://127.0.0.1:8443/mutate")
        )
        .is_empty()
    );
    // Only the bundle (cert-manager or in-cluster): the service reference stays.
    let ops = client_config_patch(&config, Some("REVG"), None);
    assert_eq!(ops.len(), 4);
    assert!(ops.iter().all(|op| op["op"] != "remove"));
}

#[test]
fn endpoint_urls() {
    assert_eq!(
        endpoint_url("https://127.0.0.1:8443", MUTATE_PATH),
        "https://127.0.0.1:8443/mutate"
    );
    assert_eq!(
        endpoint_url("https://127.0.0.1:8443/", VALIDATE_PATH),
        "https://127.0.0.1:8443/validate"
    );
}
