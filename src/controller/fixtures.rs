//! Test fixtures for the reconcilers (layer 2: a scripted API server).
//!
//! * Builders that make a test read like a sentence:
//!   `activation_request("r1").by(ALICE).approved_by(BOB)`,
//!   `privileged_role("db-admin").approvers(&[BOB], &[])`, `eligibility("alice-db", "db-admin").users(&[ALICE])`.
//!   They are extension traits, not inherent methods, so they never shadow a method of the types.
//!   Specs are built from JSON so that a new optional field does not break them.
//! * [`Caches`]: the operator's reflector stores, filled by hand.
//! * [`Scenario`]: an `ApiServerVerifier` behind a `tower_test` mock. It plays a script of
//!   expected calls; for each it checks method, path, content type and body, then answers as an API
//!   server would (patches are applied to the objects it holds, resourceVersion preconditions are
//!   enforced, JSON-patch `test` ops can fail). Any call not in the script fails the test; so does a
//!   scripted call that never comes. Events (published from spawned tasks) are answered and recorded
//!   apart from the script, since their timing is not the reconciler's.
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::client::Body;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{
    AccessReview, ActivationRequest, ActivationRequestStatus, Eligibility, FINALIZER, Phase,
    PrivilegedRole, labels,
};
use crate::policy::lifecycle::binding_name;
use crate::time::to_k8s;

use super::context::Context;
use crate::policy::tests::builders::{self, RequestExt, RequesterExt};
/// The policy tests' builder traits, for refining the objects below.
pub use crate::policy::tests::builders::{EligibilityExt, RoleExt};

pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
pub const CAROL: &str = "carol";
pub const NAMESPACE: &str = "payments";
pub const ROLE: &str = "db-admin";

/// How long a reconcile may take before the test gives up (virtual time under `start_paused`).
const ACT_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Time

/// The instant every reconciler test runs at: the context's clock stands still there, so what a
/// reconcile writes and when it asks to run again are compared exactly.
pub fn now() -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0)
        .single()
        .expect("a valid instant")
}

pub fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

// ---------------------------------------------------------------------------------------------
// PrivilegedRole

/// `name` grants the ClusterRole of the same name through RoleBindings in `payments`; one
/// approval by `bob`; 1h by default, 4h at most; 24h to approve; justification required. Built
/// with the policy tests' builders (one builder set); refine it with their [`RoleExt`].
pub fn privileged_role(name: &str) -> PrivilegedRole {
    let mut role = builders::role(name)
        .cluster_role(name)
        .namespaces(&[NAMESPACE])
        .approvers(&[BOB], &[])
        .required_approvals(1)
        .pending_timeout("24h");
    role.metadata.uid = Some(format!("uid-role-{name}"));
    role.metadata.resource_version = Some("10".into());
    role.metadata.generation = Some(1);
    role
}

// ---------------------------------------------------------------------------------------------
// Eligibility

/// An Eligibility for `role` that names nobody yet, without time limits; name people with
/// [`EligibilityExt::users`].
pub fn eligibility(name: &str, role: &str) -> Eligibility {
    let mut elig = builders::eligibility(name, role);
    elig.metadata.uid = Some(format!("uid-elig-{name}"));
    elig
}

// ---------------------------------------------------------------------------------------------
// ActivationRequest

/// Request `name` by `alice` for `db-admin` in `payments`, with a justification; created a minute
/// ago, resourceVersion 100, generation 1, no status, no finalizer.
pub fn activation_request(name: &str) -> ActivationRequest {
    let spec = builders::request(ROLE)
        .namespaces(&[NAMESPACE])
        .justification("INC-42: payments database is stuck")
        .by(&builders::user(ALICE).in_groups(&["system:authenticated"]));
    let mut request = ActivationRequest::new(name, spec);
    request.metadata.uid = Some(format!("uid-{name}"));
    request.metadata.resource_version = Some("100".into());
    request.metadata.generation = Some(1);
    request.metadata.creation_timestamp = Some(to_k8s(now() - secs(60)));
    request
}

pub trait RequestBuilder: Sized {
    fn with(self, f: impl FnOnce(&mut ActivationRequest)) -> Self;
    fn status_with(self, f: impl FnOnce(&mut ActivationRequestStatus)) -> Self {
        self.with(|r| f(r.status.get_or_insert_with(Default::default)))
    }

    /// As if created without kubepim's admission stamp.
    fn without_requester(self) -> Self {
        self.with(|r| r.spec.requester = None)
    }
    /// For a cluster-wide role: no namespaces.
    fn cluster_wide(self) -> Self {
        self.with(|r| r.spec.namespaces.clear())
    }
    fn created_at(self, at: DateTime<Utc>) -> Self {
        self.with(|r| r.metadata.creation_timestamp = Some(to_k8s(at)))
    }
    /// The requester set `spec.cancel`.
    fn cancelled(self) -> Self {
        self.with(|r| r.spec.cancel = true)
    }
    fn finalized(self) -> Self {
        self.with(|r| r.finalizers_mut().push(FINALIZER.into()))
    }
    fn being_deleted(self) -> Self {
        self.with(|r| r.metadata.deletion_timestamp = Some(to_k8s(now() - secs(1))))
    }

