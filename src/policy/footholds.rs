//! Footholds: what a requester could leave behind that keeps giving access after the grant ends
//! (a RoleBinding to themselves, a ServiceAccount with a binding and a token). Judged at the
//! grant's end from the objects the scan found in the granted scope, created inside the grant's
//! window. Without the API server's audit record nobody can say who created an object, so a scan
//! finding is "created while the grant ran, where it reached" — less precise than an audit
//! trail, and said so.
use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::Subject;

use crate::api::conditions::FOOTHOLDS_FOUND;
use crate::api::{ActivationRequestStatus, FootholdRef, NotableWrite};
use crate::time::from_k8s;

use super::identity::service_account_parts;
use super::reasons;
use super::status::set_condition_to;

/// An object the scan found, reduced to what the judgement needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub kind: FoundKind,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// For bindings: who they bind.
    pub subjects: Vec<Subject>,
    /// Carries kubepim's managed label (the binding guard's business, never a foothold).
    pub managed: bool,
    /// For a CertificateSigningRequest: who asked for it (`spec.username`, which the API server
    /// sets from the creator's credentials: the one attribution a scan can trust).
    pub requested_by: Option<String>,
    /// For a Pod: the ServiceAccount it runs as.
    pub service_account: Option<String>,
}

impl Found {
    /// An object of `kind` with nothing but its identity and creation time.
    pub fn new(
        kind: FoundKind,
        namespace: Option<String>,
        name: String,
        created_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            kind,
            namespace,
            name,
            uid: None,
            created_at,
            subjects: vec![],
            managed: false,
            requested_by: None,
            service_account: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FoundKind {
    RoleBinding,
    ClusterRoleBinding,
    Role,
    ServiceAccount,
    /// A Secret of type `kubernetes.io/service-account-token`.
    TokenSecret,
    /// A client certificate asked for (cluster-wide grants: CSRs are cluster-scoped).
    CertificateSigningRequest,
    ValidatingWebhookConfiguration,
    MutatingWebhookConfiguration,
    /// A workload's pod, judged by the ServiceAccount it runs as.
    Pod,
    /// A ServiceAccount token the requester minted (TokenRequest): no object to delete, valid
    /// until it expires. Known only from the audit record.
    TokenRequest,
    /// An exec, attach or port-forward stream: RBAC revocation does not close an open stream.
    /// Known only from the audit record.
    Stream,
    /// Any other notable write the audit record holds (a ValidatingAdmissionPolicy, …).
    Write,
}

impl FoundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FoundKind::RoleBinding => "RoleBinding",
            FoundKind::ClusterRoleBinding => "ClusterRoleBinding",
            FoundKind::Role => "Role",
            FoundKind::ServiceAccount => "ServiceAccount",
            FoundKind::TokenSecret => "Secret",
            FoundKind::CertificateSigningRequest => "CertificateSigningRequest",
            FoundKind::ValidatingWebhookConfiguration => "ValidatingWebhookConfiguration",
            FoundKind::MutatingWebhookConfiguration => "MutatingWebhookConfiguration",
            FoundKind::Pod => "Pod",
            FoundKind::TokenRequest => "ServiceAccount token",
            FoundKind::Stream => "stream",
            FoundKind::Write => "write",
        }
    }
}

/// One foothold, with why it counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Foothold {
    pub found: Found,
    pub why: &'static str,
}

impl Foothold {
    /// What the request's status keeps of it.
    pub fn reference(&self) -> FootholdRef {
        FootholdRef {
            kind: self.found.kind.as_str().into(),
            namespace: self.found.namespace.clone(),
            name: self.found.name.chars().take(512).collect(),
            uid: self.found.uid.clone(),
            why: self.why.into(),
        }
    }

    /// `RoleBinding payments/edit-me`.
    pub fn describe(&self) -> String {
        let f = &self.found;
        match &f.namespace {
            Some(ns) => format!("{} {ns}/{}", f.kind.as_str(), f.name),
            None => format!("{} {}", f.kind.as_str(), f.name),
        }
    }
}

