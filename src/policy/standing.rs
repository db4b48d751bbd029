//! Standing privilege: which bindings grant a role that PrivilegedRoles hand out just in time,
//! outside kubepim. Pure: the scan (`controller::standing_scan`) feeds it one binding at a time, page
//! by page, and keeps only what [`Tally`] keeps (per role: two counters, a few names and a
//! fingerprint), never the bindings.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::rbac::v1::Subject;

use crate::api::{PrivilegedRole, RoleKind};

use super::lifecycle::BindingKind;

/// How many binding names per role (and per class) the status carries.
pub const NAMES_KEPT: usize = 5;

/// The roles PrivilegedRoles reference, for lookup by a binding's roleRef.
#[derive(Debug, Default, Clone)]
pub struct RoleIndex {
    /// ClusterRole name → PrivilegedRoles granting it.
    cluster_roles: HashMap<String, Vec<String>>,
    /// Namespace → Role name → PrivilegedRoles granting it.
    roles: HashMap<String, HashMap<String, Vec<String>>>,
}

impl RoleIndex {
    pub fn new<'a>(roles: impl IntoIterator<Item = &'a PrivilegedRole>) -> Self {
        let mut index = Self::default();
        for pr in roles {
            let Some(name) = pr.metadata.name.clone() else {
                continue;
            };
            let role_ref = &pr.spec.role_ref;
            let list = match (role_ref.kind, &role_ref.namespace) {
                (RoleKind::ClusterRole, _) => index
                    .cluster_roles
                    .entry(role_ref.name.clone())
                    .or_default(),
                (RoleKind::Role, Some(ns)) => index
                    .roles
                    .entry(ns.clone())
                    .or_default()
                    .entry(role_ref.name.clone())
                    .or_default(),
                // Rejected by the CRD's validation; nothing a binding could match.
                (RoleKind::Role, None) => continue,
            };
            list.push(name);
        }
        for list in index.cluster_roles.values_mut().chain(
            index
                .roles
                .values_mut()
                .flat_map(|by_name| by_name.values_mut()),
        ) {
            list.sort();
            list.dedup();
        }
        index
    }

    pub fn is_empty(&self) -> bool {
        self.cluster_roles.is_empty() && self.roles.is_empty()
    }

    /// PrivilegedRoles whose role this roleRef grants. A RoleBinding may grant a ClusterRole (in
    /// its namespace) or a Role of its own namespace; a ClusterRoleBinding only a ClusterRole.
    pub fn granted_by(&self, binding: &BindingView<'_>) -> &[String] {
        let found = match (binding.role_ref_kind, binding.kind, binding.namespace) {
            ("ClusterRole", _, _) => self.cluster_roles.get(binding.role_ref_name),
            ("Role", BindingKind::RoleBinding, Some(ns)) => self
                .roles
                .get(ns)
                .and_then(|by_name| by_name.get(binding.role_ref_name)),
            _ => None,
        };
        found.map(Vec::as_slice).unwrap_or_default()
    }
}

/// Identities allowed to hold privileged roles outside kubepim (`--break-glass-user`,
/// `--break-glass-group`). Their bindings are reported apart, never hidden.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

impl BreakGlass {
    /// Is this subject a break-glass identity? A ServiceAccount is one when its username
    /// (`system:serviceaccount:<namespace>:<name>`) is among the users.
    pub fn covers(&self, subject: &Subject) -> bool {
        match subject.kind.as_str() {
            "User" => self.users.contains(&subject.name),
            "Group" => self.groups.contains(&subject.name),
            "ServiceAccount" => subject.namespace.as_deref().is_some_and(|ns| {
                self.users
                    .contains(&format!("system:serviceaccount:{ns}:{}", subject.name))
            }),
            _ => false,
        }
    }

    /// A binding is break-glass when it names at least one subject and every subject is a
    /// break-glass identity. One ordinary subject among them makes it an ordinary finding; a
    /// binding without subjects grants nothing today but is one edit away, so it is reported as
    /// unmanaged.
    pub fn covers_all(&self, subjects: &[Subject]) -> bool {
        !subjects.is_empty() && subjects.iter().all(|s| self.covers(s))
    }
}

/// What the classifier needs of a RoleBinding or ClusterRoleBinding.
#[derive(Debug, Clone, Copy)]
pub struct BindingView<'a> {
    pub kind: BindingKind,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub uid: Option<&'a str>,
    /// A binding kubepim granted: managed-labelled *and* accounted for by an Active request
    /// (see [`classify`]); the label alone does not make it so.
    pub managed: bool,
    pub role_ref_kind: &'a str,
    pub role_ref_name: &'a str,
    pub subjects: &'a [Subject],
}

