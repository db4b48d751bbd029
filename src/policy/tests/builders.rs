//! Builders for policy test objects, so that tests read like sentences:
//!
//! ```text
//! role("payments-admin").cluster_role("admin").namespaces(&["payments"]).approvers(&["bob"], &["sre-leads"])
//! eligibility("alice-payments", "payments-admin").users(&["alice"]).not_after(at(120))
//! request("payments-admin").by(&user("alice")).namespaces(&["payments"]).duration("2h")
//! ```
//!
//! Shared by the unit tables (`src/policy/tests/`) and the property tests
//! (`tests/policy_properties.rs`, through `#[path]`). The includer provides a `deps` module that
//! re-exports the crate's types, so this file compiles both inside and outside the crate.
#![allow(dead_code)]

use super::deps::*;

/// The fixed clock of every test: 2026-03-02T10:00:00Z.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

/// `t0` plus `minutes` (negative for earlier).
pub fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

/// `t0` plus `seconds`.
pub fn at_s(seconds: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(seconds)
}

pub fn mins(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

pub fn k8s_duration(s: &str) -> KubeDuration {
    s.parse()
        .unwrap_or_else(|e| panic!("bad duration {s}: {e}"))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// PrivilegedRole

/// `spec.budget` of a role or an eligibility.
pub fn budget(max_elevated: &str, per: &str) -> Budget {
    Budget {
        max_elevated: k8s_duration(max_elevated),
        per: k8s_duration(per),
    }
}

/// A cluster-wide PrivilegedRole granting the ClusterRole of the same name, with the CRD's
/// defaults: one approval (no approver named yet), 1h default, 4h max, 24h pending timeout,
/// justification required.
pub fn role(name: &str) -> PrivilegedRole {
    PrivilegedRole::new(
        name,
        PrivilegedRoleSpec {
            description: None,
            role_ref: RoleRef {
                kind: RoleKind::ClusterRole,
                name: name.into(),
                namespace: None,
            },
            scope: Scope {
                namespaces: vec![],
                cluster_wide: true,
            },
            default_duration: k8s_duration("1h"),
            max_duration: k8s_duration("4h"),
            max_continuous_duration: None,
            approval: ApprovalPolicy::default(),
            require_justification: true,
            ticket_pattern: None,
            break_glass: false,
            require_requester_attributes: None,
            budget: None,
            idle_timeout: None,
            on_footholds: Default::default(),
        },
    )
}

pub trait RoleExt: Sized {
    fn with(self, f: impl FnOnce(&mut PrivilegedRoleSpec)) -> Self;

    /// Grants the ClusterRole `name` (scope unchanged).
    fn cluster_role(self, name: &str) -> Self {
        self.with(|s| {
            s.role_ref = RoleRef {
                kind: RoleKind::ClusterRole,
                name: name.into(),
                namespace: None,
            }
        })
    }
    /// Grants the Role `namespace/name`, bindable only in `namespace`.
    fn role_in(self, namespace: &str, name: &str) -> Self {
        self.with(|s| {
            s.role_ref = RoleRef {
                kind: RoleKind::Role,
                name: name.into(),
                namespace: Some(namespace.into()),
            };
            s.scope = Scope {
                namespaces: vec![namespace.into()],
                cluster_wide: false,
            };
        })
    }
    /// Granted by RoleBindings in (some of) these namespaces.
    fn namespaces(self, namespaces: &[&str]) -> Self {
        self.with(|s| {
            s.scope = Scope {
                namespaces: strings(namespaces),
                cluster_wide: false,
            }
        })
    }
    /// Granted by one ClusterRoleBinding.
    fn cluster_wide(self) -> Self {
        self.with(|s| {
            s.scope = Scope {
                namespaces: vec![],
                cluster_wide: true,
            }
        })
    }
    fn approvers(self, users: &[&str], groups: &[&str]) -> Self {
        self.with(|s| {
            s.approval.approvers = Approvers {
                users: strings(users),
                groups: strings(groups),
            }
        })
    }
    fn required_approvals(self, n: u32) -> Self {
        self.with(|s| s.approval.required_approvals = n)
    }
    fn no_approval_required(self) -> Self {
        self.required_approvals(0)
    }
    fn break_glass(self) -> Self {
        self.with(|s| {
            s.break_glass = true;
            s.approval.required_approvals = 0;
        })
    }
    fn default_duration(self, d: &str) -> Self {
        self.with(|s| s.default_duration = k8s_duration(d))
    }
    fn max_duration(self, d: &str) -> Self {
        self.with(|s| s.max_duration = k8s_duration(d))
    }
    fn pending_timeout(self, d: &str) -> Self {
        self.with(|s| s.approval.pending_timeout = k8s_duration(d))
    }
    fn justification_optional(self) -> Self {
        self.with(|s| s.require_justification = false)
    }
    fn ticket_pattern(self, p: &str) -> Self {
        self.with(|s| s.ticket_pattern = Some(p.into()))
    }
    /// A privilege budget: at most `max_elevated` per requester in any window of `per`.
    fn idle_timeout(self, d: &str) -> Self {
        self.with(|s| s.idle_timeout = Some(k8s_duration(d)))
    }
    fn budget(self, max_elevated: &str, per: &str) -> Self {
        let budget = budget(max_elevated, per);
        self.with(|s| s.budget = Some(budget))
    }
    /// Step-up: the requester's authenticated `extra[key]` must hold one of `any_of`.
    fn requires_attribute(self, key: &str, any_of: &[&str]) -> Self {
        self.with(|s| {
            s.require_requester_attributes = Some(RequesterAttributeRequirement {
                key: key.into(),
                any_of: strings(any_of),
            })
        })
    }
}

impl RoleExt for PrivilegedRole {
    fn with(mut self, f: impl FnOnce(&mut PrivilegedRoleSpec)) -> Self {
        f(&mut self.spec);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Eligibility

/// An unbounded Eligibility for `role` that names nobody yet.
pub fn eligibility(name: &str, role: &str) -> Eligibility {
    Eligibility {
        metadata: named(name),
        spec: EligibilitySpec {
            role: role.into(),
            subjects: vec![],
            namespaces: vec![],
            max_duration: None,
            not_before: None,
            not_after: None,
            budget: None,
        },
        status: None,
    }
}

pub trait EligibilityExt: Sized {
    fn with(self, f: impl FnOnce(&mut EligibilitySpec)) -> Self;

    fn users(self, names: &[&str]) -> Self {
        self.with(|s| {
            s.subjects
                .extend(names.iter().map(|n| SubjectRef::user(*n)))
        })
    }
    fn groups(self, names: &[&str]) -> Self {
        self.with(|s| {
            s.subjects
                .extend(names.iter().map(|n| SubjectRef::group(*n)))
        })
    }
    fn service_account(self, namespace: &str, name: &str) -> Self {
        self.with(|s| {
            s.subjects
                .push(SubjectRef::service_account(namespace, name))
        })
    }
    /// Narrows the role's namespaces.
    fn namespaces(self, namespaces: &[&str]) -> Self {
        self.with(|s| s.namespaces = strings(namespaces))
    }
    fn max_duration(self, d: &str) -> Self {
        self.with(|s| s.max_duration = Some(k8s_duration(d)))
    }
    fn not_before(self, t: DateTime<Utc>) -> Self {
        self.with(|s| s.not_before = Some(to_k8s(t)))
    }
    fn not_after(self, t: DateTime<Utc>) -> Self {
        self.with(|s| s.not_after = Some(to_k8s(t)))
    }
    /// A privilege budget for the subjects named here.
    fn budget(self, max_elevated: &str, per: &str) -> Self {
        let budget = budget(max_elevated, per);
        self.with(|s| s.budget = Some(budget))
    }
}

impl EligibilityExt for Eligibility {
    fn with(mut self, f: impl FnOnce(&mut EligibilitySpec)) -> Self {
        f(&mut self.spec);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Requesters and approvals

pub fn user(name: &str) -> Requester {
    Requester {
        username: name.into(),
        ..Default::default()
    }
}

/// The requester a ServiceAccount authenticates as.
pub fn sa(namespace: &str, name: &str) -> Requester {
    Requester {
        username: format!("system:serviceaccount:{namespace}:{name}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
        ],
        ..Default::default()
    }
}

pub trait RequesterExt: Sized {
    fn in_groups(self, groups: &[&str]) -> Self;
    /// An authenticator attribute, e.g. `with_extra("amr", &["pwd", "mfa"])`.
    fn with_extra(self, key: &str, values: &[&str]) -> Self;
}

impl RequesterExt for Requester {
    fn in_groups(mut self, groups: &[&str]) -> Self {
        self.groups.extend(strings(groups));
        self
    }
    fn with_extra(mut self, key: &str, values: &[&str]) -> Self {
        self.extra.insert(key.into(), strings(values));
        self
    }
}

pub fn approved_by(approver: &str) -> Approval {
    Approval {
        approver: approver.into(),
        groups: vec![],
        decision: Decision::Approved,
        reason: None,
        time: None,
    }
}

pub fn denied_by(approver: &str, reason: &str) -> Approval {
    Approval {
        approver: approver.into(),
        groups: vec![],
        decision: Decision::Denied,
        reason: Some(reason.into()),
        time: None,
    }
}

pub trait ApprovalExt: Sized {
    fn in_groups(self, groups: &[&str]) -> Self;
}

impl ApprovalExt for Approval {
    fn in_groups(mut self, groups: &[&str]) -> Self {
        self.groups.extend(strings(groups));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// ActivationRequest spec and status

/// A request for `role` by nobody yet, with a justification and nothing else.
pub fn request(role: &str) -> ActivationRequestSpec {
    ActivationRequestSpec {
        role: role.into(),
        namespaces: vec![],
        duration: None,
        justification: Some("on-call: payments are failing".into()),
        ticket: None,
        start_at: None,
        cancel: false,
        extends: None,
        requester: None,
    }
}

pub trait RequestExt: Sized {
    fn with(self, f: impl FnOnce(&mut ActivationRequestSpec)) -> Self;

    fn by(self, requester: &Requester) -> Self {
        let requester = requester.clone();
        self.with(|s| s.requester = Some(requester))
    }
    fn namespaces(self, namespaces: &[&str]) -> Self {
        self.with(|s| s.namespaces = strings(namespaces))
    }
    /// Extends the request `original` (`spec.extends`).
    fn extends(self, original: &str) -> Self {
        let original = original.to_string();
        self.with(|s| s.extends = Some(original))
    }
    fn duration(self, d: &str) -> Self {
        self.with(|s| s.duration = Some(k8s_duration(d)))
    }
    fn justification(self, j: &str) -> Self {
        self.with(|s| s.justification = Some(j.into()))
    }
    fn without_justification(self) -> Self {
        self.with(|s| s.justification = None)
    }
    fn ticket(self, t: &str) -> Self {
        self.with(|s| s.ticket = Some(t.into()))
    }
    fn start_at(self, t: DateTime<Utc>) -> Self {
        self.with(|s| s.start_at = Some(to_k8s(t)))
    }
    fn cancelled(self) -> Self {
        self.with(|s| s.cancel = true)
    }
}

impl RequestExt for ActivationRequestSpec {
    fn with(mut self, f: impl FnOnce(&mut ActivationRequestSpec)) -> Self {
        f(&mut self);
        self
    }
}

/// A status with no phase yet (a request just created).
pub fn fresh() -> ActivationRequestStatus {
    ActivationRequestStatus::default()
}

pub trait StatusExt: Sized {
    fn with(self, f: impl FnOnce(&mut ActivationRequestStatus)) -> Self;

    fn phase(self, phase: Phase) -> Self {
        self.with(|s| s.phase = Some(phase))
    }
    fn approvals(self, approvals: &[Approval]) -> Self {
        let approvals = approvals.to_vec();
        self.with(|s| s.approvals.extend(approvals))
    }
    /// Active since `activated_at` until `expires_at`, as the controller records it.
    fn active(self, activated_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> Self {
        self.with(|s| {
            s.phase = Some(Phase::Active);
            s.activated_at = Some(to_k8s(activated_at));
            s.expires_at = Some(to_k8s(expires_at));
        })
    }
    /// A grant that was active from `activated_at` (until `expires_at`) and ended in `phase` at
    /// `ended_at`, as the controller records it.
    fn ended(
        self,
        phase: Phase,
        activated_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
    ) -> Self {
        self.with(|s| {
            s.phase = Some(phase);
            s.activated_at = Some(to_k8s(activated_at));
            s.expires_at = Some(to_k8s(expires_at));
            s.ended_at = Some(to_k8s(ended_at));
        })
    }
    /// As history written before `endedAt` existed: the end is not recorded.
    fn without_ended_at(self) -> Self {
        self.with(|s| s.ended_at = None)
    }
    /// The binding refs the controller recorded at activation.
    fn bindings(self, bindings: &[BindingRef]) -> Self {
        let bindings = bindings.to_vec();
        self.with(|s| s.bindings = bindings)
    }
}

impl StatusExt for ActivationRequestStatus {
    fn with(mut self, f: impl FnOnce(&mut ActivationRequestStatus)) -> Self {
        f(&mut self);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Observed bindings

/// The ClusterRoleBinding kubepim creates for `request`, granting ClusterRole `role` to `subject`.
pub fn observed_crb(
    request: &str,
    role: &str,
    subject: Subject,
    expires_at: Option<DateTime<Utc>>,
) -> ObservedBinding {
    ObservedBinding {
        kind: BindingKind::ClusterRoleBinding,
        namespace: None,
        name: binding_name(request),
        role_kind: "ClusterRole".into(),
        role_name: role.into(),
        subjects: vec![subject],
        expires_at,
    }
}

/// The RoleBinding kubepim creates for `request` in `namespace`.
pub fn observed_rb(
    request: &str,
    namespace: &str,
    role_kind: &str,
    role: &str,
    subject: Subject,
    expires_at: Option<DateTime<Utc>>,
) -> ObservedBinding {
    ObservedBinding {
        kind: BindingKind::RoleBinding,
        namespace: Some(namespace.into()),
        name: binding_name(request),
        role_kind: role_kind.into(),
        role_name: role.into(),
        subjects: vec![subject],
        expires_at,
    }
}

/// What a step's bindings look like as observed objects, carrying `expires_at`.
pub fn as_observed(bindings: &[DesiredBinding], expires_at: DateTime<Utc>) -> Vec<ObservedBinding> {
    bindings
        .iter()
        .map(|b| ObservedBinding {
            kind: b.kind,
            namespace: b.namespace.clone(),
            name: b.name.clone(),
            role_kind: match b.role_kind {
                RoleKind::Role => "Role".into(),
                RoleKind::ClusterRole => "ClusterRole".into(),
            },
            role_name: b.role_name.clone(),
            subjects: vec![b.subject.clone()],
            expires_at: Some(expires_at),
        })
        .collect()
}

/// The binding refs a status records for these bindings.
pub fn refs(bindings: &[DesiredBinding]) -> Vec<BindingRef> {
    let mut refs: Vec<BindingRef> = bindings
        .iter()
        .map(|b| BindingRef {
            kind: b.kind.as_str().into(),
            namespace: b.namespace.clone(),
            name: b.name.clone(),
        })
        .collect();
    refs.sort();
    refs
}

// ---------------------------------------------------------------------------------------------
// The whole world `decide` looks at, owned, so tests can tweak one thing and decide again.

#[derive(Debug, Clone)]
pub struct World {
    pub request_name: String,
    pub spec: ActivationRequestSpec,
    pub status: ActivationRequestStatus,
    pub created_at: DateTime<Utc>,
    pub role: Option<PrivilegedRole>,
    pub eligibilities: Vec<Eligibility>,
    pub observed: Vec<ObservedBinding>,
    /// (name, spec, status) of the request this one extends, as the cache holds it.
    pub original: Option<(String, ActivationRequestSpec, ActivationRequestStatus)>,
    /// (name, spec, status) of an Active extension of this request.
    pub successor: Option<(String, ActivationRequestSpec, ActivationRequestStatus)>,
    /// (name, spec, status) of the other requests kept: what budgets count.
    pub history: Vec<(String, ActivationRequestSpec, ActivationRequestStatus)>,
}

/// A request named `name`, created at `t0`, with its role and eligibilities, and nothing observed.
pub fn world(
    name: &str,
    spec: ActivationRequestSpec,
    role: PrivilegedRole,
    eligibilities: &[Eligibility],
) -> World {
    World {
        request_name: name.into(),
        spec,
        status: fresh(),
        created_at: t0(),
        role: Some(role),
        eligibilities: eligibilities.to_vec(),
        observed: vec![],
        original: None,
        successor: None,
        history: vec![],
    }
}

impl World {
    pub fn status(mut self, status: ActivationRequestStatus) -> Self {
        self.status = status;
        self
    }
    pub fn observed(mut self, observed: Vec<ObservedBinding>) -> Self {
        self.observed = observed;
        self
    }
    pub fn without_role(mut self) -> Self {
        self.role = None;
        self
    }
    pub fn eligibilities(mut self, eligibilities: &[Eligibility]) -> Self {
        self.eligibilities = eligibilities.to_vec();
        self
    }
    /// The request this one extends exists, as `(name, spec, status)`.
    pub fn original(
        mut self,
        name: &str,
        spec: ActivationRequestSpec,
        status: ActivationRequestStatus,
    ) -> Self {
        self.original = Some((name.into(), spec, status));
        self
    }
    /// An extension of this request exists, as `(name, spec, status)`.
    pub fn successor(
        mut self,
        name: &str,
        spec: ActivationRequestSpec,
        status: ActivationRequestStatus,
    ) -> Self {
        self.successor = Some((name.into(), spec, status));
        self
    }
    /// Another kept request, as `(name, spec, status)`.
    pub fn past(
        mut self,
        name: &str,
        spec: ActivationRequestSpec,
        status: ActivationRequestStatus,
    ) -> Self {
        self.history.push((name.into(), spec, status));
        self
    }
    pub fn decide_at(&self, now: DateTime<Utc>) -> Step {
        let eligibilities: Vec<&Eligibility> = self.eligibilities.iter().collect();
        let history: Vec<Related<'_>> = self
            .history
            .iter()
            .map(|(name, spec, status)| Related { name, spec, status })
            .collect();
        fn related(
            r: &Option<(String, ActivationRequestSpec, ActivationRequestStatus)>,
        ) -> Option<Related<'_>> {
            r.as_ref()
                .map(|(name, spec, status)| Related { name, spec, status })
        }
        decide(&Input {
            original: related(&self.original),
            successor: related(&self.successor),
            history: &history,
            request_name: &self.request_name,
            spec: &self.spec,
            status: &self.status,
            created_at: self.created_at,
            role: self.role.as_ref(),
            eligibilities: &eligibilities,
            observed: &self.observed,
            now,
        })
    }
}

/// Validates `spec` (by its requester) against `role` and `eligibilities` at `now`.
pub fn check(
    spec: &ActivationRequestSpec,
    role: &PrivilegedRole,
    eligibilities: &[Eligibility],
    now: DateTime<Utc>,
) -> Result<Grant, Refusal> {
    let requester = spec
        .requester
        .clone()
        .expect("test request without requester");
    let eligibilities: Vec<&Eligibility> = eligibilities.iter().collect();
    validate(spec, &requester, role, &eligibilities, now)
}