    fn resource_version(self, rv: &str) -> Self {
        self.with(|r| r.metadata.resource_version = Some(rv.into()))
    }

    fn approved_by(self, approver: &str) -> Self {
        self.decided(approver, &[], crate::api::Decision::Approved, None)
    }
    fn denied_by(self, approver: &str, reason: &str) -> Self {
        self.decided(approver, &[], crate::api::Decision::Denied, Some(reason))
    }
    fn decided(
        self,
        approver: &str,
        groups: &[&str],
        decision: crate::api::Decision,
        reason: Option<&str>,
    ) -> Self {
        let approval = crate::api::Approval {
            approver: approver.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            decision,
            reason: reason.map(Into::into),
            time: Some(to_k8s(now() - secs(5))),
        };
        self.status_with(|s| s.approvals.push(approval))
    }

    fn in_phase(self, phase: Phase) -> Self {
        self.status_with(|s| s.phase = Some(phase))
    }
    /// Active since an hour before `expires_at`, with its one RoleBinding recorded in status.
    fn active_until(self, expires_at: DateTime<Utc>) -> Self {
        self.with(|r| {
            let binding = crate::api::BindingRef {
                kind: "RoleBinding".into(),
                namespace: Some(NAMESPACE.into()),
                name: binding_name(&r.name_any()),
            };
            let s = r.status.get_or_insert_with(Default::default);
            s.phase = Some(Phase::Active);
            s.activated_at = Some(to_k8s(expires_at - secs(3600)));
            s.expires_at = Some(to_k8s(expires_at));
            s.bindings = vec![binding];
        })
    }
}

impl RequestBuilder for ActivationRequest {
    fn with(mut self, f: impl FnOnce(&mut ActivationRequest)) -> Self {
        f(&mut self);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Bindings

/// The RoleBinding in `payments` that kubepim makes for `request` (as it would have created it),
/// granting the ClusterRole `db-admin` to the requester until `expires_at`.
pub fn granted_role_binding(request: &ActivationRequest, expires_at: DateTime<Utc>) -> RoleBinding {
    let name = request.name_any();
    let requester = request
        .spec
        .requester
        .as_ref()
        .map(|r| r.username.clone())
        .unwrap_or_default();
    serde_json::from_value(json!({
        "metadata": {
            "name": binding_name(&name),
            "namespace": NAMESPACE,
            "uid": format!("uid-rb-{name}"),
            "resourceVersion": "50",
            "labels": {
                labels::MANAGED_BY: labels::MANAGED_BY_VALUE,
                labels::REQUEST: name,
                labels::ROLE: request.spec.role,
            },
            "annotations": {
                labels::EXPIRES_AT: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                labels::REQUEST_UID: request.uid().unwrap_or_default(),
                labels::REQUEST: name,
            },
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": requester}],
    }))
    .expect("a valid RoleBinding")
}

/// The same binding as a ClusterRoleBinding (for a cluster-wide grant).
pub fn granted_cluster_role_binding(
    request: &ActivationRequest,
    expires_at: DateTime<Utc>,
) -> ClusterRoleBinding {
    let rb = granted_role_binding(request, expires_at);
    let mut metadata = rb.metadata;
    metadata.namespace = None;
    metadata.uid = Some(format!("uid-crb-{}", request.name_any()));
    ClusterRoleBinding {
        metadata,
        role_ref: rb.role_ref,
        subjects: rb.subjects,
    }
}

// ---------------------------------------------------------------------------------------------
// Caches

/// The operator's reflector stores, filled by hand.
pub struct Caches {
    requests: (Store<ActivationRequest>, Writer<ActivationRequest>),
    roles: (Store<PrivilegedRole>, Writer<PrivilegedRole>),
    eligibilities: (Store<Eligibility>, Writer<Eligibility>),
    role_bindings: (Store<RoleBinding>, Writer<RoleBinding>),
    cluster_role_bindings: (Store<ClusterRoleBinding>, Writer<ClusterRoleBinding>),
    reviews: (Store<AccessReview>, Writer<AccessReview>),
}

fn put<K>(store: &mut (Store<K>, Writer<K>), obj: K)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.1.apply_watcher_event(&watcher::Event::Apply(obj));
}

impl Caches {
    pub fn new() -> Self {
        Self {
            requests: reflector::store(),
            roles: reflector::store(),
            eligibilities: reflector::store(),
            role_bindings: reflector::store(),
            cluster_role_bindings: reflector::store(),
            reviews: reflector::store(),
        }
    }

    /// `role` and alice's eligibility for it.
    pub fn with_alice_eligible_for(role: PrivilegedRole) -> Self {
        let elig = eligibility("alice-db", &role.name_any()).users(&[ALICE]);
        Self::new().role(role).eligibility(elig)
    }

    pub fn role(mut self, role: PrivilegedRole) -> Self {
        put(&mut self.roles, role);
        self
    }
    pub fn eligibility(mut self, elig: Eligibility) -> Self {
        put(&mut self.eligibilities, elig);
        self
    }
    pub fn request(mut self, request: ActivationRequest) -> Self {
        put(&mut self.requests, request);
        self
    }
    pub fn review(mut self, review: AccessReview) -> Self {
        put(&mut self.reviews, review);
        self
    }
    pub fn role_binding(mut self, binding: RoleBinding) -> Self {
        put(&mut self.role_bindings, binding);
        self
    }

    pub fn context(&self, client: Client) -> Arc<Context> {
        self.context_at(client, now())
    }

    /// The request cache (what the audit ingest's aggregator reads).
    pub fn requests_store(&self) -> Store<ActivationRequest> {
        self.requests.0.clone()
    }

    /// The context at `at`, with the audit ingest's aggregator (the activity record configured).
    pub fn context_with_activity(
        &self,
        client: Client,
        at: DateTime<Utc>,
        aggregator: Arc<crate::ingest::Aggregator>,
    ) -> Arc<Context> {
        let ctx = self.context_at(client, at);
        let Ok(mut ctx) = Arc::try_unwrap(ctx) else {
            unreachable!("a fresh context has one owner")
        };
        ctx.activity = Some(aggregator);
        Arc::new(ctx)
    }

    /// The context with its clock at `at`: a later pass sees a later time, as a re-check does.
    pub fn context_at(&self, client: Client, at: DateTime<Utc>) -> Arc<Context> {
        let caches = super::context::Caches::indexing(
            self.requests.0.clone(),
            self.roles.0.clone(),
            self.eligibilities.0.clone(),
            self.role_bindings.0.clone(),
            self.cluster_role_bindings.0.clone(),
        );
        let ctx = Context::builder(client, caches)
            .reviews(self.reviews.0.clone())
            .clock(crate::time::Clock::fixed(at))
            .build();
        // As if the role reconciler had read every referenced role already (with no rules), so
        // that an activation records them without a read of its own; tests of role integrity
        // set what they need with `ctx.role_rules.remember`.
        for role in self.roles.0.state() {
            ctx.role_rules.remember(
                &role,
                Some(crate::policy::role_integrity::Observed::of(&[])),
            );
        }
        Arc::new(ctx)
    }
}

// ---------------------------------------------------------------------------------------------
// The verifier: calls, expectations, replies

/// One call the reconciler made, as the server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// The Accept header ("" when none).
    pub accept: String,
    pub body: Value,
}

impl Call {
    pub(crate) async fn read(request: Request<Body>) -> Self {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a readable request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON request body")
        };
        Self {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(parse_query).unwrap_or_default(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(Into::into),
            accept: parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body,
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD)
    }

