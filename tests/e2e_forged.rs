//! End-to-end: a binding that carries kubepim's label is not kubepim's (security contract I6).
//!
//! The attack reported against 426d566, reproduced as described: during a short grant of a
//! namespace-admin role, the requester creates a RoleBinding named `kubepim-<other request>-x`
//! to the same role for herself, labelled `app.kubernetes.io/managed-by=kubepim` and annotated
//! with her own *Pending* request, its uid and `expires-at=2099-01-01T00:00:00Z`. On 426d566 the
//! sweeper trusted that annotation and accepted the Pending request, so the binding outlived the
//! grant. Now it is deleted as soon as the watch delivers it, with a Warning Event, and her
//! access ends with the grant. Forged bindings of the other shapes (right name in a namespace
//! never granted, a request that does not exist, a second subject, a ClusterRoleBinding) go too,
//! while the genuine grant stays; I1 is checked after every step.
//!
//! This harness installs no admission policies, so the forgeries reach the API server: the
//! operator side is tested alone (the chart's policies refuse them earlier, see e2e_selfprotect).
//!
//! Run: `KUBEBUILDER_ASSETS=/opt/kubebuilder-assets cargo test --test e2e_forged`.
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};
use kubepim::api::{Phase, SubjectRef, labels};
use kubepim::policy::lifecycle::binding_name;
use kubepim::policy::reasons;
use kubepim::runtime::OperatorSettings;
use support::Env;
use support::envtest::NAMESPACE_ADMIN;
use support::fixtures::{
    self, create_eligibility, create_role, eligibility, pod_reader, user_subject as user,
};
use support::invariants::assert_i1;
use support::wait::{self, until};

const RBAC: &str = "rbac.authorization.k8s.io";
/// "At once": the guard acts on the watch event; this leaves room for a loaded machine.
const REMOVAL_LIMIT: Duration = Duration::from_secs(5);

/// The label and annotations kubepim puts on its bindings, copied by someone else.
fn forged_meta(name: &str, namespace: Option<&str>, request: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(BTreeMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::REQUEST.to_string(), request.to_string()),
        ])),
        annotations: Some(BTreeMap::from([
            (labels::REQUEST.to_string(), request.to_string()),
            (labels::REQUEST_UID.to_string(), uid.to_string()),
            (
                labels::EXPIRES_AT.to_string(),
                "2099-01-01T00:00:00Z".to_string(),
            ),
        ])),
        ..Default::default()
    }
}

fn forged_rb(
    name: &str,
    namespace: &str,
    request: &str,
    uid: &str,
    subjects: Vec<Subject>,
) -> RoleBinding {
    RoleBinding {
        metadata: forged_meta(name, Some(namespace), request, uid),
        role_ref: RoleRef {
            api_group: RBAC.into(),
            kind: "ClusterRole".into(),
            name: NAMESPACE_ADMIN.into(),
        },
        subjects: Some(subjects),
    }
}

