//! The activity record: parsing batches, attribution, the bounded summary.
use serde_json::json;

use super::builders::*;
use crate::api::ActivitySource;
use crate::policy::activity::*;
use crate::time::to_k8s;

fn event(user: &str, verb: &str, resource: &str, ns: &str, at: i64) -> serde_json::Value {
    json!({
        "auditID": format!("id-{verb}-{resource}-{at}"),
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "objectRef": {"resource": resource, "namespace": ns, "name": "x", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": at_s(at).to_rfc3339(),
        "stageTimestamp": at_s(at).to_rfc3339(),
        "requestObject": {"huge": "ignored"},
    })
}

fn batch(items: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}),
    )
    .unwrap()
}

fn used(verb: &str, resource: &str, ns: Option<&str>, at: i64, code: i32) -> Use {
    Use {
        at: at_s(at),
        verb: verb.into(),
        resource: resource.into(),
        namespace: ns.map(Into::into),
        name: Some("x".into()),
        code: Some(code),
        audit_id: format!("id-{at}"),
    }
}

#[test]
fn batches_that_are_not_audit_event_lists_are_refused() {
    let cases: [(&[u8], bool); 6] = [
        (b"not json", false),
        (b"{}", false),
        (
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}"#,
            false,
        ),
        (
            br#"{"kind":"PodList","apiVersion":"audit.k8s.io/v1","items":[]}"#,
            false,
        ),
        (
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"stage":7}]}"#,
            false,
        ),
        (
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#,
            true,
        ),
    ];
    for (body, ok) in cases {
        assert_eq!(
            parse_batch(body).is_ok(),
            ok,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn only_the_needed_fields_are_read_and_only_completed_stages_count() {
    let mut started = event("alice", "get", "pods", "payments", 10);
    started["stage"] = json!("ResponseStarted");
    let mut received = event("alice", "get", "pods", "payments", 10);
    received["stage"] = json!("RequestReceived");
    let events = parse_batch(&batch(vec![
        event("alice", "list", "pods", "payments", 10),
        started,
        received,
    ]))
    .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(
        use_of(&events[0]),
        Some(Use {
            at: at_s(10),
            verb: "list".into(),
            resource: "pods".into(),
            namespace: Some("payments".into()),
            name: Some("x".into()),
            code: Some(200),
            audit_id: "id-list-pods-10".into(),
        })
    );
    assert_eq!(use_of(&events[1]), None);
    assert_eq!(use_of(&events[2]), None);
}

#[test]
fn kubepim_s_own_requests_are_not_a_grant_s_use() {
    let mut own = event("alice", "create", "activationrequests", "", 10);
    own["objectRef"]["apiGroup"] = json!("kubepim.io");
    let mut other = event("alice", "create", "activationrequests", "", 10);
    other["objectRef"]["apiGroup"] = json!("example.com");
    let events = parse_batch(&batch(vec![own, other])).unwrap();
    assert_eq!(use_of(&events[0]), None);
    assert!(use_of(&events[1]).is_some());
}

#[test]
fn resources_are_keyed_with_group_and_subresource() {
    let mut e = event("alice", "create", "rolebindings", "payments", 1);
    e["objectRef"]["apiGroup"] = json!("rbac.authorization.k8s.io");
    let mut exec = event("alice", "create", "pods", "payments", 1);
    exec["objectRef"]["subresource"] = json!("exec");
    let events = parse_batch(&batch(vec![e, exec])).unwrap();
    assert_eq!(
        use_of(&events[0]).unwrap().resource,
        "rolebindings.rbac.authorization.k8s.io"
    );
    assert_eq!(use_of(&events[1]).unwrap().resource, "pods/exec");
}

#[test]
fn identities_are_the_user_and_the_impersonated_user() {
    let mut e: AuditEvent =
        serde_json::from_value(event("alice", "get", "pods", "payments", 1)).unwrap();
    assert_eq!(identities(&e).collect::<Vec<_>>(), ["alice"]);
    e.impersonated_user = Some(AuditUser {
        username: "bob".into(),
    });
    assert_eq!(identities(&e).collect::<Vec<_>>(), ["alice", "bob"]);
    e.user.username = String::new();
    assert_eq!(identities(&e).collect::<Vec<_>>(), ["bob"]);
}

#[test]
fn a_window_covers_its_activation_to_its_end_at_whole_seconds() {
    let running = GrantWindow {
        request: "r".into(),
        activated_at: at_s(100),
        ended_at: None,
    };
    let ended = GrantWindow {
        ended_at: Some(at_s(200)),
        ..running.clone()
    };
    let cases = [
        (99, false, false),
        (100, true, true),
        (150, true, true),
        (200, true, true),
        (201, true, false),
        (10_000, true, false),
    ];
    for (t, in_running, in_ended) in cases {
        assert_eq!(running.covers(at_s(t)), in_running, "running at {t}");
        assert_eq!(ended.covers(at_s(t)), in_ended, "ended at {t}");
    }
    // Up to the end of the second the end was persisted in.
    assert!(ended.covers(at_s(200) + chrono::Duration::milliseconds(999)));
}

#[test]
fn notable_writes_are_rbac_tokens_secrets_streams_csrs_and_webhooks() {
    let cases = [
        ("create", "rolebindings.rbac.authorization.k8s.io", true),
        ("patch", "clusterroles.rbac.authorization.k8s.io", true),
        ("delete", "secrets", true),
        ("create", "serviceaccounts", true),
        ("create", "serviceaccounts/token", true),
        ("create", "pods/exec", true),
        ("get", "pods/portforward", true),
        ("create", "pods/attach", true),
        (
            "create",
            "certificatesigningrequests.certificates.k8s.io",
            true,
        ),
        (
            "update",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            true,
        ),
        ("get", "secrets", false),
        ("list", "rolebindings.rbac.authorization.k8s.io", false),
        ("create", "pods", false),
        ("delete", "configmaps", false),
        ("get", "pods/log", false),
    ];
    for (verb, resource, want) in cases {
        assert_eq!(
            is_notable(&used(verb, resource, Some("p"), 1, 201)),
            want,
            "{verb} {resource}"
        );
    }
}

#[test]
fn a_summary_counts_by_verb_and_resource_namespaces_times_and_denials() {
    let mut a = empty();
    let l = Limits::default();
    record(&mut a, &used("list", "pods", Some("payments"), 30, 200), l);
    record(&mut a, &used("list", "pods", Some("payments"), 10, 200), l);
    record(
        &mut a,
        &used(
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            Some("payments"),
            20,
            201,
        ),
        l,
    );
    record(&mut a, &used("get", "secrets", Some("billing"), 40, 403), l);
    record(&mut a, &used("get", "namespaces", None, 50, 200), l);
    assert_eq!(a.source, ActivitySource::AuditWebhook);
    assert_eq!(a.requests, 5);
    assert_eq!(a.denied, 1);
    assert_eq!(a.first_use, Some(to_k8s(at_s(10))));
    assert_eq!(a.last_use, Some(to_k8s(at_s(50))));
    assert_eq!(a.counts["list pods"], 2);
    assert_eq!(a.counts["create rolebindings.rbac.authorization.k8s.io"], 1);
    assert_eq!(a.namespaces, ["billing", "payments"]);
    assert_eq!(a.notable_writes.len(), 1);
    assert_eq!(a.notable_writes[0].name.as_deref(), Some("x"));
    assert_eq!(a.notable_writes[0].code, Some(201));
}

#[test]
fn past_the_caps_counts_go_to_other_and_writes_are_counted_not_listed() {
    let l = Limits {
        count_keys: 3,
        namespaces: 2,
        notable_writes: 1,
    };
    let mut a = empty();
    for (i, r) in ["pods", "services", "configmaps", "jobs.batch"]
        .iter()
        .enumerate()
    {
        record(
            &mut a,
            &used("get", r, Some(&format!("ns{i}")), i as i64, 200),
            l,
        );
    }
    record(&mut a, &used("create", "secrets", None, 9, 201), l);
    record(&mut a, &used("delete", "secrets", None, 9, 200), l);
    assert_eq!(a.counts.len(), 3);
    assert_eq!(a.counts["get pods"], 1);
    assert_eq!(a.counts["get services"], 1);
    assert_eq!(a.counts[OTHER], 4);
    assert_eq!(a.namespaces, ["ns0", "ns1"]);
    assert!(a.namespaces_truncated);
    assert_eq!(a.notable_writes.len(), 1);
    assert_eq!(a.notable_writes_dropped, 1);
    assert_eq!(a.requests, 6);
}

#[test]
fn merging_adds_a_delta_to_what_is_stored() {
    let l = Limits::default();
    let mut stored = empty();
    record(
        &mut stored,
        &used("list", "pods", Some("payments"), 10, 200),
        l,
    );
    let mut delta = empty();
    record(
        &mut delta,
        &used("list", "pods", Some("billing"), 5, 200),
        l,
    );
    record(
        &mut delta,
        &used("create", "secrets", Some("billing"), 20, 403),
        l,
    );
    merge(&mut stored, &delta, l);
    assert_eq!(stored.requests, 3);
    assert_eq!(stored.denied, 1);
    assert_eq!(stored.counts["list pods"], 2);
    assert_eq!(stored.first_use, Some(to_k8s(at_s(5))));
    assert_eq!(stored.last_use, Some(to_k8s(at_s(20))));
    assert_eq!(stored.namespaces, ["billing", "payments"]);
    assert_eq!(stored.notable_writes.len(), 1);
    // Merging into nothing gives the delta back.
    let mut none = empty();
    merge(&mut none, &delta, l);
    assert_eq!(none, delta);
}

#[test]
fn idleness_counts_from_the_last_use_or_the_activation() {
    let timeout = mins(30);
    let mut a = empty();
    assert_eq!(idle_at(None, at(0), timeout), at(30));
    assert_eq!(idle_at(Some(&a), at(0), timeout), at(30));
    record(
        &mut a,
        &used("get", "pods", None, 600, 200),
        Limits::default(),
    );
    assert_eq!(idle_at(Some(&a), at(0), timeout), at(40));
    // A use recorded before this activation (a stale record) does not count.
    assert_eq!(idle_at(Some(&a), at(20), timeout), at(50));
    assert!(!is_idle(Some(&a), at(0), timeout, at(39)));
    assert!(is_idle(Some(&a), at(0), timeout, at(40)));
}

#[test]
fn never_used_is_only_known_with_the_record() {
    let mut a = empty();
    assert_eq!(never_used(Some(&a), false), None);
    assert_eq!(never_used(None, true), Some(true));
    assert_eq!(never_used(Some(&a), true), Some(true));
    record(
        &mut a,
        &used("get", "pods", None, 1, 200),
        Limits::default(),
    );
    assert_eq!(never_used(Some(&a), true), Some(false));
    assert_eq!(notable_writes(Some(&a)), &[]);
    assert_eq!(unavailable().source, ActivitySource::Unavailable);
}