    fn is_event(&self) -> bool {
        self.path.starts_with("/apis/events.k8s.io/")
    }

    /// The body, typed.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.body.clone()).unwrap_or_else(|e| {
            panic!(
                "{self}: body is not the expected type: {e}\n{:#}",
                self.body
            )
        })
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{:?}", self.query)?;
        }
        Ok(())
    }
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Check = Box<dyn FnOnce(&Call) + Send>;

/// How the fake server answers an expected call.
enum Reply {
    /// As an API server would, from the objects it holds: a patch is applied (404 when the
    /// object is unknown, 409 on a stale resourceVersion, 422 when a JSON-patch op fails), a create
    /// echoes the object with a uid, a delete removes it, a get returns it (404 when unknown).
    AsServer,
    /// A `Status` failure with this code and reason.
    Failure(u16, &'static str),
    /// This body with this code.
    Json(u16, Value),
    /// Never answers (the response handle is kept open until the test ends).
    Hang,
}

/// One call the script expects next.
pub struct Expectation {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    checks: Vec<Check>,
    reply: Reply,
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";

fn request_path(name: &str) -> String {
    format!("/apis/kubepim.io/v1alpha1/activationrequests/{name}")
}
fn role_binding_path(namespace: &str, name: &str) -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{name}")
}
fn cluster_role_binding_path(name: &str) -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")
}

fn object_path<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}",
        K::url_path(&(), obj.meta().namespace.as_deref()),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Constructors of expectations, one per kind of call the reconcilers make.
pub mod expect {
    use super::*;

    fn call(method: Method, path: String) -> Expectation {
        Expectation {
            method,
            path,
            content_type: None,
            checks: vec![],
            reply: Reply::AsServer,
        }
    }

