//! Property tests for the request lifecycle, through the public API only.
//!
//! A driver plays the controller: it applies each `Step` to a status and to the bindings in a
//! pretend cluster, while events happen in between (approvals and denials by arbitrary people,
//! including the requester and ServiceAccounts; time passing; Eligibilities and the PrivilegedRole
//! changing; cancel; the status write after an activation being lost). After every `decide`, the
//! step is checked against an oracle written here, independently of the policy code:
//!
//! 1. No `Activate`/`KeepActive` for a requester who is not eligible now, without enough distinct
//!    authorised approvals (none the requester's, none a ServiceAccount's) unless the role needs
//!    none, with an authorised denial, or at/after `expiresAt`.
//! 2. `expiresAt` never moves later once fixed, across restarts that lose the status write but
//!    leave the bindings with their expiry annotation.
//! 3. Every non-terminal step wakes after `now` and no later than its deadline (pending timeout,
//!    `startAt`, `expiresAt`, an eligibility's end), and left alone a request always ends.
//! 4. Bindings have exactly the requester as subject, the role's roleRef, and namespaces inside
//!    both the role's scope and an allowing eligibility's namespaces.
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::strategy::ValueTree;

use kubepim::time::{duration_from_k8s, from_k8s, truncate_to_second};

/// What the shared builders need.
mod deps {
    pub use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    pub use k8s_openapi::api::rbac::v1::Subject;
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    pub use kube::core::Duration as KubeDuration;
    pub use kubepim::api::{
        ActivationRequestSpec, ActivationRequestStatus, Approval, ApprovalPolicy, Approvers,
        BindingRef, Budget, Decision, Eligibility, EligibilitySpec, Phase, PrivilegedRole,
        PrivilegedRoleSpec, Requester, RequesterAttributeRequirement, RoleKind, RoleRef, Scope,
        SubjectRef,
    };
    pub use kubepim::policy::extension::Related;
    pub use kubepim::policy::lifecycle::{
        BindingKind, DesiredBinding, Input, ObservedBinding, Step, binding_name, decide,
    };
    pub use kubepim::policy::validation::{Grant, Refusal, validate};
    pub use kubepim::time::to_k8s;
}

#[path = "../src/policy/tests/builders.rs"]
mod builders;

use builders::*;
use deps::*;

const ROLE: &str = "r";
const REQUEST: &str = "req";
const SA_PREFIX: &str = "system:serviceaccount:";
/// People who may show up as approvers: the two possible requesters, listed and unlisted users,
/// and a ServiceAccount.
const PEOPLE: &[&str] = &[
    "alice",
    "system:serviceaccount:ci:deployer",
    "bob",
    "carol",
    "dave",
    "mallory",
    "system:serviceaccount:ops:bot",
];
const GROUP_SETS: &[&[&str]] = &[&[], &["sre-leads"], &["devs"]];

// ---------------------------------------------------------------------------------------------
// Generators

fn role_strategy() -> impl Strategy<Value = PrivilegedRole> {
    (
        0..3u8,
        subsequence(vec!["a", "b", "c"], 1..=3),
        prop_oneof![2 => Just(0u32), 4 => Just(1u32), 2 => Just(2u32), 1 => Just(3u32)],
        prop::bool::weighted(0.15),
        prop_oneof![
            3 => Just(vec!["bob", "carol"]),
            1 => subsequence(vec!["bob", "carol", "alice", "system:serviceaccount:ops:bot"], 0..=4),
        ],
        any::<bool>(),
        select(vec!["10m", "1h"]),
        select(vec!["1h", "4h"]),
        select(vec!["30m", "2h", "24h"]),
        select(vec!["admin", "edit"]),
    )
        .prop_map(
            |(
                shape,
                namespaces,
                required,
                break_glass,
                users,
                sre_leads,
                default,
                max,
                pending,
                target,
            )| {
                let groups: &[&str] = if sre_leads { &["sre-leads"] } else { &[] };
                let mut r = role(ROLE)
                    .cluster_role(target)
                    .approvers(&users, groups)
                    .required_approvals(required)
                    .default_duration(default)
                    .max_duration(max)
                    .pending_timeout(pending)
                    .justification_optional();
                r = match shape {
                    0 => r.cluster_wide(),
                    1 => r.namespaces(&namespaces),
                    _ => r.role_in("a", target),
                };
                if break_glass { r.break_glass() } else { r }
            },
        )
}