async fn gone<K>(env: &Env, api: Api<K>, name: &str, what: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    until(env, what, REMOVAL_LIMIT, || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still there".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Warning Events about the binding `name` with the removal reason.
async fn removal_events(env: &Env, name: &str) -> Vec<Event> {
    Api::<Event>::all(env.admin())
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reasons::ILLEGITIMATE_BINDING_REMOVED)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

#[tokio::test]
async fn a_binding_labelled_as_kubepims_does_not_outlive_the_grant() {
    let Some(env) = Env::isolated("forged").await else {
        return;
    };
    env.start_operator(OperatorSettings {
        concurrency: 4,
        ..OperatorSettings::default()
    });
    let payments = env.namespace("payments").await;

    // A namespace-admin role in payments, auto-approved, and a second role that needs bob.
    let mut admin_role = pod_reader(&env, "ns-admin", &[&payments]);
    admin_role.spec.role_ref.name = NAMESPACE_ADMIN.into();
    let admin_role = create_role(&env, &admin_role).await;
    let gated = fixtures::with_approvers(pod_reader(&env, "gated", &[&payments]), 1, &["bob"], &[]);
    let gated = create_role(&env, &gated).await;
    for role in [&admin_role, &gated] {
        create_eligibility(
            &env,
            &eligibility(
                &env,
                &format!("alice-{}", role.name_any()),
                &role.name_any(),
                vec![SubjectRef::user("alice")],
            ),
        )
        .await;
    }

    // Her grant: 20 s of namespace admin.
    let grant = fixtures::submit(
        &env,
        "alice",
        &fixtures::request(
            &env,
            "grant",
            "alice",
            &admin_role.name_any(),
            &[&payments],
            "20s",
        ),
    )
    .await;
    let grant = wait::phase(&env, &grant.name_any(), Phase::Active).await;
    assert_i1(&env).await;
    assert!(fixtures::can(&env, "alice", "delete", "pods", Some(&payments)).await);

    // Her own Pending request, which the forgery points at.
    let pending = fixtures::submit(
        &env,
        "alice",
        &fixtures::request(
            &env,
            "pending",
            "alice",
            &gated.name_any(),
            &[&payments],
            "10m",
        ),
    )
    .await;
    let pending = wait::phase(&env, &pending.name_any(), Phase::Pending).await;

    // The forgery, made by alice herself with the rights of her grant.
    let forged_name = format!("{}-x", binding_name(&env.name("other")));
    let alice_rbs: Api<RoleBinding> = Api::namespaced(env.client("alice"), &payments);
    alice_rbs
        .create(
            &PostParams::default(),
            &forged_rb(
                &forged_name,
                &payments,
                &pending.name_any(),
                &pending.uid().unwrap_or_default(),
                vec![user("alice")],
            ),
        )
        .await
        .expect("alice may create the binding (no admission policy in this harness)");
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin(), &payments);
    gone(
        &env,
        rbs.clone(),
        &forged_name,
        "the forged binding deleted",
    )
    .await;
    assert_i1(&env).await;
    let events = until(&env, "the Warning Event", REMOVAL_LIMIT, || async {
        let events = removal_events(&env, &forged_name).await;
        if events.is_empty() {
            Err("no IllegitimateBindingRemoved Event yet".to_string())
        } else {
            Ok(events)
        }
    })
    .await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    let note = events[0].note.clone().unwrap_or_default();
    assert!(note.contains(&pending.name_any()), "{note}");
    assert!(
        note.contains("not Active") || note.contains("not one of"),
        "{note}"
    );

    // Forgeries of the other shapes, made with the admin's rights.
    let grant_name = grant.name_any();
    let grant_uid = grant.uid().unwrap_or_default();
    let elsewhere = env.namespace("elsewhere").await;
    let shapes: Vec<(&str, RoleBinding)> = vec![
        (
            "the grant's own name, in a namespace it never granted",
            forged_rb(
                &binding_name(&grant_name),
                &elsewhere,
                &grant_name,
                &grant_uid,
                vec![user("alice")],
            ),
        ),
        (
            "pointing at a request that does not exist",
            forged_rb(
                "kubepim-nobody",
                &payments,
                &env.name("nobody"),
                "uid-nobody",
                vec![user("mallory")],
            ),
        ),
        (
            "the grant's annotations on another name, with a second subject",
            forged_rb(
                "kubepim-two",
                &payments,
                &grant_name,
                &grant_uid,
                vec![user("alice"), user("mallory")],
            ),
        ),
    ];
    for (what, rb) in shapes {
        let namespace = rb.namespace().unwrap_or_default();
        let api: Api<RoleBinding> = Api::namespaced(env.admin(), &namespace);
        api.create(&PostParams::default(), &rb)
            .await
            .unwrap_or_else(|e| panic!("create forged binding ({what}): {e}"));
        gone(&env, api, &rb.name_any(), what).await;
    }
    let crbs: Api<ClusterRoleBinding> = Api::all(env.admin());
    let crb_name = binding_name(&grant_name);
    crbs.create(
        &PostParams::default(),
        &ClusterRoleBinding {
            metadata: forged_meta(&crb_name, None, &grant_name, &grant_uid),
            role_ref: RoleRef {
                api_group: RBAC.into(),
                kind: "ClusterRole".into(),
                name: NAMESPACE_ADMIN.into(),
            },
            subjects: Some(vec![user("alice")]),
        },
    )
    .await
    .expect("create a forged ClusterRoleBinding");
    gone(
        &env,
        crbs,
        &crb_name,
        "the forged ClusterRoleBinding (a namespaced grant)",
    )
    .await;
    assert_i1(&env).await;

    // The genuine grant was never touched.
    assert_eq!(
        fixtures::role_bindings_of(&env, &grant_name).await.len(),
        1,
        "the grant's own binding stays"
    );

    // And when the grant ends, so does every bit of her access.
    wait::phase(&env, &grant_name, Phase::Expired).await;
    until(
        &env,
        "alice's access gone after expiry",
        Duration::from_secs(5),
        || async {
            if fixtures::can(&env, "alice", "delete", "pods", Some(&payments)).await {
                Err("alice can still delete pods".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
    let left: Vec<String> = rbs
        .list(&ListParams::default())
        .await
        .expect("list bindings")
        .items
        .iter()
        .filter(|b| b.role_ref.name == NAMESPACE_ADMIN)
        .map(|b| b.name_any())
        .collect();
    assert!(
        left.is_empty(),
        "bindings to the role left behind: {left:?}"
    );
    assert_i1(&env).await;
}
