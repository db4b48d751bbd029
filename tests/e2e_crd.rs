//! End-to-end, layer 4: the CRDs' schema and CEL rules enforced by a real API server.
//!
//! Every CEL rule of the three CRDs is broken once and must be refused with its own message; valid
//! objects are the positive control. No operator runs here: the control plane is shared by the
//! tests of this file, which use unique names.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_crd`
mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubepim::api::{
    ActivationRequest, Eligibility, PrivilegedRole, RoleKind, RoleRef, Scope, SubjectRef,
};
use serde_json::{Value, json};
use support::Env;
use support::envtest::SECRET_READER;
use support::fixtures::{self, dur};

/// The API server's answer to a write that must be refused: HTTP 422 with `message` in it.
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, kube::Error>,
    message: &str,
) -> Result<(), String> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains(message) => Ok(()),
        Err(kube::Error::Api(e)) => Err(format!(
            "{what}: refused ({} {}) but without {message:?}: {}",
            e.code, e.reason, e.message
        )),
        Err(e) => Err(format!("{what}: unexpected error: {e}")),
        Ok(_) => Err(format!(
            "{what}: ACCEPTED, expected refusal with {message:?}"
        )),
    }
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

fn time(rfc3339: &str) -> Time {
    Time(rfc3339.parse().expect("timestamp"))
}

#[tokio::test]
async fn valid_objects_are_accepted() {
    let Some(env) = Env::shared("crd-valid").await else {
        return;
    };
    let roles: Api<PrivilegedRole> = Api::all(env.admin());
    let pp = PostParams::default();

    let ns = env.namespace("apps").await;
    let namespaced = fixtures::with_approvers(
        fixtures::pod_reader(&env, "pods", &[&ns]),
        2,
        &["bob"],
        &["sre-leads"],
    );
    roles
        .create(&pp, &namespaced)
        .await
        .expect("namespaced PrivilegedRole");
    let cluster_wide = fixtures::namespace_reader(&env, "namespaces");
    roles
        .create(&pp, &cluster_wide)
        .await
        .expect("cluster-wide PrivilegedRole");
    let role_kind = fixtures::secret_reader(&env, "secrets", &ns);
    roles
        .create(&pp, &role_kind)
        .await
        .expect("PrivilegedRole for a Role");
    let mut break_glass = fixtures::namespace_reader(&env, "break-glass");
    break_glass.spec.break_glass = true;
    break_glass.spec.max_duration = dur("48h");
    roles
        .create(&pp, &break_glass)
        .await
        .expect("break-glass PrivilegedRole with maxDuration 48h");

    let mut el = fixtures::eligibility(
        &env,
        "pods-oncall",
        &namespaced.metadata.name.clone().unwrap(),
        vec![
            SubjectRef::user("alice"),
            SubjectRef::group("payments-oncall"),
            SubjectRef::service_account(&ns, "robot"),
        ],
    );
    el.spec.not_before = Some(time("2026-01-01T00:00:00Z"));
    el.spec.not_after = Some(time("2036-01-01T00:00:00Z"));
    Api::<Eligibility>::all(env.admin())
        .create(&pp, &el)
        .await
        .expect("Eligibility");

    let ar = fixtures::request(
        &env,
        "pods-now",
        "alice",
        namespaced.metadata.name.as_deref().unwrap(),
        &[&ns],
        "30m",
    );
    Api::<ActivationRequest>::all(env.client("alice"))
        .create(&pp, &ar)
        .await
        .expect("ActivationRequest by alice");
}

