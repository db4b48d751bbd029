use std::collections::BTreeMap;

use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::*;
use crate::api::{ActivationRequest, PrivilegedRole};

fn request(name: &str, phase: Option<&str>) -> ActivationRequest {
    let mut value = json!({
        "apiVersion": "kubepim.io/v1alpha1",
        "kind": "ActivationRequest",
        "metadata": {"name": name},
        "spec": {"role": "db-admin", "namespaces": ["payments"]},
    });
    if let Some(phase) = phase {
        value["status"] = json!({"phase": phase});
    }
    serde_json::from_value(value).expect("request")
}

fn role(name: &str, unmanaged: Option<u32>) -> PrivilegedRole {
    let mut value = json!({
        "apiVersion": "kubepim.io/v1alpha1",
        "kind": "PrivilegedRole",
        "metadata": {"name": name},
        "spec": {
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "scope": {"namespaces": ["payments"]},
        },
    });
    if let Some(count) = unmanaged {
        value["status"] = json!({"unmanagedBindings": {"count": count, "names": ["a/b"]}});
    }
    serde_json::from_value(value).expect("role")
}

/// A store filled as a reflector fills it, and marked synced.
fn synced_store<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for o in objects {
        writer.apply_watcher_event(&Event::InitApply(o));
    }
    writer.apply_watcher_event(&Event::InitDone);
    // The reader outlives the writer in the test; keep the writer alive.
    std::mem::forget(writer);
    reader
}

/// The operator's "caches synced" flag, fixed.
fn synced(value: bool) -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::channel(value).1
}

/// Parses the exposition into `series line → value`, comments and EOF left out.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, value)| (series.to_string(), value.to_string()))
        .collect()
}

