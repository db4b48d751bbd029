//! Who a requester is, in RBAC terms.
use k8s_openapi::api::rbac::v1::Subject;

use crate::api::{Requester, SubjectKind, SubjectRef};

const SA_PREFIX: &str = "system:serviceaccount:";

/// ServiceAccount usernames look like `system:serviceaccount:<namespace>:<name>`.
pub fn is_service_account(username: &str) -> bool {
    username.starts_with(SA_PREFIX)
}

/// ServiceAccount groups (`system:serviceaccounts[:<namespace>]`): every member is a
/// ServiceAccount.
pub fn is_service_account_group(group: &str) -> bool {
    group == "system:serviceaccounts" || group.starts_with("system:serviceaccounts:")
}

/// Splits a ServiceAccount username into (namespace, name).
pub fn service_account_parts(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SA_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// The single RBAC subject a grant binds: the requester themself, never a group.
pub fn requester_subject(requester: &Requester) -> Subject {
    match service_account_parts(&requester.username) {
        Some((namespace, name)) => Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: Some(namespace.into()),
            api_group: None,
        },
        None => Subject {
            kind: "User".into(),
            name: requester.username.clone(),
            namespace: None,
            api_group: Some("rbac.authorization.k8s.io".into()),
        },
    }
}

/// The same RBAC subject, whether the API server wrote an empty `apiGroup` (its default for a
/// ServiceAccount) or left it out.
pub fn same_subject(a: &Subject, b: &Subject) -> bool {
    let group = |s: &Subject| s.api_group.clone().filter(|g| !g.is_empty());
    a.kind == b.kind
        && a.name == b.name
        && a.namespace.as_deref().filter(|n| !n.is_empty())
            == b.namespace.as_deref().filter(|n| !n.is_empty())
        && group(a) == group(b)
}

/// Does an eligibility subject name this requester (as user, one of their groups, or SA)?
pub fn subject_matches(subject: &SubjectRef, requester: &Requester) -> bool {
    match subject.kind {
        SubjectKind::User => {
            !is_service_account(&requester.username) && subject.name == requester.username
        }
        SubjectKind::Group => requester.groups.contains(&subject.name),
        SubjectKind::ServiceAccount => match (
            service_account_parts(&requester.username),
            &subject.namespace,
        ) {
            (Some((ns, name)), Some(subject_ns)) => ns == subject_ns && name == subject.name,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> Requester {
        Requester {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn user_subject() {
        let s = requester_subject(&user("alice", &["sre"]));
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace),
            ("User", "alice", None)
        );
    }

    #[test]
    fn service_account_subject() {
        let s = requester_subject(&user("system:serviceaccount:ci:deployer", &[]));
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
            ("ServiceAccount", "deployer", Some("ci"))
        );
    }

    #[test]
    fn malformed_service_account_name_is_not_split() {
        assert_eq!(service_account_parts("system:serviceaccount:ci"), None);
        assert_eq!(service_account_parts("system:serviceaccount::x"), None);
        assert_eq!(service_account_parts("system:serviceaccount:a:b:c"), None);
    }

    #[test]
    fn matching() {
        let alice = user("alice", &["payments-oncall"]);
        assert!(subject_matches(&SubjectRef::user("alice"), &alice));
        assert!(!subject_matches(&SubjectRef::user("bob"), &alice));
        assert!(subject_matches(
            &SubjectRef::group("payments-oncall"),
            &alice
        ));
        assert!(!subject_matches(&SubjectRef::group("sre"), &alice));
        let sa = user("system:serviceaccount:ci:deployer", &[]);
        assert!(subject_matches(
            &SubjectRef::service_account("ci", "deployer"),
            &sa
        ));
        assert!(!subject_matches(
            &SubjectRef::service_account("other", "deployer"),
            &sa
        ));
        // A user literally named like a ServiceAccount is not that user subject.
        assert!(!subject_matches(
            &SubjectRef::user("system:serviceaccount:ci:deployer"),
            &sa
        ));
    }
}