#[tokio::test]
async fn privileged_role_cel_rules_are_enforced() {
    let Some(env) = Env::shared("crd-prole").await else {
        return;
    };
    let roles: Api<PrivilegedRole> = Api::all(env.admin());
    let ns = "payments";
    type Case = (&'static str, fn(&mut PrivilegedRole), &'static str);
    let cases: Vec<Case> = vec![
        (
            "defaultDuration above maxDuration",
            |pr| {
                pr.spec.default_duration = dur("2h");
                pr.spec.max_duration = dur("1h");
            },
            "defaultDuration must not exceed maxDuration",
        ),
        (
            "maxDuration 25h without breakGlass",
            |pr| pr.spec.max_duration = dur("25h"),
            "maxDuration may exceed 24h only for a breakGlass role",
        ),
        (
            "clusterWide with a Role",
            |pr| {
                pr.spec.role_ref = RoleRef {
                    kind: RoleKind::Role,
                    name: SECRET_READER.into(),
                    namespace: Some("payments".into()),
                };
                pr.spec.scope = Scope {
                    namespaces: vec![],
                    cluster_wide: true,
                };
            },
            "scope.clusterWide needs roleRef.kind ClusterRole",
        ),
        (
            "Role bound outside its namespace",
            |pr| {
                pr.spec.role_ref = RoleRef {
                    kind: RoleKind::Role,
                    name: SECRET_READER.into(),
                    namespace: Some("payments".into()),
                };
                pr.spec.scope = Scope {
                    namespaces: vec!["payments".into(), "billing".into()],
                    cluster_wide: false,
                };
            },
            "a Role can only be bound in its own namespace: scope.namespaces must be exactly [roleRef.namespace]",
        ),
        (
            "breakGlass with approvals",
            |pr| {
                pr.spec.break_glass = true;
                pr.spec.approval.required_approvals = 1;
                pr.spec.approval.approvers.users = vec!["bob".into()];
            },
            "a breakGlass role activates without approval: set approval.requiredApprovals to 0",
        ),
        (
            "approvals required, no approvers",
            |pr| pr.spec.approval.required_approvals = 1,
            "approval.approvers must name at least one user or group when approvals are required",
        ),
        (
            "more approvals than approver users, no group",
            |pr| {
                pr.spec.approval.required_approvals = 2;
                pr.spec.approval.approvers.users = vec!["bob".into()];
            },
            "approval.requiredApprovals is more than the number of approver users, and no approver group is named",
        ),
        (
            "Role without roleRef.namespace",
            |pr| {
                pr.spec.role_ref = RoleRef {
                    kind: RoleKind::Role,
                    name: SECRET_READER.into(),
                    namespace: None,
                }
            },
            "roleRef.namespace is required for kind Role and not allowed for kind ClusterRole",
        ),
        (
            "ClusterRole with roleRef.namespace",
            |pr| pr.spec.role_ref.namespace = Some("payments".into()),
            "roleRef.namespace is required for kind Role and not allowed for kind ClusterRole",
        ),
        (
            "scope with namespaces and clusterWide",
            |pr| pr.spec.scope.cluster_wide = true,
            "scope needs exactly one of: a non-empty namespaces list, or clusterWide: true",
        ),
        (
            "empty scope",
            |pr| pr.spec.scope = Scope::default(),
            "scope needs exactly one of: a non-empty namespaces list, or clusterWide: true",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, breaks, message)) in cases.into_iter().enumerate() {
        let mut pr = fixtures::pod_reader(&env, &format!("bad-{i}"), &[ns]);
        breaks(&mut pr);
        if let Err(f) = assert_refused(
            what,
            roles.create(&PostParams::default(), &pr).await,
            message,
        ) {
            failures.push(f);
        }
    }
    // Positive control, same shape as the cases.
    let ok = fixtures::pod_reader(&env, "good", &[ns]);
    if let Err(e) = roles.create(&PostParams::default(), &ok).await {
        failures.push(format!("positive control refused: {e}"));
    }
    report(failures);
}

#[tokio::test]
async fn eligibility_cel_rules_are_enforced() {
    let Some(env) = Env::shared("crd-elig").await else {
        return;
    };
    let api: Api<Eligibility> = Api::all(env.admin());
    let pp = PostParams::default();
    let mut failures = Vec::new();

    let mut el =
        fixtures::eligibility(&env, "window", "some-role", vec![SubjectRef::user("alice")]);
    el.spec.not_before = Some(time("2030-01-01T00:00:00Z"));
    el.spec.not_after = Some(time("2029-01-01T00:00:00Z"));
    failures.extend(
        assert_refused(
            "notAfter before notBefore",
            api.create(&pp, &el).await,
            "notAfter must be later than notBefore",
        )
        .err(),
    );
    el.spec.not_after = el.spec.not_before.clone();
    failures.extend(
        assert_refused(
            "notAfter equal to notBefore",
            api.create(&pp, &el).await,
            "notAfter must be later than notBefore",
        )
        .err(),
    );

    let sa_message =
        "namespace is required for a ServiceAccount and not allowed for a User or Group";
    let mut no_ns = SubjectRef::service_account("x", "robot");
    no_ns.namespace = None;
    let el = fixtures::eligibility(&env, "sa", "some-role", vec![no_ns]);
    failures.extend(
        assert_refused(
            "ServiceAccount without namespace",
            api.create(&pp, &el).await,
            sa_message,
        )
        .err(),
    );
    let mut user_ns = SubjectRef::user("alice");
    user_ns.namespace = Some("payments".into());
    let el = fixtures::eligibility(&env, "user-ns", "some-role", vec![user_ns]);
    failures.extend(
        assert_refused(
            "User with namespace",
            api.create(&pp, &el).await,
            sa_message,
        )
        .err(),
    );

    let mut good =
        fixtures::eligibility(&env, "good", "some-role", vec![SubjectRef::user("alice")]);
    good.spec.not_before = Some(time("2029-01-01T00:00:00Z"));
    good.spec.not_after = Some(time("2030-01-01T00:00:00Z"));
    if let Err(e) = api.create(&pp, &good).await {
        failures.push(format!("positive control refused: {e}"));
    }
    report(failures);
}