impl BindingView<'_> {
    /// `namespace/name` for a RoleBinding, `name` for a ClusterRoleBinding.
    pub fn display_name(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// Order-independent identity of one binding, for [`Sample::fingerprint`]. The uid makes a
    /// binding deleted and recreated under the same name a change.
    fn fingerprint(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        (
            self.kind.as_str(),
            self.namespace,
            self.name,
            self.uid,
            self.role_ref_kind,
            self.role_ref_name,
        )
            .hash(&mut hasher);
        hasher.finish()
    }
}

/// How a binding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Grants no privileged role, or is kubepim's own.
    Ignored,
    /// Standing privilege.
    Unmanaged,
    /// Standing privilege held by break-glass identities only.
    BreakGlass,
}

/// Classifies one binding.
///
/// `managed` means a binding kubepim granted: the scan sets it only for a managed-labelled
/// binding that [`super::legitimacy::judge`] accounts for (recorded for an Active, unexpired
/// request). Copying kubepim's label and annotations hides nothing: such a binding is judged
/// illegitimate, counted here as standing privilege, and deleted by the binding guard.
pub fn classify(binding: &BindingView<'_>, index: &RoleIndex, break_glass: &BreakGlass) -> Class {
    if binding.managed || index.granted_by(binding).is_empty() {
        Class::Ignored
    } else if break_glass.covers_all(binding.subjects) {
        Class::BreakGlass
    } else {
        Class::Unmanaged
    }
}

/// A count, the first few names, and a fingerprint of the whole set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub count: u32,
    /// The first [`NAMES_KEPT`] in the order the scan met them (the API server lists in key
    /// order: RoleBindings by namespace and name, then ClusterRoleBindings by name).
    pub names: Vec<String>,
    /// Wrapping sum of per-binding hashes: equal sets give equal fingerprints whatever the order,
    /// so "has the set changed?" needs no list of all bindings.
    pub fingerprint: u64,
}

impl Sample {
    fn add(&mut self, binding: &BindingView<'_>) {
        self.count = self.count.saturating_add(1);
        if self.names.len() < NAMES_KEPT {
            self.names.push(binding.display_name());
        }
        self.fingerprint = self.fingerprint.wrapping_add(binding.fingerprint());
    }

    /// Same count and names (what a status shows; the fingerprint is not persisted).
    pub fn shows_like(&self, count: u32, names: &[String]) -> bool {
        self.count == count && self.names == names
    }
}

/// Findings for one PrivilegedRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleFindings {
    pub unmanaged: Sample,
    pub break_glass: Sample,
}

impl RoleFindings {
    pub fn is_empty(&self) -> bool {
        self.unmanaged.count == 0 && self.break_glass.count == 0
    }

    /// Has the set of bindings changed since `before`?
    pub fn changed_since(&self, before: &RoleFindings) -> bool {
        self.unmanaged.count != before.unmanaged.count
            || self.unmanaged.fingerprint != before.unmanaged.fingerprint
            || self.break_glass.count != before.break_glass.count
            || self.break_glass.fingerprint != before.break_glass.fingerprint
    }

    /// The Event note for this set.
    pub fn note(&self, role: &str, role_ref: &str) -> String {
        if self.is_empty() {
            return format!("no binding grants {role_ref} outside kubepim any more");
        }
        let mut parts = Vec::new();
        for (sample, what) in [
            (&self.unmanaged, "outside kubepim"),
            (&self.break_glass, "to break-glass identities only"),
        ] {
            if sample.count > 0 {
                let more = sample.count as usize - sample.names.len();
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                parts.push(format!(
                    "{} binding{} grant{} {role_ref} {what}: {}{tail}",
                    sample.count,
                    if sample.count == 1 { "" } else { "s" },
                    if sample.count == 1 { "s" } else { "" },
                    sample.names.join(", ")
                ));
            }
        }
        format!(
            "{}; PrivilegedRole {role} hands it out just in time, so these are standing privilege",
            parts.join("; ")
        )
    }
}

/// Everything a scan keeps: findings per PrivilegedRole that has any.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub roles: BTreeMap<String, RoleFindings>,
    /// Bindings looked at.
    pub seen: u64,
}

impl Tally {
    /// Classifies `binding` and counts it for every PrivilegedRole it grants.
    pub fn add(&mut self, binding: &BindingView<'_>, index: &RoleIndex, break_glass: &BreakGlass) {
        self.seen += 1;
        let class = classify(binding, index, break_glass);
        if class == Class::Ignored {
            return;
        }
        for role in index.granted_by(binding) {
            let findings = self.roles.entry(role.clone()).or_default();
            let sample = match class {
                Class::BreakGlass => &mut findings.break_glass,
                _ => &mut findings.unmanaged,
            };
            sample.add(binding);
        }
    }

    /// The findings for `role` (empty when none).
    pub fn of(&self, role: &str) -> RoleFindings {
        self.roles.get(role).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
#[path = "tests/standing_table.rs"]
mod tests;
