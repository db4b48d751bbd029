//! The standing-privilege classifier: which bindings count, for which PrivilegedRoles, and how.
use k8s_openapi::api::rbac::v1::Subject;
use serde_json::json;

use super::*;
use crate::api::PrivilegedRole;

fn cluster_role_pr(name: &str, cluster_role: &str) -> PrivilegedRole {
    let spec = serde_json::from_value(json!({
        "roleRef": {"kind": "ClusterRole", "name": cluster_role},
        "scope": {"clusterWide": true},
    }))
    .expect("a valid spec");
    PrivilegedRole::new(name, spec)
}

fn role_pr(name: &str, namespace: &str, role: &str) -> PrivilegedRole {
    let spec = serde_json::from_value(json!({
        "roleRef": {"kind": "Role", "name": role, "namespace": namespace},
        "scope": {"namespaces": [namespace]},
    }))
    .expect("a valid spec");
    PrivilegedRole::new(name, spec)
}

fn index() -> RoleIndex {
    RoleIndex::new(&[
        cluster_role_pr("admin-anywhere", "admin"),
        // Two PrivilegedRoles for the same ClusterRole: a binding counts for both.
        cluster_role_pr("admin-payments", "admin"),
        cluster_role_pr("cluster-admin", "cluster-admin"),
        role_pr("payments-deployer", "payments", "deployer"),
    ])
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        ..user(name)
    }
}

fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(namespace.into()),
    }
}

fn break_glass() -> BreakGlass {
    BreakGlass {
        users: [
            "root-1".to_string(),
            "system:serviceaccount:ops:emergency".into(),
        ]
        .into(),
        groups: ["sre-break-glass".to_string()].into(),
    }
}

fn crb<'a>(name: &'a str, role: &'a str, subjects: &'a [Subject]) -> BindingView<'a> {
    BindingView {
        kind: BindingKind::ClusterRoleBinding,
        namespace: None,
        name,
        uid: Some("uid-1"),
        managed: false,
        role_ref_kind: "ClusterRole",
        role_ref_name: role,
        subjects,
    }
}

fn rb<'a>(
    namespace: &'a str,
    name: &'a str,
    kind: &'a str,
    role: &'a str,
    subjects: &'a [Subject],
) -> BindingView<'a> {
    BindingView {
        kind: BindingKind::RoleBinding,
        namespace: Some(namespace),
        role_ref_kind: kind,
        ..crb(name, role, subjects)
    }
}

#[test]
fn classification_table() {
    let alice = [user("alice")];
    let root = [user("root-1")];
    let sre = [group("sre-break-glass")];
    let emergency_sa = [service_account("ops", "emergency")];
    let other_sa = [service_account("ops", "deployer")];
    let mixed = [user("root-1"), user("alice")];
    let all_break_glass = [user("root-1"), group("sre-break-glass")];
    let none: [Subject; 0] = [];
    let index = index();
    let bg = break_glass();

    let managed = BindingView {
        managed: true,
        ..crb("kubepim-r1", "admin", &alice)
    };
    let rows: Vec<(&str, BindingView<'_>, Class, &[&str])> = vec![
        (
            "ClusterRoleBinding to a referenced ClusterRole",
            crb("alice-admin", "admin", &alice),
            Class::Unmanaged,
            &["admin-anywhere", "admin-payments"],
        ),
        (
            "RoleBinding to a referenced ClusterRole, any namespace",
            rb("shop", "alice-admin", "ClusterRole", "admin", &alice),
            Class::Unmanaged,
            &["admin-anywhere", "admin-payments"],
        ),
        (
            "ClusterRoleBinding to an unreferenced ClusterRole",
            crb("alice-view", "view", &alice),
            Class::Ignored,
            &[],
        ),
        (
            "managed binding",
            managed,
            Class::Ignored,
            &["admin-anywhere", "admin-payments"],
        ),
        (
            "RoleBinding to the referenced Role in its namespace",
            rb("payments", "alice-deployer", "Role", "deployer", &alice),
            Class::Unmanaged,
            &["payments-deployer"],
        ),
        (
            "RoleBinding to a Role of the same name elsewhere",
            rb("shop", "alice-deployer", "Role", "deployer", &alice),
            Class::Ignored,
            &[],
        ),
        (
            "a Role name is not a ClusterRole name",
            rb("payments", "alice-admin", "Role", "admin", &alice),
            Class::Ignored,
            &[],
        ),
        (
            "a ClusterRole named like the Role is not the Role",
            crb("alice-deployer", "deployer", &alice),
            Class::Ignored,
            &[],
        ),
        (
            "break-glass user",
            crb("root-admin", "cluster-admin", &root),
            Class::BreakGlass,
            &["cluster-admin"],
        ),
        (
            "break-glass group",
            crb("sre-admin", "cluster-admin", &sre),
            Class::BreakGlass,
            &["cluster-admin"],
        ),
        (
            "break-glass ServiceAccount by username",
            crb("sa-admin", "cluster-admin", &emergency_sa),
            Class::BreakGlass,
            &["cluster-admin"],
        ),
        (
            "another ServiceAccount of the same namespace",
            crb("sa-admin", "cluster-admin", &other_sa),
            Class::Unmanaged,
            &["cluster-admin"],
        ),
        (
            "only break-glass subjects, of both kinds",
            crb("bg-admin", "cluster-admin", &all_break_glass),
            Class::BreakGlass,
            &["cluster-admin"],
        ),
        (
            "one ordinary subject among break-glass ones",
            crb("mixed-admin", "cluster-admin", &mixed),
            Class::Unmanaged,
            &["cluster-admin"],
        ),
        (
            "no subjects",
            crb("empty-admin", "cluster-admin", &none),
            Class::Unmanaged,
            &["cluster-admin"],
        ),
    ];
    for (what, binding, class, roles) in rows {
        assert_eq!(classify(&binding, &index, &bg), class, "{what}");
        let granted: Vec<&str> = index
            .granted_by(&binding)
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(granted, roles, "{what}: roles");
    }
}