#[tokio::test]
async fn schema_bounds_are_enforced() {
    let Some(env) = Env::shared("crd-schema").await else {
        return;
    };
    let pp = PostParams::default();
    let mut failures = Vec::new();
    // Raw JSON: the typed structs cannot carry an invalid duration.
    let roles: Api<PrivilegedRole> = Api::all(env.admin());
    let mut pr =
        serde_json::to_value(fixtures::pod_reader(&env, "bad-duration", &["payments"])).unwrap();
    pr["spec"]["maxDuration"] = json!("5 minutes");
    let result = env
        .admin()
        .request::<Value>(
            http::Request::post("/apis/kubepim.io/v1alpha1/privilegedroles")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&pr).unwrap())
                .unwrap(),
        )
        .await;
    failures.extend(assert_refused("maxDuration not a duration", result, "spec.maxDuration").err());

    let mut pr = fixtures::pod_reader(&env, "too-many", &["payments"]);
    pr.spec.approval.required_approvals = 11;
    pr.spec.approval.approvers.groups = vec!["sre-leads".into()];
    failures.extend(
        assert_refused(
            "requiredApprovals above 10",
            roles.create(&pp, &pr).await,
            "spec.approval.requiredApprovals",
        )
        .err(),
    );

    let pr = fixtures::pod_reader(&env, "bad-ns", &["Not_A_Namespace"]);
    failures.extend(
        assert_refused(
            "invalid namespace name",
            roles.create(&pp, &pr).await,
            "spec.scope.namespaces[0]",
        )
        .err(),
    );
    report(failures);
}

/// Creates a request as alice (no operator runs, so it stays without status).
async fn alice_request(env: &Env, base: &str, with: impl FnOnce(&mut ActivationRequest)) -> String {
    let mut ar = fixtures::request(env, base, "alice", "some-role", &["payments"], "30m");
    ar.spec.ticket = Some("INC-1".into());
    with(&mut ar);
    let api: Api<ActivationRequest> = Api::all(env.client("alice"));
    api.create(&PostParams::default(), &ar)
        .await
        .expect("create request")
        .metadata
        .name
        .unwrap()
}

async fn merge_spec(env: &Env, name: &str, spec: Value) -> Result<ActivationRequest, kube::Error> {
    Api::<ActivationRequest>::all(env.client("alice"))
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
}

