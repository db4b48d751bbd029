//! End-to-end: what a grant left behind (footholds), found by the scan at the grant's end, on a
//! real API server. During alice's grant, bindings that keep giving access are made in the
//! granted namespace (by the test's admin: without the audit record the scan cannot tell who made
//! an object, only that it was made in the grant's scope while the grant ran). With
//! `onFootholds: Remove`, the foothold remover (its identity, RBAC and admission policy as the chart
//! renders them) deletes the bindings and the token Secret, and nothing else.
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_footholds`
#[allow(dead_code)]
#[path = "support/security.rs"]
mod security;
mod support;

use k8s_openapi::api::core::v1::{Event, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kubepim::api::conditions::FOOTHOLDS_FOUND;
use kubepim::api::{ActivationRequest, FootholdAction, Phase, SubjectRef};
use kubepim::policy::reasons;
use kubepim::runtime::OperatorSettings;
use support::Env;
use support::envtest::POD_READER;
use support::fixtures::{self, submit};
use support::wait::{self, describe};

fn binding(name: &str, ns: &str, subject: Subject) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: POD_READER.into(),
        },
        subjects: Some(vec![subject]),
    }
}

/// A binding to alice made before her grant of `role` in `ns`; during it, a binding to alice
/// herself, a ServiceAccount and a binding to it (made by the test's admin: without the audit
/// record the scan cannot tell who made them). The grant lasts 6 s; its name.
async fn grant_that_leaves_footholds(env: &Env, role: &str, ns: &str) -> String {
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin(), ns);
    // Made before the grant: never a foothold.
    rbs.create(
        &PostParams::default(),
        &binding("before", ns, fixtures::user_subject("alice")),
    )
    .await
    .expect("a binding from before");
    // Creation times are whole seconds and the window has a second of slack either side.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;

    let req = fixtures::request(env, "grant", "alice", role, &[ns], "6s");
    let name = submit(env, "alice", &req).await.name_any();
    wait::phase(env, &name, Phase::Active).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    rbs.create(
        &PostParams::default(),
        &binding("edit-for-alice", ns, fixtures::user_subject("alice")),
    )
    .await
    .expect("a binding to alice");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("backdoor".into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(env.admin(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("a ServiceAccount");
    rbs.create(
        &PostParams::default(),
        &binding(
            "backdoor-reader",
            ns,
            service_account_subject("backdoor", ns),
        ),
    )
    .await
    .expect("a binding to the ServiceAccount");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_leaves_bindings_behind_says_so_at_its_end() {
    let Some(env) = Env::isolated("footholds").await else {
        return;
    };
    let ns = env.namespace("apps").await;
    env.start_operator(OperatorSettings {
        concurrency: 4,
        ..OperatorSettings::default()
    });
    let pr = fixtures::pod_reader(&env, "pods", &[&ns]);
    let role = fixtures::create_role(&env, &pr).await.name_any();
    let el = fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin(), &ns);
    let name = grant_that_leaves_footholds(&env, &role, &ns).await;

    // The grant ends first (bindings gone, phase written with the review pending); the review
    // of what it left behind follows.
    let ended = wait::phase(&env, &name, Phase::Expired).await;
    let requests: Api<ActivationRequest> = Api::all(env.admin());
    let reviewed = wait::until(&env, "the foothold review", wait::TIMEOUT, || async {
        let request = requests.get(&name).await.map_err(|e| e.to_string())?;
        let condition = request
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == FOOTHOLDS_FOUND))
            .cloned()
            .ok_or_else(|| format!("no {FOOTHOLDS_FOUND} condition: {}", describe(&ended)))?;
        if condition.reason == reasons::FOOTHOLD_REVIEW_PENDING {
            return Err("review pending".to_string());
        }
        Ok(condition)
    })
    .await;
    let found = &reviewed;
    assert_eq!(found.status, "True", "{found:?}");
    assert_eq!(found.reason, reasons::FOOTHOLDS_FOUND);
    for expected in [
        format!("RoleBinding {ns}/edit-for-alice (binds the requester)"),
        format!(
            "RoleBinding {ns}/backdoor-reader (binds a ServiceAccount created during the grant)"
        ),
        format!("ServiceAccount {ns}/backdoor"),
    ] {
        assert!(
            found.message.contains(&expected),
            "{expected} not in {}",
            found.message
        );
    }
    assert!(!found.message.contains("before"), "{}", found.message);

    // A Warning Event on the request says it too.
    let events: Api<Event> = Api::all(env.admin());
    let said = wait::until(&env, "a FootholdsFound Event", wait::TIMEOUT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reasons::FOOTHOLDS_FOUND)
                    && e.involved_object.name.as_deref() == Some(name.as_str())
            })
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(said.type_.as_deref(), Some("Warning"));

    // The structured list `kubectl pim footholds` reads, and the removal with an admin's rights:
    // alice's own binding, the ServiceAccount and its binding go; the binding from before stays.
    let recorded = kubepim::ops::footholds::of(&env.admin(), &name)
        .await
        .expect("the recorded footholds");
    assert!(
        recorded
            .iter()
            .any(|f| f.kind == "RoleBinding" && f.name == "edit-for-alice" && f.uid.is_some()),
        "{recorded:#?}"
    );
    assert!(fixtures::can(&env, "alice", "list", "pods", Some(&ns)).await);
    let removed = kubepim::ops::footholds::remove(&env.admin(), &recorded).await;
    for (f, outcome) in &removed {
        assert_eq!(
            *outcome,
            kubepim::ops::footholds::Removal::Removed,
            "{f:?}: {outcome:?}"
        );
    }
    for gone in ["edit-for-alice", "backdoor-reader"] {
        assert!(
            rbs.get_opt(gone).await.expect("read").is_none(),
            "{gone} is still there"
        );
    }
    assert!(
        Api::<ServiceAccount>::namespaced(env.admin(), &ns)
            .get_opt("backdoor")
            .await
            .expect("read")
            .is_none()
    );
    assert!(rbs.get_opt("before").await.expect("read").is_some());
    // Only the binding from before still lets alice list pods: it is not the grant's to remove.
    rbs.delete("before", &Default::default())
        .await
        .expect("delete");
    wait::until(&env, "alice denied", wait::TIMEOUT, || async {
        if fixtures::can(&env, "alice", "list", "pods", Some(&ns)).await {
            Err("alice may still list pods".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    env.stop_operator().await;
}

fn service_account_subject(name: &str, ns: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(ns.into()),
        api_group: None,
    }
}

fn secret(name: &str, ns: &str, type_: &str, account: Option<&str>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            annotations: account.map(|a| {
                [(
                    "kubernetes.io/service-account.name".to_string(),
                    a.to_string(),
                )]
                .into()
            }),
            ..Default::default()
        },
        type_: Some(type_.into()),
        ..Default::default()
    }
}

/// The remover's identity as the chart makes it: its ServiceAccount, RBAC and admission policy
/// (the Deployment is left out: the remover runs in this process). Returns its client, once the
/// policy is in effect.
async fn install_remover(env: &Env) -> Option<kube::Client> {
    let docs = security::render(&serde_json::json!({}), &["foothold-remover.yaml"])
        .expect("rendering the chart")?;
    let remover =
        security::service_account_client(env, security::RELEASE_NAMESPACE, "kubepim-footholds")
            .await;
    let docs: Vec<_> = docs
        .into_iter()
        .filter(|d| d["kind"] != "Deployment" && d["kind"] != "ServiceAccount")
        .collect();
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "ValidatingAdmissionPolicy"),
        "the remover's policy is rendered"
    );
    security::apply(&env.admin(), &docs)
        .await
        .expect("applying the remover's RBAC and policy");
    Some(remover)
}

/// What the remover's admission policy refuses, although its RBAC allows it.
async fn the_removers_policy_holds(env: &Env, remover: &kube::Client, ns: &str) {
    let admin = env.admin();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    let as_remover: Api<Secret> = Api::namespaced(remover.clone(), ns);
    security::eventually(
        "the remover's policy refusing an ordinary Secret",
        std::time::Duration::from_secs(30),
        || async {
            // Made again while the policy is not yet in effect (RBAC alone lets the delete through).
            if secrets
                .get_opt("plain")
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                secrets
                    .create(&PostParams::default(), &secret("plain", ns, "Opaque", None))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            match as_remover.delete("plain", &Default::default()).await {
                Err(kube::Error::Api(e))
                    if e.code == 403 && e.message.contains("token Secrets only") =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("the remover's policy");
    // A binding in kube-system, and one with kubepim's managed label (the operator's business).
    let system: Api<RoleBinding> = Api::namespaced(admin.clone(), "kube-system");
    system
        .create(
            &PostParams::default(),
            &binding("probe", "kube-system", fixtures::user_subject("alice")),
        )
        .await
        .expect("a binding in kube-system");
    let refused = Api::<RoleBinding>::namespaced(remover.clone(), "kube-system")
        .delete("probe", &Default::default())
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("kube-system")),
        "{refused:?}"
    );
    // kubepim's own namespace, and a system object anywhere.
    let release: Api<RoleBinding> = Api::namespaced(admin.clone(), security::RELEASE_NAMESPACE);
    release
        .create(
            &PostParams::default(),
            &binding(
                "probe",
                security::RELEASE_NAMESPACE,
                fixtures::user_subject("alice"),
            ),
        )
        .await
        .expect("a binding in kubepim's namespace");
    let refused = Api::<RoleBinding>::namespaced(remover.clone(), security::RELEASE_NAMESPACE)
        .delete("probe", &Default::default())
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("kubepim's namespace")),
        "{refused:?}"
    );
    let local: Api<RoleBinding> = Api::namespaced(admin.clone(), ns);
    local
        .create(
            &PostParams::default(),
            &binding("system:probe", ns, fixtures::user_subject("alice")),
        )
        .await
        .expect("a system-named binding");
    let refused = Api::<RoleBinding>::namespaced(remover.clone(), ns)
        .delete("system:probe", &Default::default())
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("system object")),
        "{refused:?}"
    );
    let mut managed = binding("managed-probe", ns, fixtures::user_subject("alice"));
    managed.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "kubepim".to_string(),
        )]
        .into(),
    );
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &managed)
        .await
        .expect("a managed-labelled binding");
    let refused = Api::<RoleBinding>::namespaced(remover.clone(), ns)
        .delete("managed-probe", &Default::default())
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("kubepim manages")),
        "{refused:?}"
    );
    // It cannot make anything (RBAC has no create; the policy would refuse it too).
    let made = as_remover
        .create(&PostParams::default(), &secret("made", ns, "Opaque", None))
        .await;
    assert!(
        matches!(&made, Err(kube::Error::Api(e)) if e.code == 403),
        "{made:?}"
    );
    // The probes go before the operator starts, whose binding guard would remove the managed one.
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .delete("managed-probe", &Default::default())
        .await
        .expect("clean up");
    system
        .delete("probe", &Default::default())
        .await
        .expect("clean up");
    release
        .delete("probe", &Default::default())
        .await
        .expect("clean up");
    local
        .delete("system:probe", &Default::default())
        .await
        .expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_says_remove_has_its_footholds_deleted_by_the_remover() {
    let Some(env) = Env::isolated("footholds-remove").await else {
        return;
    };
    let Some(remover) = install_remover(&env).await else {
        eprintln!("skipped: the chart cannot be rendered here (no helm_python)");
        return;
    };
    let ns = env.namespace("apps").await;
    the_removers_policy_holds(&env, &remover, &ns).await;
    // As the chart's footholds.scanSecretsAndPods does: the scan may list Secrets (by type,
    // metadata only), so that token Secrets are found with their uid.
    security::apply(
        &env.admin(),
        &[
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "kubepim-e2e-scan-secrets"},
                "rules": [{"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["list"]}],
            }),
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "kubepim-e2e-scan-secrets"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "kubepim-e2e-scan-secrets"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "operator"}],
            }),
        ],
    )
    .await
    .expect("the scan's Secret rights");
    env.start_operator(OperatorSettings {
        concurrency: 4,
        ..OperatorSettings::default()
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let remover_task = tokio::spawn(kubepim::remover::run(
        remover.clone(),
        std::time::Duration::from_secs(3600),
        async {
            let _ = stop_rx.await;
        },
    ));

    let mut pr = fixtures::pod_reader(&env, "pods", &[&ns]);
    pr.spec.on_footholds = FootholdAction::Remove;
    let role = fixtures::create_role(&env, &pr).await.name_any();
    let el = fixtures::eligibility(&env, "alice", &role, vec![SubjectRef::user("alice")]);
    fixtures::create_eligibility(&env, &el).await;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin(), &ns);
    let name = grant_that_leaves_footholds(&env, &role, &ns).await;
    let secrets: Api<Secret> = Api::namespaced(env.admin(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "backdoor-token",
                &ns,
                "kubernetes.io/service-account-token",
                Some("backdoor"),
            ),
        )
        .await
        .expect("a token Secret");
    let backdoor = format!("system:serviceaccount:{ns}:backdoor");
    let backdoor_groups = security::service_account_groups(&ns);
    let pods = ("", "pods", None, Some(ns.as_str()));
    assert!(security::allowed(&env.admin(), &backdoor, &backdoor_groups, pods, "list").await);

    wait::phase(&env, &name, Phase::Expired).await;
    // The remover deletes the bindings and the token; the ServiceAccount is reported, not deleted.
    wait::until(&env, "the footholds removed", wait::TIMEOUT, || async {
        let mut left = Vec::new();
        for gone in ["edit-for-alice", "backdoor-reader"] {
            if rbs
                .get_opt(gone)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                left.push(gone);
            }
        }
        if secrets
            .get_opt("backdoor-token")
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            left.push("backdoor-token");
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still there: {left:?}"))
        }
    })
    .await;
    assert!(
        rbs.get_opt("before").await.expect("read").is_some(),
        "made before the grant: kept"
    );
    assert!(
        Api::<ServiceAccount>::namespaced(env.admin(), &ns)
            .get_opt("backdoor")
            .await
            .expect("read")
            .is_some(),
        "a ServiceAccount is reported, never deleted by the remover"
    );
    assert!(
        secrets.get_opt("plain").await.expect("read").is_some(),
        "the ordinary Secret is untouched"
    );
    // Each deletion is an Event on the request.
    let events: Api<Event> = Api::all(env.admin());
    let removed = wait::until(
        &env,
        "three FootholdRemoved Events",
        wait::TIMEOUT,
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let notes: Vec<String> = list
                .items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some(reasons::FOOTHOLD_REMOVED)
                        && e.involved_object.name.as_deref() == Some(name.as_str())
                })
                .filter_map(|e| e.message)
                .collect();
            if notes.len() >= 3 {
                Ok(notes)
            } else {
                Err(format!("{notes:?}"))
            }
        },
    )
    .await;
    for what in [
        format!("RoleBinding {ns}/edit-for-alice"),
        format!("RoleBinding {ns}/backdoor-reader"),
        format!("Secret {ns}/backdoor-token"),
    ] {
        assert!(
            removed.iter().any(|n| n.contains(&what)),
            "{what} not in {removed:?}"
        );
    }
    // Neither alice (but for the binding from before) nor the ServiceAccount's token may list
    // pods any more.
    rbs.delete("before", &Default::default())
        .await
        .expect("delete");
    wait::until(
        &env,
        "alice and the backdoor denied",
        wait::TIMEOUT,
        || async {
            let alice = fixtures::can(&env, "alice", "list", "pods", Some(&ns)).await;
            let token =
                security::allowed(&env.admin(), &backdoor, &backdoor_groups, pods, "list").await;
            if alice || token {
                Err(format!("alice may: {alice}, the backdoor may: {token}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    let _ = stop_tx.send(());
    remover_task.await.expect("the remover stops");
    env.stop_operator().await;
}