    /// JSON patch adding kubepim's finalizer to the request, conditional (a `test` op) on the
    /// resourceVersion the decision was made on.
    pub fn finalizer_added(request: &str) -> Expectation {
        let mut e = call(Method::PATCH, request_path(request));
        e.content_type = Some(JSON_PATCH);
        e.checking(|c| {
            let ops = c
                .body
                .as_array()
                .expect("a JSON patch is a list of operations");
            let adds = ops.iter().any(|op| {
                op["op"] == "add"
                    && (op["value"] == json!([FINALIZER])
                        || (op["path"] == "/metadata/finalizers/-" && op["value"] == FINALIZER))
            });
            assert!(
                adds,
                "{c}: the patch does not add {FINALIZER}: {:#}",
                c.body
            );
            let tested = ops
                .iter()
                .any(|op| op["op"] == "test" && op["path"] == "/metadata/resourceVersion");
            assert!(
                tested,
                "{c}: the finalizer patch is unconditional: {:#}",
                c.body
            );
        })
    }

    /// JSON patch removing kubepim's finalizer, guarded by a `test` op on the same entry.
    pub fn finalizer_removed(request: &str) -> Expectation {
        let mut e = call(Method::PATCH, request_path(request));
        e.content_type = Some(JSON_PATCH);
        e.checking(|c| {
            let ops = c
                .body
                .as_array()
                .expect("a JSON patch is a list of operations");
            let test = ops.iter().find(|op| op["op"] == "test").unwrap_or_else(|| {
                panic!("{c}: finalizer removal without a test op: {:#}", c.body)
            });
            assert_eq!(
                test["value"], FINALIZER,
                "{c}: the test op checks another value"
            );
            let remove = ops
                .iter()
                .find(|op| op["op"] == "remove")
                .expect("a remove op");
            assert_eq!(
                remove["path"], test["path"],
                "{c}: test and remove target different entries"
            );
        })
    }

    /// Merge patch of the request's status by the controller. Whatever else is checked: it is
    /// conditional on a resourceVersion, and it never carries an approval entry (at most the
    /// empty list that lets approvers append).
    pub fn status_patched(request: &str) -> Expectation {
        let mut e = call(Method::PATCH, format!("{}/status", request_path(request)));
        e.content_type = Some(MERGE_PATCH);
        e.checking(|c| {
            assert!(
                c.body["metadata"]["resourceVersion"].is_string(),
                "{c}: status patch without a resourceVersion precondition: {:#}",
                c.body
            );
            let approvals = &c.body["status"]["approvals"];
            assert!(
                approvals.is_null() || approvals == &json!([]),
                "{c}: the controller wrote approvals: {approvals:#}"
            );
        })
    }

    pub fn role_binding_created(namespace: &str) -> Expectation {
        let mut e = call(
            Method::POST,
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings"),
        );
        e.content_type = Some("application/json");
        e
    }

    pub fn cluster_role_binding_created() -> Expectation {
        let mut e = call(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
        );
        e.content_type = Some("application/json");
        e
    }

    pub fn role_binding_read(namespace: &str, name: &str) -> Expectation {
        call(Method::GET, role_binding_path(namespace, name))
    }

    /// DELETE of a RoleBinding with a uid precondition.
    pub fn role_binding_deleted(namespace: &str, name: &str, uid: &str) -> Expectation {
        call(Method::DELETE, role_binding_path(namespace, name)).with_uid_precondition(uid)
    }