#[tokio::test]
async fn activation_request_spec_is_immutable() {
    let Some(env) = Env::shared("crd-immutable").await else {
        return;
    };
    let name = alice_request(&env, "imm", |ar| {
        ar.spec.start_at = Some(time("2030-01-01T00:00:00Z"))
    })
    .await;
    let root = "spec is immutable after creation; only cancel may change (false to true)";
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "change role",
            json!({"role": "other-role"}),
            "spec.role is immutable",
        ),
        (
            "change duration",
            json!({"duration": "4h"}),
            "spec.duration is immutable",
        ),
        (
            "change namespaces",
            json!({"namespaces": ["billing"]}),
            "spec.namespaces is immutable",
        ),
        (
            "change justification",
            json!({"justification": "changed my mind"}),
            "spec.justification is immutable",
        ),
        (
            "change ticket",
            json!({"ticket": "INC-2"}),
            "spec.ticket is immutable",
        ),
        (
            "change startAt",
            json!({"startAt": "2031-01-01T00:00:00Z"}),
            "spec.startAt is immutable",
        ),
        (
            "change requester",
            json!({"requester": {"username": "mallory"}}),
            "spec.requester is immutable",
        ),
        ("remove justification", json!({"justification": null}), root),
        ("remove duration", json!({"duration": null}), root),
        ("remove requester", json!({"requester": null}), root),
        ("remove startAt", json!({"startAt": null}), root),
    ];
    let mut failures = Vec::new();
    for (what, spec, message) in cases {
        failures.extend(assert_refused(what, merge_spec(&env, &name, spec).await, message).err());
    }
    // Adding what was absent at creation.
    let bare = alice_request(&env, "bare", |ar| {
        ar.spec.ticket = None;
        ar.spec.requester = None;
    })
    .await;
    failures.extend(
        assert_refused(
            "add ticket",
            merge_spec(&env, &bare, json!({"ticket": "INC-3"})).await,
            root,
        )
        .err(),
    );
    failures.extend(
        assert_refused(
            "add requester",
            merge_spec(&env, &bare, json!({"requester": {"username": "alice"}})).await,
            root,
        )
        .err(),
    );
    // Positive control: a metadata change is not a spec change.
    let labelled = Api::<ActivationRequest>::all(env.client("alice"))
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "payments"}}})),
        )
        .await;
    if let Err(e) = labelled {
        failures.push(format!("positive control (label change) refused: {e}"));
    }
    report(failures);
}

#[tokio::test]
async fn cancel_is_one_way() {
    let Some(env) = Env::shared("crd-cancel").await else {
        return;
    };
    let name = alice_request(&env, "cancel", |_| {}).await;
    let mut failures = Vec::new();
    match merge_spec(&env, &name, json!({"cancel": true})).await {
        Ok(ar) if ar.spec.cancel => {}
        Ok(_) => failures.push("cancel false→true accepted but not stored".into()),
        Err(e) => failures.push(format!("cancel false→true refused: {e}")),
    }
    failures.extend(
        assert_refused(
            "cancel true→false",
            merge_spec(&env, &name, json!({"cancel": false})).await,
            "spec.cancel cannot be undone",
        )
        .err(),
    );
    failures.extend(
        assert_refused(
            "cancel removed",
            merge_spec(&env, &name, json!({"cancel": null})).await,
            "spec.cancel cannot be undone",
        )
        .err(),
    );
    // Setting it again is a no-op, not an error.
    if let Err(e) = merge_spec(&env, &name, json!({"cancel": true})).await {
        failures.push(format!("cancel true→true refused: {e}"));
    }
    report(failures);
}

/// `kubectl get` columns come from the CRDs' additionalPrinterColumns.
#[tokio::test]
async fn printer_columns_are_served() {
    let Some(env) = Env::shared("crd-columns").await else {
        return;
    };
    let expected: [(&str, &[&str]); 3] = [
        (
            "privilegedroles",
            &[
                "Name",
                "Role",
                "Approvals",
                "Max",
                "Active",
                "Ready",
                "Reason",
                "Age",
            ],
        ),
        (
            "eligibilities",
            &[
                "Name",
                "Role",
                "Subjects",
                "Not After",
                "Active",
                "Reason",
                "Age",
            ],
        ),
        (
            "activationrequests",
            &[
                "Name",
                "Requester",
                "Role",
                "Phase",
                "Expires",
                "Reason",
                "Message",
                "Age",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (plural, columns) in expected {
        let req = http::Request::get(format!("/apis/kubepim.io/v1alpha1/{plural}"))
            .header(
                http::header::ACCEPT,
                "application/json;as=Table;v=v1;g=meta.k8s.io",
            )
            .body(Vec::new())
            .unwrap();
        let table: Value = env.admin().request(req).await.expect("table");
        let got: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .expect("columnDefinitions")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        // In this order, Name first and Age last; columns added later in between are fine.
        let mut rest = got.iter();
        let in_order = columns.iter().all(|c| rest.any(|g| g == c));
        if !in_order || got.first() != Some(&"Name") || got.last() != Some(&"Age") {
            failures.push(format!(
                "{plural}: columns {got:?}, expected {columns:?} in this order"
            ));
        }
    }
    report(failures);
}
