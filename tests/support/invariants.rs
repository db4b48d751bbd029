//! Invariant I1 ("nobody let in") from SECURITY.md, as far as the API shows it.
//!
//! Checked independently of kubepim's own policy code: an acceptance test should not grade the
//! operator with the operator's logic.
//!
//! For every binding labelled `app.kubernetes.io/managed-by=kubepim` (RoleBindings in all
//! namespaces, ClusterRoleBindings), whatever its shape: its request (label `kubepim.io/request`,
//! or the annotation; the two agree) exists and is Active; the binding is named after it and is
//! one of the bindings recorded in its `status.bindings`;
//! the binding has exactly one subject, the requester (kind User); its roleRef is the
//! PrivilegedRole's; a RoleBinding's namespace is one the request asked for and the role allows, a
//! ClusterRoleBinding only for a cluster-wide role; an Eligibility for the role names the requester
//! (or one of the requester's groups) and is inside its window; the approvals satisfy the role's
//! policy (enough distinct authorised approvers, none the requester or a ServiceAccount, no Deny);
//! and now < status.expiresAt + 1 s.
//!
//! Timing: a request can legitimately stop being Active a moment before the operator deletes its
//! bindings (a cancel, a Deny, a deleted Eligibility). The contract bounds that gap by the same
//! small ε as expiry, so a finding other than "past expiresAt + 1 s" is re-checked once after 1 s
//! and reported only if the same binding (same uid) still violates it.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kubepim::api::labels::{MANAGED_SELECTOR, REQUEST};
use kubepim::api::{
    ActivationRequest, Decision, Eligibility, Phase, PrivilegedRole, RoleKind, SubjectKind,
};

use super::Env;

/// How long past expiresAt a binding may live, and how long a non-timing finding may last
/// before it counts, on a healthy API server.
const EPSILON: Duration = Duration::from_secs(1);

/// A managed binding, RoleBinding or ClusterRoleBinding, reduced to what I1 looks at.
#[derive(Debug, Clone)]
struct Managed {
    kind: &'static str,
    namespace: Option<String>,
    name: String,
    uid: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    role_kind: String,
    role_name: String,
    subjects: Vec<(String, String)>,
}

impl Managed {
    fn id(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }
}

fn from_rb(rb: &RoleBinding) -> Managed {
    Managed {
        kind: "RoleBinding",
        namespace: rb.namespace(),
        name: rb.name_any(),
        uid: rb.uid().unwrap_or_default(),
        labels: rb.labels().clone(),
        annotations: rb.annotations().clone(),
        role_kind: rb.role_ref.kind.clone(),
        role_name: rb.role_ref.name.clone(),
        subjects: rb
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.clone(), s.name.clone()))
            .collect(),
    }
}

fn from_crb(crb: &ClusterRoleBinding) -> Managed {
    Managed {
        kind: "ClusterRoleBinding",
        namespace: None,
        name: crb.name_any(),
        uid: crb.uid().unwrap_or_default(),
        labels: crb.labels().clone(),
        annotations: crb.annotations().clone(),
        role_kind: crb.role_ref.kind.clone(),
        role_name: crb.role_ref.name.clone(),
        subjects: crb
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.clone(), s.name.clone()))
            .collect(),
    }
}

/// One violation: (binding uid, definitive?, description).
type Finding = (String, bool, String);

/// Asserts I1 now. Call after every step of a lifecycle test.
pub async fn assert_i1(env: &Env) {
    match check_i1(env, EPSILON).await {
        Ok(violations) if violations.is_empty() => {}
        Ok(violations) => panic!("invariant I1 violated:\n{}", violations.join("\n")),
        Err(error) => panic!("I1 check: {error}"),
    }
}