    /// GET of a ServiceAccount (the foothold remover's re-check of a binding's subjects).
    pub fn service_account_read(namespace: &str, name: &str) -> Expectation {
        call(
            Method::GET,
            format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}"),
        )
    }

    /// DELETE of a Secret with a uid precondition.
    pub fn secret_deleted(namespace: &str, name: &str, uid: &str) -> Expectation {
        call(
            Method::DELETE,
            format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
        )
        .with_uid_precondition(uid)
    }

    /// DELETE of a RoleBinding by its name alone (no precondition).
    pub fn role_binding_deleted_by_name(namespace: &str, name: &str) -> Expectation {
        call(Method::DELETE, role_binding_path(namespace, name))
    }

    pub fn cluster_role_binding_deleted(name: &str, uid: &str) -> Expectation {
        call(Method::DELETE, cluster_role_binding_path(name)).with_uid_precondition(uid)
    }

    /// DELETE of a request, conditional on the uid and resourceVersion it was exported at.
    pub fn request_deleted(name: &str, uid: &str, resource_version: &str) -> Expectation {
        let rv = resource_version.to_string();
        call(Method::DELETE, request_path(name))
            .with_uid_precondition(uid)
            .checking(move |c| {
                assert_eq!(
                    c.body["preconditions"]["resourceVersion"], rv,
                    "{c}: delete without the exported version's precondition: {:#}",
                    c.body
                )
            })
    }

    pub fn request_read(name: &str) -> Expectation {
        call(Method::GET, request_path(name))
    }

    /// One page of the managed RoleBindings in all namespaces, by label.
    pub fn role_bindings_listed(continue_token: Option<&str>) -> Expectation {
        managed_list(
            "/apis/rbac.authorization.k8s.io/v1/rolebindings",
            continue_token,
        )
    }

    pub fn cluster_role_bindings_listed(continue_token: Option<&str>) -> Expectation {
        managed_list(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            continue_token,
        )
    }

    fn managed_list(path: &str, continue_token: Option<&str>) -> Expectation {
        let token = continue_token.map(String::from);
        call(Method::GET, path.into()).checking(move |c| {
            assert_eq!(
                c.query.get("labelSelector").map(String::as_str),
                Some(labels::MANAGED_SELECTOR),
                "{c}: not restricted to managed bindings"
            );
            assert_eq!(
                c.query.get("continue"),
                token.as_ref(),
                "{c}: wrong continue token"
            );
        })
    }

    pub fn cluster_role_read(name: &str) -> Expectation {
        call(
            Method::GET,
            format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"),
        )
    }

    pub fn privileged_role_status_patched(name: &str) -> Expectation {
        let mut e = call(
            Method::PATCH,
            format!("/apis/kubepim.io/v1alpha1/privilegedroles/{name}/status"),
        );
        e.content_type = Some(MERGE_PATCH);
        e
    }

    pub fn review_status_patched(name: &str) -> Expectation {
        let mut e = call(
            Method::PATCH,
            format!("/apis/kubepim.io/v1alpha1/accessreviews/{name}/status"),
        );
        e.content_type = Some(MERGE_PATCH);
        e
    }

    pub fn review_created() -> Expectation {
        let mut e = call(
            Method::POST,
            "/apis/kubepim.io/v1alpha1/accessreviews".into(),
        );
        e.content_type = Some("application/json");
        e
    }

    pub fn eligibility_status_patched(name: &str) -> Expectation {
        let mut e = call(
            Method::PATCH,
            format!("/apis/kubepim.io/v1alpha1/eligibilities/{name}/status"),
        );
        e.content_type = Some(MERGE_PATCH);
        e
    }

    /// A SelfSubjectAccessReview: may the operator `bind` `resource`/`name` (in `namespace`)?
    /// Answers `allowed`.
    pub fn bind_reviewed(
        resource: &str,
        name: &str,
        namespace: Option<&str>,
        allowed: bool,
    ) -> Expectation {
        let mut e = call(
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews".into(),
        );
        e.content_type = Some("application/json");
        let want = json!({
            "verb": "bind",
            "group": "rbac.authorization.k8s.io",
            "resource": resource,
            "name": name,
            "namespace": namespace,
        });
        e.reply = Reply::Json(
            201,
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": want.clone()},
                "status": {"allowed": allowed},
            }),
        );
        e.checking(move |c| {
            let attrs = &c.body["spec"]["resourceAttributes"];
            for field in ["verb", "group", "resource", "name", "namespace"] {
                assert_eq!(
                    attrs[field], want[field],
                    "{c}: {field} of the review: {attrs:#}"
                );
            }
        })
    }

    /// The foothold scan of a grant that ends in `namespace`: RoleBindings, Roles and
    /// ServiceAccounts there, each one empty page of 500.
    pub fn foothold_scan(namespace: &str) -> Vec<Expectation> {
        foothold_scan_finding(namespace, &[])
    }

    /// The foothold scan of `namespace`, whose RoleBindings are `role_bindings` (nothing else
    /// found).
    pub fn foothold_scan_finding(
        namespace: &str,
        role_bindings: &[RoleBinding],
    ) -> Vec<Expectation> {
        foothold_scan_of(namespace, role_bindings, &[])
    }

    /// The foothold scan of `namespace`: RoleBindings, Roles, ServiceAccounts, token Secrets
    /// (metadata only, by type) and Pods, in the order the scan issues them; the kinds in
    /// `forbidden` answer 403.
    pub fn foothold_scan_of(
        namespace: &str,
        role_bindings: &[RoleBinding],
        forbidden: &[&str],
    ) -> Vec<Expectation> {
        let page = |resource: &str| -> Vec<Value> {
            if resource == "rolebindings" {
                role_bindings
                    .iter()
                    .map(|b| serde_json::to_value(b).expect("serialisable"))
                    .collect()
            } else {
                Vec::new()
            }
        };
        [
            ("apis/rbac.authorization.k8s.io/v1", "rolebindings"),
            ("apis/rbac.authorization.k8s.io/v1", "roles"),
            ("api/v1", "serviceaccounts"),
            ("api/v1", "secrets"),
            ("api/v1", "pods"),
        ]
        .into_iter()
        .map(|(group, resource)| {
            let e = call(
                Method::GET,
                format!("/{group}/namespaces/{namespace}/{resource}"),
            )
            .checking(move |c| {
                assert_eq!(
                    c.query.get("limit").map(String::as_str),
                    Some("500"),
                    "{c}: unpaginated"
                );
                if resource == "secrets" {
                    // Never a Secret's data: metadata of the token type only.
                    assert_eq!(
                        c.query.get("fieldSelector").map(String::as_str),
                        Some("type=kubernetes.io/service-account-token"),
                        "{c}"
                    );
                    assert!(
                        c.accept.contains("as=PartialObjectMetadataList"),
                        "{c}: Secrets listed whole (Accept: {})",
                        c.accept
                    );
                }
            });
            if forbidden.contains(&resource) {
                e.replies_forbidden()
            } else {
                e.replies_page::<Value>(&page(resource), None)
            }
        })
        .collect()
    }

    /// One page of every binding not managed by kubepim (the standing-privilege scan): all
    /// namespaces, `managed-by!=kubepim`, 500 at a time.
    pub fn unmanaged_role_bindings_listed(continue_token: Option<&str>) -> Expectation {
        unmanaged_list(
            "/apis/rbac.authorization.k8s.io/v1/rolebindings",
            continue_token,
        )
    }

    pub fn unmanaged_cluster_role_bindings_listed(continue_token: Option<&str>) -> Expectation {
        unmanaged_list(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            continue_token,
        )
    }

    fn unmanaged_list(path: &str, continue_token: Option<&str>) -> Expectation {
        let token = continue_token.map(String::from);
        call(Method::GET, path.into()).checking(move |c| {
            assert_eq!(
                c.query.get("labelSelector").map(String::as_str),
                Some("app.kubernetes.io/managed-by!=kubepim"),
                "{c}: not restricted to unmanaged bindings"
            );
            assert_eq!(
                c.query.get("limit").map(String::as_str),
                Some("500"),
                "{c}: unpaginated"
            );
            assert!(
                !c.query.contains_key("watch"),
                "{c}: the scan never watches bindings"
            );
            assert_eq!(
                c.query.get("continue"),
                token.as_ref(),
                "{c}: wrong continue token"
            );
        })
    }
}

