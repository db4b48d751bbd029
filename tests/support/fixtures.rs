//! Objects the tests create, and the actions of people (request, approve, cancel) as they would do
//! them with kubectl.
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::Duration as KubeDuration;
use kube::{Client, Resource};
use kubepim::api::labels::MANAGED_SELECTOR;
use kubepim::api::{
    ActivationRequest, ActivationRequestSpec, ApprovalPolicy, Approvers, Decision, Eligibility,
    EligibilitySpec, PrivilegedRole, PrivilegedRoleSpec, RoleKind, RoleRef, Scope, SubjectRef,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Env;
use super::envtest::{NAMESPACE_READER, POD_READER, SECRET_READER};

/// The RBAC subject of the user `name`.
pub fn user_subject(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

pub fn dur(s: &str) -> KubeDuration {
    s.parse().unwrap_or_else(|e| panic!("duration {s:?}: {e}"))
}

/// A PrivilegedRole granting the pod-reader ClusterRole in `namespaces`, without approval,
/// 10m by default and 1h at most. Tests adjust the fields they care about.
pub fn pod_reader(env: &Env, base: &str, namespaces: &[&str]) -> PrivilegedRole {
    let mut pr = PrivilegedRole::new(
        &env.name(base),
        PrivilegedRoleSpec {
            description: Some("read pods, for e2e tests".into()),
            role_ref: RoleRef {
                kind: RoleKind::ClusterRole,
                name: POD_READER.into(),
                namespace: None,
            },
            scope: Scope {
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                cluster_wide: false,
            },
            default_duration: dur("10m"),
            max_duration: dur("1h"),
            max_continuous_duration: None,
            approval: ApprovalPolicy {
                required_approvals: 0,
                extension_required_approvals: None,
                approvers: Approvers::default(),
                pending_timeout: dur("1h"),
            },
            require_justification: true,
            ticket_pattern: None,
            break_glass: false,
            require_requester_attributes: None,
            budget: None,
            idle_timeout: None,
            on_footholds: Default::default(),
        },
    );
    pr.metadata.labels = Some(env.labels());
    pr
}

/// A cluster-wide PrivilegedRole granting the namespace-reader ClusterRole.
pub fn namespace_reader(env: &Env, base: &str) -> PrivilegedRole {
    let mut pr = pod_reader(env, base, &[]);
    pr.spec.role_ref.name = NAMESPACE_READER.into();
    pr.spec.scope = Scope {
        namespaces: vec![],
        cluster_wide: true,
    };
    pr
}

/// A PrivilegedRole granting the namespaced Role `SECRET_READER` of `namespace`.
pub fn secret_reader(env: &Env, base: &str, namespace: &str) -> PrivilegedRole {
    let mut pr = pod_reader(env, base, &[namespace]);
    pr.spec.role_ref = RoleRef {
        kind: RoleKind::Role,
        name: SECRET_READER.into(),
        namespace: Some(namespace.into()),
    };
    pr
}

/// Requires `n` approvals from these users and groups.
pub fn with_approvers(
    mut pr: PrivilegedRole,
    n: u32,
    users: &[&str],
    groups: &[&str],
) -> PrivilegedRole {
    pr.spec.approval.required_approvals = n;
    pr.spec.approval.approvers = Approvers {
        users: users.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    };
    pr
}

/// The Role `SECRET_READER` in `namespace` (get/list secrets).
pub async fn secret_reader_role(env: &Env, namespace: &str) -> Role {
    let role = Role {
        metadata: kube::api::ObjectMeta {
            name: Some(SECRET_READER.into()),
            namespace: Some(namespace.into()),
            labels: Some(env.labels()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    create(&Api::namespaced(env.admin(), namespace), &role).await
}

/// Makes `subjects` eligible for `role`.
pub fn eligibility(env: &Env, base: &str, role: &str, subjects: Vec<SubjectRef>) -> Eligibility {
    let mut el = Eligibility::new(
        &env.name(base),
        EligibilitySpec {
            role: role.into(),
            subjects,
            namespaces: vec![],
            max_duration: None,
            not_before: None,
            not_after: None,
            budget: None,
        },
    );
    el.metadata.labels = Some(env.labels());
    el
}

/// A request by `user` (requester stamped as admission would), with a justification.
pub fn request(
    env: &Env,
    base: &str,
    user: &str,
    role: &str,
    namespaces: &[&str],
    duration: &str,
) -> ActivationRequest {
    let mut ar = ActivationRequest::new(
        &env.name(base),
        ActivationRequestSpec {
            role: role.into(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            duration: Some(dur(duration)),
            justification: Some("end-to-end test".into()),
            ticket: None,
            start_at: None,
            cancel: false,
            extends: None,
            requester: Some(env.requester(user)),
        },
    );
    ar.metadata.labels = Some(env.labels());
    ar
}

pub async fn create<K>(api: &Api<K>, obj: &K) -> K
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj)
        .await
        .unwrap_or_else(|e| panic!("creating {:?}: {e}", obj.meta().name))
}

/// Creates the PrivilegedRole as admin (the GitOps identity).
pub async fn create_role(env: &Env, pr: &PrivilegedRole) -> PrivilegedRole {
    create(&Api::all(env.admin()), pr).await
}

/// Creates the Eligibility as admin.
pub async fn create_eligibility(env: &Env, el: &Eligibility) -> Eligibility {
    create(&Api::all(env.admin()), el).await
}

/// Creates the request with the requester's own client.
pub async fn submit(env: &Env, user: &str, ar: &ActivationRequest) -> ActivationRequest {
    create(&Api::all(env.client(user)), ar).await
}

/// An approval entry as the (later) admission step would leave it: approver and groups are the
/// caller's own.
pub fn approval_entry(user: &str, decision: Decision, reason: &str) -> Value {
    json!({
        "approver": user,
        "groups": super::envtest::groups_of(user),
        "decision": decision,
        "reason": reason,
    })
}

/// Sends a JSON patch to `activationrequests/<name>/status` as `user`, like
/// `kubectl patch activationrequest <name> --subresource=status --type=json -p '<patch>'`.
pub async fn json_patch_status(
    env: &Env,
    user: &str,
    name: &str,
    patch: &Value,
) -> Result<ActivationRequest, kube::Error> {
    json_patch(
        &env.client(user),
        &format!("/apis/kubepim.io/v1alpha1/activationrequests/{name}/status"),
        patch,
    )
    .await
}

pub async fn json_patch(
    client: &Client,
    path: &str,
    patch: &Value,
) -> Result<ActivationRequest, kube::Error> {
    let req = http::Request::patch(path)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(patch).expect("json"))
        .expect("request");
    client.request::<ActivationRequest>(req).await
}

/// `user` records a decision on request `name` by appending to `status.approvals`.
///
/// What the API server does with JSON patches on `/status` (observed on v1.32):
/// - `add /status/approvals/-` appends atomically when the list exists; no read needed.
/// - When `status.approvals` is absent (the operator omits an empty list) the path does not
///   exist: 422 Invalid. When `status` itself is absent, `add /status/approvals` is 422 too.
/// - `add /status/approvals` (or `add /status`) creates the list, but on an existing list it
///   *replaces* it, dropping earlier approvals. So that first write is guarded by a `test` of
///   `metadata.resourceVersion` (a failed test is 422 Invalid) and retried from a fresh read.
pub async fn decide(
    env: &Env,
    user: &str,
    name: &str,
    decision: Decision,
    reason: &str,
) -> Result<ActivationRequest, kube::Error> {
    let entry = approval_entry(user, decision, reason);
    let api: Api<ActivationRequest> = Api::all(env.client(user));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ar = api.get(name).await?;
        let rv = ar.metadata.resource_version.clone().unwrap_or_default();
        let has_approvals = ar.status.as_ref().is_some_and(|s| !s.approvals.is_empty());
        if has_approvals {
            let append = json!([{ "op": "add", "path": "/status/approvals/-", "value": entry }]);
            return json_patch_status(env, user, name, &append).await;
        }
        let create = if ar.status.is_some() {
            json!([
                { "op": "test", "path": "/metadata/resourceVersion", "value": rv },
                { "op": "add", "path": "/status/approvals", "value": [entry] },
            ])
        } else {
            json!([
                { "op": "test", "path": "/metadata/resourceVersion", "value": rv },
                { "op": "add", "path": "/status", "value": { "approvals": [entry] } },
            ])
        };
        match json_patch_status(env, user, name, &create).await {
            // The resourceVersion test failed: someone wrote in between. Read again.
            Err(kube::Error::Api(e)) if e.code == 422 && attempt < 10 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

pub async fn approve(env: &Env, user: &str, name: &str) -> ActivationRequest {
    decide(env, user, name, Decision::Approved, "ok")
        .await
        .unwrap_or_else(|e| panic!("{user} approving {name}: {e}"))
}

pub async fn deny(env: &Env, user: &str, name: &str) -> ActivationRequest {
    decide(env, user, name, Decision::Denied, "not now")
        .await
        .unwrap_or_else(|e| panic!("{user} denying {name}: {e}"))
}

/// The requester sets `spec.cancel: true`.
pub async fn cancel(env: &Env, user: &str, name: &str) -> ActivationRequest {
    Api::<ActivationRequest>::all(env.client(user))
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{user} cancelling {name}: {e}"))
}

/// Managed RoleBindings of a request (all namespaces).
pub async fn role_bindings_of(env: &Env, request: &str) -> Vec<RoleBinding> {
    let lp =
        ListParams::default().labels(&format!("{MANAGED_SELECTOR},kubepim.io/request={request}"));
    Api::<RoleBinding>::all(env.admin())
        .list(&lp)
        .await
        .expect("list rolebindings")
        .items
}

/// Managed ClusterRoleBindings of a request.
pub async fn cluster_role_bindings_of(env: &Env, request: &str) -> Vec<ClusterRoleBinding> {
    let lp =
        ListParams::default().labels(&format!("{MANAGED_SELECTOR},kubepim.io/request={request}"));
    Api::<ClusterRoleBinding>::all(env.admin())
        .list(&lp)
        .await
        .expect("list clusterrolebindings")
        .items
}

/// Does the API server authorise `user` (with their groups) to `verb` `resource` (core group)?
pub async fn can(
    env: &Env,
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    can_with(&env.admin(), user, verb, resource, namespace).await
}

/// [`can`], asked through `admin` (a client that may create SubjectAccessReviews), for use
/// from a task that does not hold the `Env`.
pub async fn can_with(
    admin: &Client,
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(super::envtest::groups_of(user)),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                group: Some("".into()),
                namespace: namespace.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &sar)
        .await
        .expect("SubjectAccessReview");
    created.status.is_some_and(|s| s.allowed)
}