/// I1 with `grace` for ε: a binding may outlive its request's expiresAt by `grace`, and a
/// finding other than that counts only if the same binding still shows it `grace` later. Under
/// injected faults the operator is held to a looser bound than on a healthy server. Returns the
/// violations (empty: I1 holds), or the error of an API call that failed (the check could not be
/// made, e.g. while kube-apiserver restarts).
pub async fn check_i1(env: &Env, grace: Duration) -> Result<Vec<String>, kube::Error> {
    let epsilon = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let first = check(env, epsilon).await?;
    if first.is_empty() {
        return Ok(Vec::new());
    }
    let definitive: Vec<&Finding> = first.iter().filter(|f| f.1).collect();
    if !definitive.is_empty() {
        return Ok(lines(&definitive));
    }
    tokio::time::sleep(grace).await;
    let second = check(env, epsilon).await?;
    let persisting: Vec<&Finding> = second
        .iter()
        .filter(|f| f.1 || first.iter().any(|g| g.0 == f.0))
        .collect();
    Ok(lines(&persisting)
        .into_iter()
        .map(|l| format!("{l} (still after {grace:?})"))
        .collect())
}

fn lines(findings: &[&Finding]) -> Vec<String> {
    findings.iter().map(|f| format!("  - {}", f.2)).collect()
}

async fn check(env: &Env, epsilon: chrono::Duration) -> Result<Vec<Finding>, kube::Error> {
    let admin = env.admin();
    let lp = ListParams::default().labels(MANAGED_SELECTOR);
    // The earliest instant at which the listed bindings are known to exist.
    let listed_at = Utc::now();
    let mut managed: Vec<Managed> = Api::<RoleBinding>::all(admin.clone())
        .list(&lp)
        .await?
        .iter()
        .map(from_rb)
        .collect();
    managed.extend(
        Api::<ClusterRoleBinding>::all(admin.clone())
            .list(&lp)
            .await?
            .iter()
            .map(from_crb),
    );
    let requests: Api<ActivationRequest> = Api::all(admin.clone());
    let roles: Api<PrivilegedRole> = Api::all(admin.clone());
    let eligibilities = Api::<Eligibility>::all(admin.clone())
        .list(&ListParams::default())
        .await?;

    let mut findings = Vec::new();
    for b in &managed {
        let mut bad = |definitive: bool, what: String| {
            findings.push((b.uid.clone(), definitive, format!("{}: {what}", b.id())))
        };
        // The label; the annotation for names longer than a label value may be.
        let Some(request_name) = b.labels.get(REQUEST).or_else(|| b.annotations.get(REQUEST))
        else {
            bad(false, format!("no {REQUEST} label or annotation"));
            continue;
        };
        let ar = match requests.get_opt(request_name).await? {
            Some(ar) => ar,
            None => {
                bad(false, format!("its request {request_name} does not exist"));
                continue;
            }
        };
        // A label that disagrees with the annotation points nowhere in particular.
        if let (Some(l), Some(a)) = (b.labels.get(REQUEST), b.annotations.get(REQUEST))
            && l != a
        {
            bad(false, format!("label names request {l}, annotation {a}"));
        }
        // kubepim names its bindings after the request; any other name is not one of its own.
        let expected_name = format!("kubepim-{request_name}");
        if expected_name.len() <= 253 && b.name != expected_name {
            bad(
                false,
                format!(
                    "named {}, a binding of request {request_name} is {expected_name}",
                    b.name
                ),
            );
        }
        let status = ar.status.clone().unwrap_or_default();
        if !status
            .bindings
            .iter()
            .any(|r| r.kind == b.kind && r.namespace == b.namespace && r.name == b.name)
        {
            bad(
                false,
                format!(
                    "not among the bindings recorded for request {request_name}: {:?}",
                    status.bindings
                ),
            );
        }
        if status.phase != Some(Phase::Active) {
            bad(
                false,
                format!("request {request_name} is {:?}, not Active", status.phase),
            );
        }
        match status.expires_at.as_ref().map(kubepim::time::from_k8s) {
            None => bad(
                false,
                format!("request {request_name} has no status.expiresAt"),
            ),
            Some(expires) if listed_at >= expires + epsilon => bad(
                true,
                format!(
                    "exists at {listed_at} but request {request_name} expired at {expires} (ε {}s)",
                    epsilon.num_seconds()
                ),
            ),
            Some(_) => {}
        }
        let requester = ar.spec.requester.clone().unwrap_or_default();
        if b.subjects != [("User".to_string(), requester.username.clone())] {
            bad(
                false,
                format!(
                    "subjects {:?}, expected exactly [User {:?}]",
                    b.subjects, requester.username
                ),
            );
        }
        let Some(pr) = roles.get_opt(&ar.spec.role).await? else {
            bad(
                false,
                format!(
                    "PrivilegedRole {} of request {request_name} does not exist",
                    ar.spec.role
                ),
            );
            continue;
        };
        let want_kind = match pr.spec.role_ref.kind {
            RoleKind::Role => "Role",
            RoleKind::ClusterRole => "ClusterRole",
        };
        if b.role_kind != want_kind || b.role_name != pr.spec.role_ref.name {
            bad(
                false,
                format!(
                    "roleRef {} {}, role grants {want_kind} {}",
                    b.role_kind, b.role_name, pr.spec.role_ref.name
                ),
            );
        }
        match (&b.namespace, pr.spec.scope.cluster_wide) {
            (None, false) => bad(
                false,
                "ClusterRoleBinding for a namespaced PrivilegedRole".into(),
            ),
            (Some(_), true) => bad(
                false,
                "RoleBinding for a cluster-wide PrivilegedRole".into(),
            ),
            (Some(ns), false)
                if !(ar.spec.namespaces.contains(ns) && pr.spec.scope.namespaces.contains(ns)) =>
            {
                bad(
                    false,
                    format!(
                        "namespace {ns} not in request {:?} ∩ role {:?}",
                        ar.spec.namespaces, pr.spec.scope.namespaces
                    ),
                )
            }
            _ => {}
        }
        if pr.spec.role_ref.kind == RoleKind::Role && b.namespace != pr.spec.role_ref.namespace {
            bad(
                false,
                format!(
                    "Role {:?} bound outside its namespace",
                    pr.spec.role_ref.namespace
                ),
            );
        }
        let eligible = eligibilities.iter().any(|el| {
            let in_window = el
                .spec
                .not_before
                .as_ref()
                .is_none_or(|t| kubepim::time::from_k8s(t) <= listed_at)
                && el
                    .spec
                    .not_after
                    .as_ref()
                    .is_none_or(|t| listed_at < kubepim::time::from_k8s(t));
            el.spec.role == ar.spec.role
                && in_window
                && el.spec.subjects.iter().any(|s| match s.kind {
                    SubjectKind::User => s.name == requester.username,
                    SubjectKind::Group => requester.groups.contains(&s.name),
                    SubjectKind::ServiceAccount => {
                        requester.username
                            == format!(
                                "system:serviceaccount:{}:{}",
                                s.namespace.as_deref().unwrap_or(""),
                                s.name
                            )
                    }
                })
        });
        if !eligible {
            bad(
                false,
                format!(
                    "requester {} not eligible for {} now",
                    requester.username, ar.spec.role
                ),
            );
        }
        if let Some(problem) = approvals_problem(&ar, &pr) {
            bad(false, problem);
        }
    }
    Ok(findings)
}