impl Expectation {
    /// Adds a check of the call.
    pub fn checking(mut self, check: impl FnOnce(&Call) + Send + 'static) -> Self {
        self.checks.push(Box::new(check));
        self
    }

    /// Adds a check of the body, typed.
    pub fn with_body<T: DeserializeOwned>(self, check: impl FnOnce(T) + Send + 'static) -> Self {
        self.checking(move |c| check(c.json::<T>()))
    }

    /// Adds a check of the status a status patch writes (and of the raw patch).
    pub fn with_status(
        self,
        check: impl FnOnce(ActivationRequestStatus, &Value) + Send + 'static,
    ) -> Self {
        self.checking(move |c| {
            let status = serde_json::from_value(c.body["status"].clone())
                .unwrap_or_else(|e| panic!("{c}: not a status: {e}\n{:#}", c.body));
            check(status, &c.body)
        })
    }

    /// The merge patch must be conditional on exactly this resourceVersion.
    pub fn on_resource_version(self, rv: &str) -> Self {
        let rv = rv.to_string();
        self.checking(move |c| {
            assert_eq!(
                c.body["metadata"]["resourceVersion"], rv,
                "{c}: the patch is conditional on another resourceVersion"
            )
        })
    }

    fn with_uid_precondition(self, uid: &str) -> Self {
        let uid = uid.to_string();
        self.checking(move |c| {
            assert_eq!(
                c.body["preconditions"]["uid"], uid,
                "{c}: delete without the uid precondition of the observed object: {:#}",
                c.body
            )
        })
    }

    pub fn replies_not_found(mut self) -> Self {
        self.reply = Reply::Failure(404, "NotFound");
        self
    }
    /// What the API server answers a create in a namespace that does not exist.
    pub fn replies_namespace_not_found(mut self, namespace: &str) -> Self {
        self.reply = Reply::Json(
            404,
            json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": format!("namespaces \"{namespace}\" not found"),
                "details": {"name": namespace, "kind": "namespaces"},
            }),
        );
        self
    }
    pub fn replies_forbidden(mut self) -> Self {
        self.reply = Reply::Failure(403, "Forbidden");
        self
    }
    pub fn replies_conflict(mut self) -> Self {
        self.reply = Reply::Failure(409, "Conflict");
        self
    }
    pub fn replies_unavailable(mut self) -> Self {
        self.reply = Reply::Failure(503, "ServiceUnavailable");
        self
    }
    /// Never answers.
    pub fn hangs(mut self) -> Self {
        self.reply = Reply::Hang;
        self
    }
    /// A list page holding `items`, with `continue_token` when more pages follow.
    pub fn replies_page<K: Serialize>(mut self, items: &[K], continue_token: Option<&str>) -> Self {
        let items: Vec<Value> = items
            .iter()
            .map(|i| serde_json::to_value(i).expect("serialisable"))
            .collect();
        self.reply = Reply::Json(
            200,
            json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": "900", "continue": continue_token.unwrap_or("")},
                "items": items,
            }),
        );
        self
    }
}

fn failure(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }),
    )
}

