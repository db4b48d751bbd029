//! End-to-end: what a grant left behind (footholds), found by the scan at the grant's end, on a
//! real API server. During alice's grant, bindings that keep giving access are made in the
//! granted namespace (by the test's admin: without the audit record the scan cannot tell who made
//! an object, only that it was made in the grant's scope while the grant ran).
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_footholds`
mod support;

use k8s_openapi::api::core::v1::{Event, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kubepim::api::conditions::FOOTHOLDS_FOUND;
use kubepim::api::{ActivationRequest, Phase, SubjectRef};
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
    // Made before the grant: never a foothold.
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin(), &ns);
    rbs.create(
        &PostParams::default(),
        &binding("before", &ns, fixtures::user_subject("alice")),
    )
    .await
    .expect("a binding from before");
    // Creation times are whole seconds and the window has a second of slack either side.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;

    let req = fixtures::request(&env, "grant", "alice", &role, &[&ns], "6s");
    let name = submit(&env, "alice", &req).await.name_any();
    wait::phase(&env, &name, Phase::Active).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // During the grant: a binding to alice herself, and a ServiceAccount bound to the role.
    rbs.create(
        &PostParams::default(),
        &binding("edit-for-alice", &ns, fixtures::user_subject("alice")),
    )
    .await
    .expect("a binding to alice");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("backdoor".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(env.admin(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("a ServiceAccount");
    rbs.create(
        &PostParams::default(),
        &binding(
            "backdoor-reader",
            &ns,
            Subject {
                kind: "ServiceAccount".into(),
                name: "backdoor".into(),
                namespace: Some(ns.clone()),
                api_group: None,
            },
        ),
    )
    .await
    .expect("a binding to the ServiceAccount");

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