/// The grant whose end is judged.
#[derive(Debug, Clone)]
pub struct GrantWindow<'a> {
    pub requester: &'a str,
    pub groups: &'a [String],
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl GrantWindow<'_> {
    /// Created while the grant ran (a second of slack: creation timestamps are whole seconds).
    fn covers(&self, at: Option<DateTime<Utc>>) -> bool {
        at.is_some_and(|at| {
            at >= self.from - chrono::Duration::seconds(1)
                && at <= self.until + chrono::Duration::seconds(1)
        })
    }
}

/// The footholds among `found`: bindings made during the grant to the requester, one of their
/// groups, or a ServiceAccount made during the grant; those ServiceAccounts and their token
/// Secrets; Roles made during the grant; certificates the requester asked for; admission webhook
/// configurations made during the grant; pods running as a ServiceAccount made during the grant.
/// kubepim's own bindings never count.
pub fn judge(found: &[Found], grant: &GrantWindow<'_>) -> Vec<Foothold> {
    let new: Vec<&Found> = found
        .iter()
        .filter(|f| !f.managed && grant.covers(f.created_at))
        .collect();
    let new_service_account = |namespace: &str, name: &str| {
        new.iter().any(|f| {
            f.kind == FoundKind::ServiceAccount
                && f.namespace.as_deref() == Some(namespace)
                && f.name == name
        })
    };
    let mut footholds = Vec::new();
    for f in &new {
        let why = match f.kind {
            FoundKind::RoleBinding | FoundKind::ClusterRoleBinding => {
                f.subjects.iter().find_map(|s| match s.kind.as_str() {
                    "User" if s.name == grant.requester => Some("binds the requester"),
                    "Group" if grant.groups.contains(&s.name) => {
                        Some("binds a group of the requester")
                    }
                    "ServiceAccount"
                        if s.namespace
                            .as_deref()
                            .is_some_and(|ns| new_service_account(ns, &s.name)) =>
                    {
                        Some("binds a ServiceAccount created during the grant")
                    }
                    "User" => service_account_parts(&s.name)
                        .filter(|(ns, name)| new_service_account(ns, name))
                        .map(|_| "binds a ServiceAccount created during the grant"),
                    _ => None,
                })
            }
            FoundKind::ServiceAccount => Some("created during the grant"),
            FoundKind::TokenSecret => Some("a long-lived token created during the grant"),
            FoundKind::Role => Some("created during the grant"),
            FoundKind::CertificateSigningRequest => (f.requested_by.as_deref()
                == Some(grant.requester))
            .then_some("a client certificate the requester asked for during the grant"),
            FoundKind::ValidatingWebhookConfiguration | FoundKind::MutatingWebhookConfiguration => {
                Some("an admission webhook created during the grant (sees or changes API writes)")
            }
            // Only ever made by `from_audit`, which sets its own reasons.
            FoundKind::TokenRequest | FoundKind::Stream | FoundKind::Write => None,
            FoundKind::Pod => f
                .namespace
                .as_deref()
                .zip(f.service_account.as_deref())
                .filter(|(ns, sa)| new_service_account(ns, sa))
                .map(|_| "runs as a ServiceAccount created during the grant"),
        };
        if let Some(why) = why {
            footholds.push(Foothold {
                found: (*f).clone(),
                why,
            });
        }
    }
    footholds.sort_by(|a, b| {
        (a.found.kind, &a.found.namespace, &a.found.name).cmp(&(
            b.found.kind,
            &b.found.namespace,
            &b.found.name,
        ))
    });
    footholds
}