/// The fake API server's objects, by path.
#[derive(Default, Debug, Clone)]
pub struct Objects {
    by_path: BTreeMap<String, Value>,
    next_version: u64,
}

impl Objects {
    fn bump(&mut self, obj: &mut Value) {
        self.next_version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.next_version.to_string());
    }

    /// The server's copy of an object, typed.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(&self, path: &str) -> Option<K> {
        self.by_path
            .get(path)
            .map(|v| serde_json::from_value(v.clone()).expect("a stored object of this kind"))
    }

    /// The server's copy of a request.
    pub fn request(&self, name: &str) -> ActivationRequest {
        self.get(&request_path(name))
            .unwrap_or_else(|| panic!("the server holds no request {name}"))
    }

    pub fn has_request(&self, name: &str) -> bool {
        self.get::<ActivationRequest>(&request_path(name)).is_some()
    }

    pub fn has_role_binding(&self, namespace: &str, name: &str) -> bool {
        self.by_path
            .contains_key(&role_binding_path(namespace, name))
    }

    pub fn role_binding(&self, namespace: &str, name: &str) -> RoleBinding {
        self.get(&role_binding_path(namespace, name))
            .unwrap_or_else(|| panic!("the server holds no RoleBinding {namespace}/{name}"))
    }

    fn answer(&mut self, call: &Call) -> (u16, Value) {
        let path = call
            .path
            .strip_suffix("/status")
            .unwrap_or(&call.path)
            .to_string();
        match call.method {
            Method::GET => match self.by_path.get(&path) {
                Some(obj) => (200, obj.clone()),
                None => failure(404, "NotFound", &format!("{path} not found")),
            },
            Method::DELETE => {
                let Some(current) = self.by_path.get(&path) else {
                    return failure(404, "NotFound", &format!("{path} not found"));
                };
                let uid = &call.body["preconditions"]["uid"];
                if !uid.is_null() && uid != &current["metadata"]["uid"] {
                    return failure(409, "Conflict", "Precondition failed: UID in precondition");
                }
                let rv = &call.body["preconditions"]["resourceVersion"];
                if !rv.is_null() && rv != &current["metadata"]["resourceVersion"] {
                    return failure(
                        409,
                        "Conflict",
                        "Precondition failed: ResourceVersion in precondition",
                    );
                }
                self.by_path.remove(&path);
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
                )
            }
            Method::POST => {
                let mut obj = call.body.clone();
                let name = obj["metadata"]["name"]
                    .as_str()
                    .expect("a named object")
                    .to_string();
                let path = format!("{path}/{name}");
                if self.by_path.contains_key(&path) {
                    return failure(409, "AlreadyExists", &format!("{path} already exists"));
                }
                obj["metadata"]["uid"] = json!(format!("uid-created-{name}"));
                obj["metadata"]["creationTimestamp"] = json!(to_k8s(now()));
                self.bump(&mut obj);
                self.by_path.insert(path, obj.clone());
                (201, obj)
            }
            Method::PATCH => {
                let Some(current) = self.by_path.get(&path) else {
                    return failure(404, "NotFound", &format!("{path} not found"));
                };
                let mut patched = current.clone();
                match call.content_type.as_deref() {
                    Some(JSON_PATCH) => {
                        let ops: json_patch::Patch =
                            serde_json::from_value(call.body.clone()).expect("a JSON patch");
                        if let Err(e) = json_patch::patch(&mut patched, &ops.0) {
                            return failure(422, "Invalid", &e.to_string());
                        }
                    }
                    Some(MERGE_PATCH) => json_patch::merge(&mut patched, &call.body),
                    other => panic!("{call}: unsupported patch type {other:?}"),
                }
                let wanted = &patched["metadata"]["resourceVersion"];
                if wanted != &current["metadata"]["resourceVersion"] {
                    return failure(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version",
                    );
                }
                self.bump(&mut patched);
                self.by_path.insert(path, patched.clone());
                (200, patched)
            }
            _ => panic!("{call}: method not served by the fake API server"),
        }
    }
}

/// What a scenario observed.
pub struct Outcome<T> {
    /// What the code under test returned.
    pub result: T,
    /// What the API server saw.
    pub server: Transcript,
}

/// The calls a scenario served, and the server's objects afterwards.
pub struct Transcript {
    /// The scripted calls, in order (events are apart).
    pub calls: Vec<Call>,
    /// Reasons of the Events published meanwhile.
    pub events: Vec<String>,
    /// The server's objects afterwards.
    pub objects: Objects,
    /// Time the code under test took (virtual time under `start_paused`).
    pub elapsed: Duration,
}

impl Transcript {
    /// API writes (creates, patches, deletes), Events not included.
    pub fn writes(&self) -> usize {
        self.calls.iter().filter(|c| c.is_write()).count()
    }

    pub fn published(&self, reason: &str) -> bool {
        self.events.iter().any(|e| e == reason)
    }
}