fn eligibility_strategy() -> impl Strategy<Value = Eligibility> {
    (
        select(vec![ROLE, ROLE, ROLE, "other"]),
        0..5u8,
        subsequence(vec!["a", "b", "c"], 0..=3),
        prop::option::weighted(0.3, select(vec!["30m", "2h"])),
        prop::option::weighted(0.3, -120i64..240),
        prop::option::weighted(0.4, -60i64..600),
    )
        .prop_map(
            |(role_name, subject, namespaces, max, not_before, not_after)| {
                let e = eligibility("e", role_name).namespaces(&namespaces);
                let e = match subject {
                    0 => e.users(&["alice"]),
                    1 => e.groups(&["devs"]),
                    2 => e.service_account("ci", "deployer"),
                    3 => e.users(&["bob"]),
                    _ => e.groups(&["system:serviceaccounts:ci"]),
                };
                let e = match max {
                    Some(m) => e.max_duration(m),
                    None => e,
                };
                let e = match not_before {
                    Some(nb) => e.not_before(at(nb)),
                    None => e,
                };
                match not_after {
                    // The schema wants notBefore < notAfter.
                    Some(na) if not_before.is_none_or(|nb| nb < na) => e.not_after(at(na)),
                    _ => e,
                }
            },
        )
}

/// Usually one eligibility that lets either requester in anywhere, plus arbitrary others.
fn eligibilities_strategy() -> impl Strategy<Value = Vec<Eligibility>> {
    (
        prop::bool::weighted(0.7),
        prop::collection::vec(eligibility_strategy(), 0..=3),
    )
        .prop_map(|(base, es)| {
            let base = base.then(|| {
                eligibility("e", ROLE)
                    .users(&["alice"])
                    .service_account("ci", "deployer")
            });
            base.into_iter()
                .chain(es)
                .enumerate()
                .map(|(i, mut e)| {
                    e.metadata.name = Some(format!("e{i}"));
                    e
                })
                .collect()
        })
}

fn spec_strategy() -> impl Strategy<Value = ActivationRequestSpec> {
    (
        any::<bool>(),
        prop_oneof![
            3 => Just(vec![]),
            2 => Just(vec!["a"]),
            1 => subsequence(vec!["a", "b", "c"], 1..=3),
        ],
        prop::option::of(select(vec!["1s", "10m", "1h", "3h"])),
        prop::option::weighted(0.3, 0i64..240),
    )
        .prop_map(|(is_sa, namespaces, duration, start)| {
            let requester = if is_sa {
                sa("ci", "deployer")
            } else {
                user("alice").in_groups(&["devs"])
            };
            let s = request(ROLE).by(&requester).namespaces(&namespaces);
            let s = match duration {
                Some(d) => s.duration(d),
                None => s,
            };
            match start {
                Some(m) => s.start_at(at(m)),
                None => s,
            }
        })
}

#[derive(Debug, Clone)]
enum Event {
    /// Someone appends a decision (the API keeps one entry per approver).
    Decide {
        who: usize,
        groups: usize,
        approve: bool,
    },
    Cancel,
    /// The controller crashed after its last writes to bindings but before its status write.
    LoseStatusWrite,
    SetEligibilities(Vec<Eligibility>),
    /// GitOps edits the PrivilegedRole.
    EditRole(RoleEdit),
    /// Someone who may create RoleBindings creates one labelled for the request, with an
    /// `expires-at` annotation of their choosing (minutes from now).
    ForgeBinding {
        namespace: Option<&'static str>,
        expires_in: i64,
    },
    /// Just time passing.
    Tick,
}