/// The footholds the audit record shows: what the requester themselves created, changed or opened
/// during the grant and the API server accepted (2xx; 101 for a stream). Precise where the scan can only guess:
/// the audit record names the creator.
pub fn from_audit(writes: &[NotableWrite]) -> Vec<Foothold> {
    let mut out = Vec::new();
    for w in writes {
        // Accepted: 2xx, or 101 for a stream the API server upgraded.
        if !w.code.is_some_and(|c| (200..300).contains(&c) || c == 101) {
            continue;
        }
        let (base, sub) = w.resource.split_once('/').unwrap_or((&w.resource, ""));
        let making = matches!(w.verb.as_str(), "create" | "update" | "patch");
        let (kind, why) = match (base, sub) {
            ("pods", "exec" | "attach" | "portforward") => (
                FoundKind::Stream,
                "a stream the requester opened (RBAC revocation does not close it: possibly still open)",
            ),
            ("serviceaccounts", "token") => (
                FoundKind::TokenRequest,
                "a token the requester minted (valid until it expires; it cannot be deleted)",
            ),
            _ if !making => continue,
            ("rolebindings.rbac.authorization.k8s.io", "") => (
                FoundKind::RoleBinding,
                "made by the requester (audit record)",
            ),
            ("clusterrolebindings.rbac.authorization.k8s.io", "") => (
                FoundKind::ClusterRoleBinding,
                "made by the requester (audit record)",
            ),
            ("roles.rbac.authorization.k8s.io" | "clusterroles.rbac.authorization.k8s.io", "") => (
                FoundKind::Role,
                "made or changed by the requester (audit record)",
            ),
            ("serviceaccounts", "") => (
                FoundKind::ServiceAccount,
                "made by the requester (audit record)",
            ),
            ("secrets", "") => (
                FoundKind::TokenSecret,
                "a Secret the requester wrote (audit record; it may hold a token)",
            ),
            ("certificatesigningrequests.certificates.k8s.io", _) => (
                FoundKind::CertificateSigningRequest,
                "a certificate the requester asked for (audit record)",
            ),
            (
                "validatingwebhookconfigurations.admissionregistration.k8s.io"
                | "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                "",
            ) => (
                FoundKind::ValidatingWebhookConfiguration,
                "an admission webhook the requester wrote (audit record)",
            ),
            _ => (
                FoundKind::Write,
                "a write the requester made (audit record)",
            ),
        };
        let name = match kind {
            FoundKind::Stream | FoundKind::TokenRequest | FoundKind::Write => format!(
                "{} {}{}",
                w.verb,
                w.resource,
                w.name
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default()
            ),
            _ => w.name.clone().unwrap_or_default(),
        };
        out.push(Foothold {
            found: Found::new(kind, w.namespace.clone(), name, Some(from_k8s(&w.time))),
            why,
        });
    }
    out
}

/// The scan's footholds and the audit record's together: an object both found is listed once,
/// with the audit record's (precise) reason and the scan's uid.
pub fn merged(scanned: Vec<Foothold>, audited: Vec<Foothold>) -> Vec<Foothold> {
    let same = |a: &Foothold, b: &Foothold| {
        a.found.namespace == b.found.namespace
            && a.found.name == b.found.name
            && a.found.kind.as_str() == b.found.kind.as_str()
    };
    let mut out = audited;
    for s in scanned {
        match out.iter_mut().find(|a| same(a, &s)) {
            // The audit record names the object; the scan saw which one (its uid), which a
            // removal is made conditional on.
            Some(a) => {
                if a.found.uid.is_none() {
                    a.found.uid = s.found.uid;
                }
            }
            None => out.push(s),
        }
    }
    out.sort_by(|a, b| {
        (a.found.kind, &a.found.namespace, &a.found.name).cmp(&(
            b.found.kind,
            &b.found.namespace,
            &b.found.name,
        ))
    });
    out.dedup_by(|a, b| same(a, b));
    out
}

/// The `FootholdsFound` condition's message: the objects, bounded.
pub fn summary(footholds: &[Foothold]) -> String {
    summary_of(footholds, &[], false)
}

/// What the scan could not read, said after the verdict.
fn not_scanned(unreadable: &[&str]) -> String {
    if unreadable.is_empty() {
        return String::new();
    }
    format!(
        "; not scanned (the operator may not list them): {}",
        unreadable.join(", ")
    )
}

/// How the verdict was reached, in the words the condition uses.
fn how(audited: bool) -> &'static str {
    if audited {
        "from the audit record of the requester's own writes, and a scan of the granted scope"
    } else {
        "found by a scan of the granted scope: the creator is not known without the audit record"
    }
}

/// [`summary`], saying which kinds the scan could not read and whether the audit record was used.
pub fn summary_of(footholds: &[Foothold], unreadable: &[&str], audited: bool) -> String {
    const SHOWN: usize = 10;
    let mut listed: Vec<String> = footholds
        .iter()
        .take(SHOWN)
        .map(|f| format!("{} ({})", f.describe(), f.why))
        .collect();
    if footholds.len() > SHOWN {
        listed.push(format!("and {} more", footholds.len() - SHOWN));
    }
    format!(
        "{} object(s) made while the grant ran may keep giving access ({}): {}{}",
        footholds.len(),
        how(audited),
        listed.join(", "),
        not_scanned(unreadable)
    )
}