/// A scripted API server: the objects it holds and the calls it expects, in order.
#[derive(Default)]
pub struct Scenario {
    objects: Objects,
    expected: VecDeque<Expectation>,
}

impl Scenario {
    pub fn new() -> Self {
        Self {
            objects: Objects {
                next_version: 1000,
                ..Default::default()
            },
            expected: VecDeque::new(),
        }
    }

    /// The server holds this object (as it is on the server, which may differ from the cache).
    pub fn holding<K: Resource<DynamicType = ()> + Serialize>(mut self, obj: &K) -> Self {
        let value = serde_json::to_value(obj).expect("serialisable");
        self.objects.by_path.insert(object_path(obj), value);
        self
    }

    /// The next call the code under test must make.
    pub fn then(mut self, expectation: Expectation) -> Self {
        self.expected.push_back(expectation);
        self
    }

    /// Several expectations in order (e.g. [`expect::foothold_scan`]).
    pub fn then_all(mut self, expectations: Vec<Expectation>) -> Self {
        self.expected.extend(expectations);
        self
    }

    /// No call at all may be made.
    pub fn silent() -> Self {
        Self::new()
    }

    /// Runs `act` against a client wired to this scenario, then checks that every expected call
    /// was made and nothing else.
    pub async fn run<T, F, Fut>(self, act: F) -> Outcome<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = T>,
    {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "default");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve(handle, self, stopped));

        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(ACT_LIMIT, act(client))
            .await
            .expect("the code under test did not finish in time");
        let elapsed = started.elapsed();
        // Events are published from spawned tasks: let them reach the server.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let served = match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(served)) => served,
            Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Ok(Err(join)) => panic!("the fake API server task failed: {join}"),
            Err(_) => panic!("the fake API server did not stop"),
        };
        let calls: Vec<String> = served.calls.iter().map(ToString::to_string).collect();
        assert!(
            served.missing.is_empty(),
            "expected calls were never made: {:#?}\ncalls made: {calls:#?}",
            served.missing
        );
        Outcome {
            result,
            server: Transcript {
                calls: served.calls,
                events: served.events,
                objects: served.objects,
                elapsed,
            },
        }
    }
}

struct Served {
    calls: Vec<Call>,
    events: Vec<String>,
    missing: Vec<String>,
    objects: Objects,
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

async fn serve(
    mut handle: Handle,
    scenario: Scenario,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Served {
    let Scenario {
        mut objects,
        mut expected,
    } = scenario;
    let mut calls = Vec::new();
    let mut events = Vec::new();
    let mut event_reasons: BTreeMap<String, String> = BTreeMap::new();
    let mut open = Vec::new();
    loop {
        let next = tokio::select! {
            biased;
            next = handle.next_request() => next,
            _ = &mut stop => break,
        };
        let Some((request, respond)) = next else {
            break;
        };
        let call = Call::read(request).await;
        if call.is_event() {
            // A repeat is a patch of the first Event's series: it counts under that reason.
            let name = call.path.rsplit('/').next().unwrap_or_default().to_string();
            let reason = match call.method {
                Method::PATCH => event_reasons.get(&name).cloned().unwrap_or_default(),
                _ => call.body["reason"].as_str().unwrap_or_default().to_string(),
            };
            if let Some(created) = call.body["metadata"]["name"].as_str() {
                event_reasons.insert(created.to_string(), reason.clone());
            }
            events.push(reason);
            respond.send_response(response(201, &call.body));
            continue;
        }
        let made: Vec<String> = calls.iter().map(|c: &Call| c.to_string()).collect();
        let Some(expectation) = expected.pop_front() else {
            panic!(
                "unexpected call {call} (the script is done)\nbody: {:#}\ncalls before: {made:#?}",
                call.body
            );
        };
        assert_eq!(
            (&call.method, &call.path),
            (&expectation.method, &expectation.path),
            "call #{} is not the one expected ({expectation})\nbody: {:#}\ncalls before: {made:#?}",
            calls.len() + 1,
            call.body
        );
        if let Some(content_type) = expectation.content_type {
            assert_eq!(
                call.content_type.as_deref(),
                Some(content_type),
                "{call}: content type"
            );
        }
        for check in expectation.checks {
            check(&call);
        }
        match expectation.reply {
            Reply::AsServer => {
                let (code, body) = objects.answer(&call);
                respond.send_response(response(code, &body));
            }
            Reply::Failure(code, reason) => {
                let (code, body) = failure(code, reason, "scripted failure");
                respond.send_response(response(code, &body));
            }
            Reply::Json(code, body) => respond.send_response(response(code, &body)),
            Reply::Hang => open.push(respond),
        }
        calls.push(call);
    }
    drop(open);
    Served {
        calls,
        events,
        missing: expected.iter().map(ToString::to_string).collect(),
        objects,
    }
}

fn response(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("a valid status code"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("serialisable")))
        .expect("a valid response")
}