#[derive(Debug, Clone)]
enum RoleEdit {
    RequiredApprovals(u32),
    Approvers(Vec<&'static str>),
    ClusterWide,
    Namespaces(Vec<&'static str>),
    RoleRefName(&'static str),
    BreakGlass,
    Replace(Box<PrivilegedRole>),
    Delete,
}

fn role_edit_strategy() -> impl Strategy<Value = RoleEdit> {
    prop_oneof![
        (0u32..=3).prop_map(RoleEdit::RequiredApprovals),
        subsequence(vec!["bob", "carol", "dave"], 0..=3).prop_map(RoleEdit::Approvers),
        Just(RoleEdit::ClusterWide),
        subsequence(vec!["a", "b", "c"], 1..=3).prop_map(RoleEdit::Namespaces),
        select(vec!["admin", "edit"]).prop_map(RoleEdit::RoleRefName),
        Just(RoleEdit::BreakGlass),
        role_strategy().prop_map(|r| RoleEdit::Replace(Box::new(r))),
        Just(RoleEdit::Delete),
    ]
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        16 => (0..PEOPLE.len(), 0..GROUP_SETS.len(), prop::bool::weighted(0.8))
            .prop_map(|(who, groups, approve)| Event::Decide { who, groups, approve }),
        1 => Just(Event::Cancel),
        4 => Just(Event::LoseStatusWrite),
        3 => eligibilities_strategy().prop_map(Event::SetEligibilities),
        5 => role_edit_strategy().prop_map(Event::EditRole),
        2 => (prop::option::of(select(vec!["a", "b"])), -60i64..100_000)
            .prop_map(|(namespace, expires_in)| Event::ForgeBinding { namespace, expires_in }),
        6 => Just(Event::Tick),
    ]
}

/// Time passing before an event: seconds (with a sub-second part, to exercise truncation).
fn advance_strategy() -> impl Strategy<Value = TimeDelta> {
    prop_oneof![
        6 => (0i64..120, 0i64..1000).prop_map(|(s, ms)| TimeDelta::seconds(s) + TimeDelta::milliseconds(ms)),
        6 => (1i64..20).prop_map(TimeDelta::minutes),
        1 => (1i64..30).prop_map(TimeDelta::hours),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    role: PrivilegedRole,
    eligibilities: Vec<Eligibility>,
    spec: ActivationRequestSpec,
    events: Vec<(TimeDelta, Event)>,
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (
        role_strategy(),
        eligibilities_strategy(),
        spec_strategy(),
        prop::bool::weighted(0.7),
        prop::collection::vec((advance_strategy(), event_strategy()), 0..20),
    )
        .prop_map(|(role, eligibilities, mut spec, fits, events)| {
            // Mostly ask for namespaces the role allows, so that requests get somewhere.
            if fits {
                let scope = &role.spec.scope.namespaces;
                spec.namespaces = match scope.len() {
                    0 | 1 => vec![],
                    _ => scope
                        .iter()
                        .filter(|ns| spec.namespaces.contains(ns))
                        .cloned()
                        .collect(),
                };
                if spec.namespaces.is_empty() && scope.len() > 1 {
                    spec.namespaces = vec![scope[0].clone()];
                }
            }
            Scenario {
                role,
                eligibilities,
                spec,
                events,
            }
        })
}

// ---------------------------------------------------------------------------------------------
// The oracle: an independent, deliberately plain reading of the rules.

fn requester_of(w: &World) -> &Requester {
    w.spec.requester.as_ref().expect("requester")
}

fn names_requester(e: &Eligibility, r: &Requester) -> bool {
    let is_sa = r.username.starts_with(SA_PREFIX);
    e.spec.subjects.iter().any(|s| match s.kind {
        SubjectKindAlias::User => !is_sa && s.name == r.username,
        SubjectKindAlias::Group => r.groups.contains(&s.name),
        SubjectKindAlias::ServiceAccount => {
            r.username
                == format!(
                    "{SA_PREFIX}{}:{}",
                    s.namespace.as_deref().unwrap_or_default(),
                    s.name
                )
        }
    })
}

use kubepim::api::SubjectKind as SubjectKindAlias;

fn within(e: &Eligibility, now: DateTime<Utc>) -> bool {
    e.spec
        .not_before
        .as_ref()
        .is_none_or(|nb| from_k8s(nb) <= now)
        && e.spec
            .not_after
            .as_ref()
            .is_none_or(|na| now < from_k8s(na))
}

fn requested(w: &World, role: &PrivilegedRole) -> TimeDelta {
    duration_from_k8s(
        w.spec
            .duration
            .as_ref()
            .unwrap_or(&role.spec.default_duration),
    )
}

/// Eligibilities that allow exactly this grant (these namespaces, this duration) at `now`.
fn allowing<'a>(
    w: &'a World,
    role: &PrivilegedRole,
    namespaces: &[String],
    now: DateTime<Utc>,
) -> Vec<&'a Eligibility> {
    let duration = requested(w, role);
    w.eligibilities
        .iter()
        .filter(|e| e.spec.role == ROLE && names_requester(e, requester_of(w)) && within(e, now))
        .filter(|e| {
            e.spec.namespaces.is_empty()
                || (!namespaces.is_empty()
                    && namespaces.iter().all(|ns| e.spec.namespaces.contains(ns)))
        })
        .filter(|e| {
            e.spec
                .max_duration
                .as_ref()
                .is_none_or(|m| duration <= duration_from_k8s(m))
        })
        .collect()
}

fn authorised(role: &PrivilegedRole, approver: &str, groups: &[String], requester: &str) -> bool {
    let a = &role.spec.approval.approvers;
    approver != requester
        && !approver.starts_with(SA_PREFIX)
        && (a.users.iter().any(|u| u == approver) || groups.iter().any(|g| a.groups.contains(g)))
}

/// (distinct authorised approvals, any authorised denial).
fn count_approvals(w: &World, role: &PrivilegedRole) -> (usize, bool) {
    let requester = &requester_of(w).username;
    let mut approvers: Vec<&str> = Vec::new();
    let mut denied = false;
    for a in &w.status.approvals {
        if !authorised(role, &a.approver, &a.groups, requester) {
            continue;
        }
        match a.decision {
            Decision::Approved => {
                if !approvers.contains(&a.approver.as_str()) {
                    approvers.push(&a.approver);
                }
            }
            Decision::Denied => denied = true,
        }
    }
    (approvers.len(), denied)
}

fn expected_subject(r: &Requester) -> Subject {
    match r
        .username
        .strip_prefix(SA_PREFIX)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, name)) => Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: Some(ns.into()),
            api_group: None,
        },
        None => Subject {
            kind: "User".into(),
            name: r.username.clone(),
            namespace: None,
            api_group: Some("rbac.authorization.k8s.io".into()),
        },
    }
}