/// The `FootholdsFound` condition once the scan is done: True with the objects, or False.
pub fn condition(footholds: &[Foothold]) -> super::role_readiness::ConditionState {
    condition_of(footholds, &[], false)
}

/// [`condition`], saying which kinds the scan could not read.
pub fn condition_of(
    footholds: &[Foothold],
    unreadable: &[&str],
    audited: bool,
) -> super::role_readiness::ConditionState {
    if footholds.is_empty() {
        let how = if audited {
            "the audit record of the requester's own writes, and a scan of the granted scope"
        } else {
            "a scan of the granted scope; the creator of an object is not known without the \
             audit record"
        };
        return super::role_readiness::ConditionState {
            status: false,
            reason: super::reasons::NO_FOOTHOLDS_FOUND,
            message: format!(
                "nothing made while the grant ran keeps giving access ({how}){}",
                not_scanned(unreadable)
            ),
        };
    }
    super::role_readiness::ConditionState {
        status: true,
        reason: super::reasons::FOOTHOLDS_FOUND,
        message: summary_of(footholds, unreadable, audited),
    }
}

/// The review is not part of the revocation: the grant's end is written with `FootholdsFound`
/// Unknown (pending), and the review that follows sets it True or False. A herd of expiries
/// revokes at the pace of binding deletions, not of namespace scans.
pub fn mark_pending(
    status: &mut ActivationRequestStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    set_condition_to(
        &mut status.conditions,
        FOOTHOLDS_FOUND,
        "Unknown",
        reasons::FOOTHOLD_REVIEW_PENDING,
        "the grant's bindings are gone; what it left behind is being reviewed",
        generation,
        now,
    );
}

/// Does this ended request still wait for its foothold review?
pub fn is_pending(status: &ActivationRequestStatus) -> bool {
    status.phase.is_some_and(|p| p.is_terminal())
        && status.conditions.iter().any(|c| {
            c.type_ == FOOTHOLDS_FOUND
                && c.status == "Unknown"
                && c.reason == reasons::FOOTHOLD_REVIEW_PENDING
        })
}

/// The window a pending review judges: from the start of the uninterrupted elevation
/// (`continuousSince`, else `activatedAt`) to `endedAt` (`now` for a status written before
/// `endedAt` existed). `None` for a request that never held the role.
pub fn review_window(
    status: &ActivationRequestStatus,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let from = status
        .continuous_since
        .as_ref()
        .or(status.activated_at.as_ref())
        .map(from_k8s)?;
    let until = status.ended_at.as_ref().map(from_k8s).unwrap_or(now);
    Some((from, until))
}

/// What a review came to.
#[derive(Debug, Clone, Copy)]
pub struct Reviewed<'a> {
    pub footholds: &'a [Foothold],
    /// Kinds the scan could not read.
    pub unreadable: &'a [&'a str],
    /// The audit record's writes were judged too.
    pub audited: bool,
}

/// What the review found, as the status it leaves: `FootholdsFound` True with the objects or
/// False, or Unknown with why the scope could not be read.
pub fn reviewed_status(
    old: &ActivationRequestStatus,
    outcome: Result<Reviewed<'_>, &str>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> ActivationRequestStatus {
    let mut status = old.clone();
    match outcome {
        Ok(Reviewed {
            footholds,
            unreadable,
            audited,
        }) => {
            status.footholds = footholds.iter().take(20).map(Foothold::reference).collect();
            let state = condition_of(footholds, unreadable, audited);
            let value = if state.status { "True" } else { "False" };
            set_condition_to(
                &mut status.conditions,
                FOOTHOLDS_FOUND,
                value,
                state.reason,
                &state.message,
                generation,
                now,
            );
        }
        Err(error) => set_condition_to(
            &mut status.conditions,
            FOOTHOLDS_FOUND,
            "Unknown",
            reasons::FOOTHOLD_REVIEW_FAILED,
            &format!(
                "the granted scope could not be read, so what the grant left behind is not known: {error}"
            ),
            generation,
            now,
        ),
    }
    status
}