#[test]
fn every_metric_is_described_even_before_anything_happened() {
    let metrics = Metrics::new();
    metrics.attach_caches(synced_store(vec![]), synced_store(vec![]), synced(true));
    metrics.attach_notifier(Notifier::disabled());
    let text = metrics.encode();
    for name in [
        "kubepim_reconcile_total",
        "kubepim_reconcile_errors_total",
        "kubepim_reconcile_duration_seconds",
        "kubepim_approval_to_binding_seconds",
        "kubepim_revocation_lateness_seconds",
        "kubepim_active_grants",
        "kubepim_pending_requests",
        "kubepim_unmanaged_privileged_bindings",
        "kubepim_is_leader",
        "kubepim_api_requests_total",
        "kubepim_notifications_delivered_total",
        "kubepim_notifications_failed_total",
    ] {
        // Counters are described without the `_total` suffix in OpenMetrics.
        let family = name.trim_end_matches("_total");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{name} is not described:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let s = samples(&text);
    for kind in kind::ALL {
        assert_eq!(
            s.get(&format!("kubepim_reconcile_total{{kind=\"{kind}\"}}")),
            Some(&"0".to_string()),
            "every kind starts at 0"
        );
    }
    assert_eq!(s.get("kubepim_is_leader"), Some(&"0".to_string()));
}

#[test]
fn reconciles_are_counted_by_kind_and_error_category() {
    let metrics = Metrics::new();
    metrics.observe_reconcile(kind::REQUEST, Duration::from_millis(3), None);
    metrics.observe_reconcile(kind::REQUEST, Duration::from_millis(7), Some("ApiError"));
    metrics.observe_reconcile(kind::ROLE, Duration::from_millis(1), Some("Timeout"));
    let s = samples(&metrics.encode());
    assert_eq!(
        s["kubepim_reconcile_total{kind=\"ActivationRequest\"}"],
        "2"
    );
    assert_eq!(s["kubepim_reconcile_total{kind=\"PrivilegedRole\"}"], "1");
    assert_eq!(
        s["kubepim_reconcile_errors_total{kind=\"ActivationRequest\",category=\"ApiError\"}"],
        "1"
    );
    assert_eq!(
        s["kubepim_reconcile_errors_total{kind=\"PrivilegedRole\",category=\"Timeout\"}"],
        "1"
    );
    assert_eq!(
        s["kubepim_reconcile_duration_seconds_count{kind=\"ActivationRequest\"}"],
        "2"
    );
    assert_eq!(
        s["kubepim_reconcile_duration_seconds_bucket{le=\"0.005\",kind=\"ActivationRequest\"}"],
        "1"
    );
}

#[test]
fn lateness_histogram_keeps_early_revocations_apart() {
    let metrics = Metrics::new();
    metrics.observe_revocation_lateness(-0.3);
    metrics.observe_revocation_lateness(0.02);
    metrics.observe_revocation_lateness(7.0);
    let s = samples(&metrics.encode());
    assert_eq!(
        s["kubepim_revocation_lateness_seconds_bucket{le=\"-0.5\"}"],
        "0"
    );
    assert_eq!(
        s["kubepim_revocation_lateness_seconds_bucket{le=\"-0.1\"}"],
        "1"
    );
    assert_eq!(
        s["kubepim_revocation_lateness_seconds_bucket{le=\"0.05\"}"],
        "2"
    );
    assert_eq!(
        s["kubepim_revocation_lateness_seconds_bucket{le=\"5.0\"}"],
        "2"
    );
    assert_eq!(
        s["kubepim_revocation_lateness_seconds_bucket{le=\"10.0\"}"],
        "3"
    );
    assert_eq!(s["kubepim_revocation_lateness_seconds_count"], "3");
    metrics.observe_approval_to_binding(1.0);
    let s = samples(&metrics.encode());
    assert_eq!(s["kubepim_approval_to_binding_seconds_count"], "1");
}

#[test]
fn gauges_come_from_synced_caches_only() {
    let metrics = Metrics::new();
    // Caches not yet synced: no gauge at all (an empty cache proves nothing).
    let (requests, _writer) = reflector::store::<ActivationRequest>();
    let (roles, _role_writer) = reflector::store::<PrivilegedRole>();
    metrics.attach_caches(requests, roles, synced(false));
    let text = metrics.encode();
    assert!(!text.contains("kubepim_active_grants"), "{text}");
    assert!(
        !text.contains("kubepim_unmanaged_privileged_bindings"),
        "{text}"
    );

    metrics.attach_caches(
        synced_store(vec![
            request("a", Some("Active")),
            request("b", Some("Active")),
            request("c", Some("Pending")),
            request("d", Some("Expired")),
            request("e", None),
        ]),
        synced_store(vec![role("db-admin", Some(3)), role("viewer", None)]),
        synced(true),
    );
    let s = samples(&metrics.encode());
    assert_eq!(s["kubepim_active_grants"], "2");
    assert_eq!(s["kubepim_pending_requests"], "1");
    assert_eq!(
        s["kubepim_unmanaged_privileged_bindings{role=\"db-admin\"}"],
        "3"
    );
    // A role the scan has not reported on is 0, not absent.
    assert_eq!(
        s["kubepim_unmanaged_privileged_bindings{role=\"viewer\"}"],
        "0"
    );
}

#[test]
fn leader_gauge() {
    let metrics = Metrics::new();
    metrics.set_leader(true);
    assert!(metrics.is_leader());
    assert_eq!(samples(&metrics.encode())["kubepim_is_leader"], "1");
    metrics.set_leader(false);
    assert_eq!(samples(&metrics.encode())["kubepim_is_leader"], "0");
}

#[test]
fn api_calls_are_exported_with_bounded_labels() {
    use tower::{Layer, Service};
    let metrics = Metrics::new();
    let inner = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::builder().status(201).body(()).unwrap())
    });
    let mut service = metrics.api_calls().layer(inner);
    let call = service.call(
        http::Request::builder()
            .method(http::Method::POST)
            .uri("/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings")
            .body(())
            .unwrap(),
    );
    futures::executor::block_on(call).unwrap();
    let s = samples(&metrics.encode());
    assert_eq!(
        s["kubepim_api_requests_total{verb=\"create\",resource=\"rolebindings\",code=\"201\"}"],
        "1"
    );
}

#[test]
fn unmanaged_counts_are_sorted_by_role() {
    let roles = [role("b", Some(1)), role("a", None)];
    assert_eq!(
        unmanaged_by_role(roles.iter()),
        vec![("a".to_string(), 0), ("b".to_string(), 1)]
    );
}