/// Properties 1 and 4 for a step that grants.
fn check_grant(
    w: &World,
    now: DateTime<Utc>,
    is_new: bool,
    expires_at: DateTime<Utc>,
    bindings: &[DesiredBinding],
) -> Result<(), String> {
    let role = w.role.as_ref().ok_or("grants without a PrivilegedRole")?;
    if now >= expires_at {
        return Err(format!(
            "grants at {now}, at or after expiresAt {expires_at}"
        ));
    }
    if w.spec.cancel {
        return Err("grants a cancelled request".into());
    }
    let mut namespaces: Vec<String> = bindings
        .iter()
        .filter_map(|b| b.namespace.clone())
        .collect();
    namespaces.sort();
    let allow = allowing(w, role, &namespaces, now);
    if allow.is_empty() {
        return Err(format!(
            "requester not eligible at {now} for namespaces {namespaces:?}"
        ));
    }
    let (approvals, denied) = count_approvals(w, role);
    if denied {
        return Err("grants despite an authorised denial".into());
    }
    let required = if role.spec.break_glass {
        0
    } else {
        role.spec.approval.required_approvals
    };
    if approvals < required as usize {
        return Err(format!("grants with {approvals} of {required} approvals"));
    }
    // Expiry: a new grant lasts no longer than the duration asked for (a kept one keeps the expiry
    // it was given, which property 2 checks), nor beyond the latest end of an allowing eligibility.
    if is_new && expires_at > now + requested(w, role) {
        return Err(format!(
            "expiresAt {expires_at} is more than the duration from now {now}"
        ));
    }
    // (A kept grant keeps its expiry when its eligibilities change; it wakes at their end instead,
    // which property 3 checks.)
    if is_new && allow.iter().all(|e| e.spec.not_after.is_some()) {
        let end = allow
            .iter()
            .filter_map(|e| e.spec.not_after.as_ref().map(from_k8s))
            .max()
            .unwrap();
        if expires_at > end {
            return Err(format!(
                "expiresAt {expires_at} after the eligibility ends at {end}"
            ));
        }
    }

    // Property 4: the shape of what is bound.
    let subject = expected_subject(requester_of(w));
    let role_ref = &role.spec.role_ref;
    if bindings.is_empty() {
        return Err("grants nothing".into());
    }
    let mut seen = Vec::new();
    for b in bindings {
        if b.subject != subject {
            return Err(format!("binding subject {:?}, want {subject:?}", b.subject));
        }
        if b.role_kind != role_ref.kind || b.role_name != role_ref.name {
            return Err(format!(
                "binding roleRef {:?} {}, want {:?}",
                b.role_kind, b.role_name, role_ref
            ));
        }
        if b.name != binding_name(REQUEST) || b.name.len() > 253 {
            return Err(format!("binding name {}", b.name));
        }
        match (&b.kind, &b.namespace) {
            (BindingKind::ClusterRoleBinding, None) => {
                if !role.spec.scope.cluster_wide
                    || role_ref.kind != RoleKind::ClusterRole
                    || bindings.len() != 1
                {
                    return Err(format!(
                        "ClusterRoleBinding for a role that is not cluster-wide: {role:?}"
                    ));
                }
            }
            (BindingKind::RoleBinding, Some(ns)) => {
                if role.spec.scope.cluster_wide || !role.spec.scope.namespaces.contains(ns) {
                    return Err(format!("RoleBinding in {ns}, outside the role's scope"));
                }
                if role_ref.kind == RoleKind::Role && role_ref.namespace.as_deref() != Some(ns) {
                    return Err(format!("Role {:?} bound in {ns}", role_ref.namespace));
                }
                if !w.spec.namespaces.is_empty() && !w.spec.namespaces.contains(ns) {
                    return Err(format!(
                        "RoleBinding in {ns}, which the request did not ask for"
                    ));
                }
            }
            other => return Err(format!("malformed binding {other:?}")),
        }
        if seen.contains(&(&b.kind, &b.namespace)) {
            return Err("the same binding twice".into());
        }
        seen.push((&b.kind, &b.namespace));
    }
    Ok(())
}

