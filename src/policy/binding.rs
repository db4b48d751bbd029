//! The bindings a grant consists of: what the policy wants ([`DesiredBinding`]), what the
//! controller found ([`ObservedBinding`]), and the deterministic name that ties them to a request.
use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::Subject;

use crate::api::RoleKind;

use super::identity::same_subject;

/// Kind of binding kubepim creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindingKind {
    RoleBinding,
    ClusterRoleBinding,
}

impl BindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoleBinding => "RoleBinding",
            Self::ClusterRoleBinding => "ClusterRoleBinding",
        }
    }
}

/// A managed binding as observed in the cluster (from kubepim's labels and annotations).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedBinding {
    pub kind: BindingKind,
    pub namespace: Option<String>,
    pub name: String,
    pub role_kind: String,
    pub role_name: String,
    pub subjects: Vec<Subject>,
    /// From the `kubepim.io/expires-at` annotation written at creation.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A binding a grant needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredBinding {
    pub kind: BindingKind,
    pub namespace: Option<String>,
    pub name: String,
    pub role_kind: RoleKind,
    pub role_name: String,
    pub subject: Subject,
}

impl DesiredBinding {
    pub(super) fn same_object(&self, o: &ObservedBinding) -> bool {
        self.kind == o.kind && self.namespace == o.namespace && self.name == o.name
    }

    /// Does the observed object grant exactly what this desires?
    pub fn is_satisfied_by(&self, o: &ObservedBinding) -> bool {
        self.same_object(o)
            && o.role_kind == role_kind_str(self.role_kind)
            && o.role_name == self.role_name
            && matches!(o.subjects.as_slice(), [only] if same_subject(only, &self.subject))
    }
}

pub(super) fn role_kind_str(kind: RoleKind) -> &'static str {
    match kind {
        RoleKind::Role => "Role",
        RoleKind::ClusterRole => "ClusterRole",
    }
}

/// Deterministic binding name for a request: `kubepim-<request>`, shortened with a stable hash
/// when the request name is too long for an object name.
///
/// The hash follows a `:`, which RBAC object names allow and request names (DNS subdomains) never
/// contain: no request name, however chosen, maps to the shortened name of another request (the
/// controller deletes a same-named binding of another request as foreign).
pub fn binding_name(request_name: &str) -> String {
    const MAX: usize = 253;
    let name = format!("kubepim-{request_name}");
    if name.len() <= MAX {
        return name;
    }
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let hash = request_name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let suffix = format!(":{hash:016x}");
    let mut cut = MAX - suffix.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", name[..cut].trim_end_matches(['-', '.']))
}