#[test]
fn a_break_glass_name_of_the_wrong_kind_does_not_count() {
    let bg = break_glass();
    // A group named like a break-glass user, and a user named like a break-glass group.
    assert!(!bg.covers(&group("root-1")));
    assert!(!bg.covers(&user("sre-break-glass")));
    // A ServiceAccount without a namespace names nobody.
    let mut sa = service_account("ops", "emergency");
    sa.namespace = None;
    assert!(!bg.covers(&sa));
    assert!(!bg.covers(&Subject {
        kind: "Robot".into(),
        ..user("root-1")
    }));
    // Nothing configured: nothing is break-glass.
    assert!(!BreakGlass::default().covers_all(&[user("root-1")]));
}

#[test]
fn tally_counts_every_binding_but_keeps_five_names() {
    let index = index();
    let bg = break_glass();
    let alice = [user("alice")];
    let root = [user("root-1")];
    let names: Vec<String> = (0..8).map(|i| format!("standing-{i}")).collect();
    let mut tally = Tally::default();
    for name in &names {
        tally.add(&crb(name, "cluster-admin", &alice), &index, &bg);
    }
    tally.add(&crb("root", "cluster-admin", &root), &index, &bg);
    tally.add(&crb("unrelated", "view", &alice), &index, &bg);
    tally.add(
        &rb("payments", "dep", "Role", "deployer", &alice),
        &index,
        &bg,
    );

    assert_eq!(tally.seen, 11);
    let found = tally.of("cluster-admin");
    assert_eq!(found.unmanaged.count, 8);
    assert_eq!(found.unmanaged.names, names[..NAMES_KEPT].to_vec());
    assert_eq!(found.break_glass.count, 1);
    assert_eq!(found.break_glass.names, ["root"]);
    assert_eq!(
        tally.of("payments-deployer").unmanaged.names,
        ["payments/dep"]
    );
    assert!(tally.of("admin-anywhere").is_empty());
    // Roles without findings take no room.
    assert_eq!(
        tally.roles.keys().collect::<Vec<_>>(),
        ["cluster-admin", "payments-deployer"]
    );
}

#[test]
fn the_fingerprint_sees_set_changes_and_ignores_order() {
    let index = index();
    let bg = BreakGlass::default();
    let alice = [user("alice")];
    let scan = |names: &[&str], uid: &'static str| {
        let mut tally = Tally::default();
        for name in names {
            let mut view = crb(name, "admin", &alice);
            view.uid = Some(uid);
            tally.add(&view, &index, &bg);
        }
        tally.of("admin-anywhere")
    };
    let a = scan(&["a", "b", "c"], "u");
    assert!(!scan(&["c", "a", "b"], "u").changed_since(&a), "order");
    assert!(scan(&["a", "b", "d"], "u").changed_since(&a), "one swapped");
    assert!(scan(&["a", "b"], "u").changed_since(&a), "one gone");
    assert!(scan(&["a", "b", "c"], "v").changed_since(&a), "recreated");
    assert!(
        scan(&[], "u").changed_since(&a) && !scan(&[], "u").changed_since(&RoleFindings::default()),
        "all gone"
    );
    // The same names as first five with a different tail still differ.
    let many: Vec<String> = (0..7).map(|i| format!("n{i}")).collect();
    let mut other = many.clone();
    other[6] = "x".into();
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let (one, two) = (scan(&refs(&many), "u"), scan(&refs(&other), "u"));
    assert_eq!(one.unmanaged.names, two.unmanaged.names);
    assert!(two.changed_since(&one));
}

#[test]
fn index_of_no_roles_is_empty_and_roles_without_namespace_are_skipped() {
    assert!(RoleIndex::new(&[]).is_empty());
    let mut broken = role_pr("broken", "payments", "deployer");
    broken.spec.role_ref.namespace = None;
    assert!(RoleIndex::new(&[broken]).is_empty());
}

#[test]
fn the_note_names_counts_names_and_the_rest() {
    let index = index();
    let bg = break_glass();
    let alice = [user("alice")];
    let root = [user("root-1")];
    let mut tally = Tally::default();
    for i in 0..7 {
        tally.add(&crb(&format!("s{i}"), "cluster-admin", &alice), &index, &bg);
    }
    tally.add(&crb("root", "cluster-admin", &root), &index, &bg);
    let note = tally
        .of("cluster-admin")
        .note("cluster-admin", "ClusterRole cluster-admin");
    assert_eq!(
        note,
        "7 bindings grant ClusterRole cluster-admin outside kubepim: s0, s1, s2, s3, s4 and 2 more; \
         1 binding grants ClusterRole cluster-admin to break-glass identities only: root; \
         PrivilegedRole cluster-admin hands it out just in time, so these are standing privilege"
    );
    assert_eq!(
        RoleFindings::default().note("x", "ClusterRole x"),
        "no binding grants ClusterRole x outside kubepim any more"
    );
}