fn approvals_problem(ar: &ActivationRequest, pr: &PrivilegedRole) -> Option<String> {
    let policy = &pr.spec.approval;
    let requester = ar
        .spec
        .requester
        .as_ref()
        .map(|r| r.username.as_str())
        .unwrap_or("");
    let approvals = ar
        .status
        .as_ref()
        .map(|s| s.approvals.clone())
        .unwrap_or_default();
    let authorised = |a: &kubepim::api::Approval| {
        a.approver != requester
            && !a.approver.starts_with("system:serviceaccount:")
            && (policy.approvers.users.contains(&a.approver)
                || a.groups.iter().any(|g| policy.approvers.groups.contains(g)))
    };
    if let Some(deny) = approvals
        .iter()
        .find(|a| a.decision == Decision::Denied && authorised(a))
    {
        return Some(format!("denied by {}", deny.approver));
    }
    let mut approvers: Vec<&str> = approvals
        .iter()
        .filter(|a| a.decision == Decision::Approved && authorised(a))
        .map(|a| a.approver.as_str())
        .collect();
    approvers.sort();
    approvers.dedup();
    let required = if pr.spec.break_glass {
        0
    } else {
        policy.required_approvals as usize
    };
    (approvers.len() < required).then(|| {
        format!(
            "{} distinct authorised approvals ({approvers:?}), role requires {required}",
            approvers.len()
        )
    })
}