/// Property 3: when a non-terminal step must be looked at again.
fn check_wake(w: &World, now: DateTime<Utc>, step: &Step) -> Result<(), String> {
    let wake = match step {
        Step::End { .. } | Step::Settled => return Ok(()),
        other => other
            .wake_at()
            .ok_or("non-terminal step without a wake time")?,
    };
    if wake <= now {
        return Err(format!("wake {wake} is not after now {now}"));
    }
    let role = w.role.as_ref().ok_or("non-terminal without a role")?;
    let deadline = match step {
        Step::Wait {
            phase: Phase::Pending,
            ..
        } => truncate_to_second(
            w.created_at + duration_from_k8s(&role.spec.approval.pending_timeout),
        ),
        Step::Wait {
            phase: Phase::Scheduled,
            ..
        } => from_k8s(
            w.spec
                .start_at
                .as_ref()
                .ok_or("scheduled without startAt")?,
        ),
        Step::Wait { phase, .. } => return Err(format!("waits in phase {phase}")),
        Step::Activate { activation, .. } | Step::KeepActive { activation, .. } => {
            activation.expires_at
        }
        _ => unreachable!(),
    };
    if wake > deadline {
        return Err(format!("wake {wake} is after the deadline {deadline}"));
    }
    // And no later than the first end of an eligibility the grant rests on.
    let namespaces: Vec<String> = match step {
        Step::Activate { bindings, .. } | Step::KeepActive { bindings, .. } => {
            let mut ns: Vec<String> = bindings
                .iter()
                .filter_map(|b| b.namespace.clone())
                .collect();
            ns.sort();
            ns
        }
        _ => return Ok(()),
    };
    if let Some(end) = allowing(w, role, &namespaces, now)
        .iter()
        .filter_map(|e| e.spec.not_after.as_ref().map(from_k8s))
        .min()
        && wake > end
    {
        return Err(format!("wake {wake} is after eligibility end {end}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The driver: a controller that applies steps, with lost status writes.

struct Driver {
    w: World,
    now: DateTime<Utc>,
    /// The status before the last write, to lose that write.
    before_last_write: Option<ActivationRequestStatus>,
    /// The earliest expiry ever fixed, while some record of it (status or binding) survives.
    fixed: Option<DateTime<Utc>>,
    initial_role: PrivilegedRole,
    log: Vec<String>,
}

impl Driver {
    fn new(s: &Scenario) -> Self {
        let mut w = world(REQUEST, s.spec.clone(), s.role.clone(), &s.eligibilities);
        w.created_at = t0();
        Driver {
            w,
            now: t0(),
            before_last_write: None,
            fixed: None,
            initial_role: s.role.clone(),
            log: vec![],
        }
    }

    fn record(&self) -> Option<DateTime<Utc>> {
        let from_status = (self.w.status.phase == Some(Phase::Active))
            .then(|| self.w.status.expires_at.as_ref().map(from_k8s))
            .flatten();
        [
            from_status,
            self.w.observed.iter().filter_map(|b| b.expires_at).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn event(&mut self, e: &Event) {
        self.log.push(format!("{} {e:?}", self.now));
        match e {
            Event::Decide {
                who,
                groups,
                approve,
            } => {
                let who = PEOPLE[*who];
                // Nothing is appended once the request is terminal (admission), nor twice per person.
                let terminal = self.w.status.phase.is_some_and(Phase::is_terminal);
                if !terminal && !self.w.status.approvals.iter().any(|a| a.approver == who) {
                    let a = if *approve {
                        approved_by(who)
                    } else {
                        denied_by(who, "no")
                    };
                    self.w
                        .status
                        .approvals
                        .push(a.in_groups(GROUP_SETS[*groups]));
                }
            }
            Event::Cancel => self.w.spec.cancel = true,
            Event::LoseStatusWrite => {
                if let Some(before) = self.before_last_write.take() {
                    // Approvals are the approvers' own writes: they are not lost.
                    let approvals = std::mem::take(&mut self.w.status.approvals);
                    self.w.status = before;
                    self.w.status.approvals = approvals;
                }
            }
            Event::SetEligibilities(es) => self.w.eligibilities = es.clone(),
            Event::EditRole(edit) => {
                let Some(role) = self.w.role.take() else {
                    // A deleted role comes back as it was first generated.
                    self.w.role = Some(self.initial_role.clone());
                    return;
                };
                self.w.role = match edit {
                    RoleEdit::RequiredApprovals(n) => Some(role.required_approvals(*n)),
                    RoleEdit::Approvers(users) => Some(role.approvers(users, &[])),
                    RoleEdit::ClusterWide => Some(role.cluster_wide()),
                    RoleEdit::Namespaces(ns) => Some(role.namespaces(ns)),
                    RoleEdit::RoleRefName(name) => {
                        let mut role = role;
                        role.spec.role_ref.name = name.to_string();
                        Some(role)
                    }
                    RoleEdit::BreakGlass => Some(role.break_glass()),
                    RoleEdit::Replace(r) => Some((**r).clone()),
                    RoleEdit::Delete => None,
                };
            }
            Event::ForgeBinding {
                namespace,
                expires_in,
            } => {
                let subject = expected_subject(requester_of(&self.w));
                let expires = Some(self.now + TimeDelta::minutes(*expires_in));
                let forged = match (namespace, &self.w.role) {
                    (Some(ns), Some(r)) => {
                        let kind = if r.spec.role_ref.kind == RoleKind::Role {
                            "Role"
                        } else {
                            "ClusterRole"
                        };
                        observed_rb(REQUEST, ns, kind, &r.spec.role_ref.name, subject, expires)
                    }
                    (_, role) => {
                        let name = role
                            .as_ref()
                            .map_or("admin".to_string(), |r| r.spec.role_ref.name.clone());
                        observed_crb(REQUEST, &name, subject, expires)
                    }
                };
                // Created, not updated: an existing binding of that name stays as it is.
                if !self
                    .w
                    .observed
                    .iter()
                    .any(|o| o.kind == forged.kind && o.namespace == forged.namespace)
                {
                    self.w.observed.push(forged);
                }
            }
            Event::Tick => {}
        }
    }

    /// Decides at the current time, checks the step, applies it like the controller would.
    fn step(&mut self) -> Result<Step, String> {
        if self.record().is_none() {
            self.fixed = None;
        }
        let step = self.w.decide_at(self.now);
        self.log.push(format!("{} -> {step:?}", self.now));
        let context = || format!("at {}: {step:?}", self.now);
        match &step {
            Step::Activate {
                activation,
                bindings,
                ..
            }
            | Step::KeepActive {
                activation,
                bindings,
                ..
            } => {
                let is_new = matches!(step, Step::Activate { .. });
                check_grant(&self.w, self.now, is_new, activation.expires_at, bindings)
                    .map_err(|e| format!("{e} ({})", context()))?;
                // Property 2.
                if let Some(fixed) = self.fixed
                    && activation.expires_at > fixed
                {
                    return Err(format!(
                        "expiresAt moved from {fixed} to {} ({})",
                        activation.expires_at,
                        context()
                    ));
                }
                if let Step::KeepActive { bindings, .. } = &step {
                    if self.w.status.phase != Some(Phase::Active) {
                        return Err(format!(
                            "KeepActive for a request that is not Active ({})",
                            context()
                        ));
                    }
                    // What was granted is never moved or widened afterwards.
                    if refs(bindings) != self.w.status.bindings {
                        return Err(format!(
                            "the grant moved from {:?} ({})",
                            self.w.status.bindings,
                            context()
                        ));
                    }
                }
            }
            _ => {}
        }
        check_wake(&self.w, self.now, &step).map_err(|e| format!("{e} ({})", context()))?;
        self.apply(&step);
        Ok(step)
    }

    fn apply(&mut self, step: &Step) {
        let before = self.w.status.clone();
        match step {
            Step::Wait { phase, .. } => {
                // Nothing is granted while waiting.
                self.w.observed.clear();
                self.w.status.phase = Some(*phase);
            }
            Step::Activate {
                activation,
                bindings,
                ..
            }
            | Step::KeepActive {
                activation,
                bindings,
                ..
            } => {
                // Keep what already grants exactly what is desired *and carries the activation's
                // expiry* (the annotation is what a restart recovers the expiry from), replace the
                // rest, create what is missing.
                let desired_now = as_observed(bindings, activation.expires_at);
                let mut kept: Vec<ObservedBinding> = self
                    .w
                    .observed
                    .iter()
                    .filter(|o| {
                        bindings.iter().any(|d| d.is_satisfied_by(o))
                            && o.expires_at == Some(activation.expires_at)
                    })
                    .cloned()
                    .collect();
                for d in desired_now {
                    if !kept
                        .iter()
                        .any(|k| k.kind == d.kind && k.namespace == d.namespace && k.name == d.name)
                    {
                        kept.push(d);
                    }
                }
                self.w.observed = kept;
                self.w.status.phase = Some(Phase::Active);
                self.w.status.activated_at = Some(to_k8s(activation.activated_at));
                self.w.status.expires_at = Some(to_k8s(activation.expires_at));
                self.w.status.bindings = refs(bindings);
                self.fixed = Some(
                    self.fixed
                        .map_or(activation.expires_at, |f| f.min(activation.expires_at)),
                );
            }
            Step::End { phase, .. } => {
                self.w.observed.clear();
                self.w.status.phase = Some(*phase);
            }
            Step::Settled => self.w.observed.clear(),
        }
        if self.w.status != before {
            self.before_last_write = Some(before);
        }
    }

    fn fail(&self, why: String) -> TestCaseError {
        TestCaseError::fail(format!("{why}\nhistory:\n  {}", self.log.join("\n  ")))
    }
}

/// Plays a scenario; then, left alone, follows the wake times until the request ends.
fn play(s: &Scenario) -> Result<Driver, TestCaseError> {
    let mut d = Driver::new(s);
    d.step().map_err(|e| d.fail(e))?;
    for (advance, event) in &s.events {
        d.now += *advance;
        d.event(event);
        d.step().map_err(|e| d.fail(e))?;
    }
    // Property 3, liveness: following the wake times, every request ends, and at its deadline.
    for _ in 0..12 {
        let step = d.w.decide_at(d.now);
        match step.wake_at() {
            None => return Ok(d),
            Some(wake) => {
                d.now = wake.max(d.now);
                d.step().map_err(|e| d.fail(e))?;
            }
        }
    }
    let last = d.w.decide_at(d.now);
    if matches!(last, Step::End { .. } | Step::Settled) {
        Ok(d)
    } else {
        Err(d.fail(format!("still {last:?} after following 12 wake times")))
    }
}

/// 768 cases by default (a few seconds on two cores); `PROPTEST_CASES=20000` for a deep run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(768);
    ProptestConfig {
        cases,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Properties 1–4 over arbitrary event sequences with lost status writes.
    #[test]
    fn lifecycle_invariants_hold(s in scenario_strategy()) {
        play(&s)?;
    }

    /// Property 2, strictly: without lost writes a request is activated at most once, and its
    /// expiry never changes afterwards.
    #[test]
    fn expiry_is_fixed_once(s in scenario_strategy()) {
        let mut s = s;
        s.events.retain(|(_, e)| !matches!(e, Event::LoseStatusWrite));
        let mut d = Driver::new(&s);
        let mut first: Option<DateTime<Utc>> = None;
        let mut activations = 0;
        let mut check = |d: &mut Driver| -> Result<(), TestCaseError> {
            let step = d.step().map_err(|e| d.fail(e))?;
            match step {
                Step::Activate { activation, .. } => {
                    activations += 1;
                    if activations > 1 {
                        return Err(d.fail("activated twice".into()));
                    }
                    first = Some(activation.expires_at);
                }
                Step::KeepActive { activation, .. } if Some(activation.expires_at) > first => {
                    return Err(d.fail(format!("expiry moved from {first:?} to {}", activation.expires_at)));
                }
                _ => {}
            }
            Ok(())
        };
        check(&mut d)?;
        for (advance, event) in &s.events {
            d.now += *advance;
            d.event(event);
            check(&mut d)?;
        }
    }

    /// A crash right after creating the bindings, then a restart at any later time: the
    /// activation is finished with the bindings' expiry, or ends; it is never granted longer.
    #[test]
    fn restart_after_lost_activation_never_extends(
        role in role_strategy(),
        eligibilities in eligibilities_strategy(),
        spec in spec_strategy(),
        first in 0i64..600,
        later in prop::collection::vec(0i64..7200, 1..6),
    ) {
        let s = Scenario { role: role.no_approval_required(), eligibilities, spec, events: vec![] };
        let mut d = Driver::new(&s);
        d.now = at_s(first);
        let Step::Activate { activation, .. } = d.step().map_err(|e| d.fail(e))? else {
            return Ok(());
        };
        let fixed = activation.expires_at;
        for secs in later {
            d.event(&Event::LoseStatusWrite);
            d.now += TimeDelta::seconds(secs);
            match d.step().map_err(|e| d.fail(e))? {
                Step::Activate { activation, .. } | Step::KeepActive { activation, .. } => {
                    prop_assert!(activation.expires_at <= fixed, "{} > {fixed}", activation.expires_at);
                }
                Step::End { .. } | Step::Settled => break,
                Step::Wait { .. } => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binding names, over arbitrary request names.

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn binding_names_are_bounded_deterministic_and_distinct(
        a in "[a-z0-9]([-a-z0-9.]{0,300}[a-z0-9])?",
        b in "[a-z0-9]([-a-z0-9.]{0,300}[a-z0-9])?",
    ) {
        let (na, nb) = (binding_name(&a), binding_name(&b));
        prop_assert!(na.len() <= 253 && nb.len() <= 253);
        prop_assert_eq!(&na, &binding_name(&a));
        prop_assert!(na.starts_with("kubepim-"));
        prop_assert!(!na.ends_with('-') && !na.ends_with('.'));
        // A plain name is never a shortened one: those carry a `:` no request name has.
        prop_assert_eq!(na.contains(':'), a.len() > 253 - "kubepim-".len());
        if a != b {
            prop_assert_ne!(na, nb);
        }
    }
}

/// A sanity check of the oracle itself, so that the properties do not pass vacuously.
#[test]
fn the_driver_reaches_every_kind_of_step() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let kinds = [
        "Wait { phase: Pending",
        "Wait { phase: Scheduled",
        "Activate",
        "KeepActive",
        "End { phase: Expired, reason: \"DurationElapsed",
        "End { phase: Expired, reason: \"NotApproved",
        "End { phase: Denied, reason: \"DeniedByApprover",
        "End { phase: Denied, reason: \"NotEligible",
        "End { phase: Revoked",
        "End { phase: Cancelled",
        "Settled",
    ];
    let mut seen = std::collections::BTreeMap::new();
    let runs = 300;
    for _ in 0..runs {
        let s = scenario_strategy().new_tree(&mut runner).unwrap().current();
        let d = play(&s).unwrap_or_else(|e| panic!("{e}"));
        for kind in kinds {
            if d.log
                .iter()
                .any(|line| line.contains(&format!("-> {kind}")))
            {
                *seen.entry(kind).or_insert(0) += 1;
            }
        }
    }
    // Each kind of step shows up in a fair share of the runs.
    for kind in kinds {
        let n = seen.get(kind).copied().unwrap_or(0);
        assert!(
            n * 50 >= runs,
            "{kind} in only {n} of {runs} runs: {seen:#?}"
        );
    }
}
