//! The standing-privilege scan: every unmanaged binding, page by page, counted per PrivilegedRole;
//! statuses and Events only when something changed.
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use serde_json::{Value, json};

use crate::api::{PrivilegedRole, RoleKind, RoleRef, labels};
use crate::controller::fixtures::*;
use crate::controller::memory::StandingCounts as Counts;
use crate::controller::standing_scan::{ScanOutcome, scan};
use crate::policy::reasons;
use crate::policy::standing::BreakGlass;

const ADMIN: &str = "cluster-admin";
const DEPLOYER: &str = "payments-deployer";
const CLEAN: &str = "view-only";

fn roles() -> Vec<PrivilegedRole> {
    // A Role in `payments`, its scope unchanged.
    let deployer = privileged_role(DEPLOYER).with(|s| {
        s.role_ref = RoleRef {
            kind: RoleKind::Role,
            name: "deployer".into(),
            namespace: Some(NAMESPACE.into()),
        }
    });
    vec![
        privileged_role(ADMIN).cluster_wide(),
        privileged_role(ROLE),
        deployer,
        privileged_role(CLEAN),
    ]
}

fn binding(namespace: Option<&str>, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": subjects,
    })
}

fn user(name: &str) -> Value {
    json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}])
}

fn rb(namespace: &str, name: &str, kind: &str, role: &str, subjects: Value) -> RoleBinding {
    serde_json::from_value(binding(Some(namespace), name, kind, role, subjects))
        .expect("a RoleBinding")
}

fn crb(name: &str, role: &str, subjects: Value) -> ClusterRoleBinding {
    serde_json::from_value(binding(None, name, "ClusterRole", role, subjects))
        .expect("a ClusterRoleBinding")
}

fn break_glass() -> BreakGlass {
    BreakGlass {
        users: ["root-1".to_string()].into(),
        groups: Default::default(),
    }
}

/// Page 1 and 2 of RoleBindings, one page of ClusterRoleBindings.
fn pages() -> (Vec<RoleBinding>, Vec<RoleBinding>, Vec<ClusterRoleBinding>) {
    let page1 = vec![
        rb("alpha", "alice-db", "ClusterRole", ROLE, user(ALICE)),
        rb("alpha", "alice-view", "ClusterRole", "view", user(ALICE)),
        rb(NAMESPACE, "bob-deployer", "Role", "deployer", user(BOB)),
        // A Role of the same name in another namespace is another role.
        rb("shop", "carol-deployer", "Role", "deployer", user(CAROL)),
    ];
    let page2 = vec![rb("zeta", "carol-db", "ClusterRole", ROLE, user(CAROL))];
    // The server leaves managed bindings out; one that slips through is still not counted.
    let mut managed = crb("kubepim-r1", ADMIN, user(ALICE));
    managed.metadata.labels = Some(
        [(
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        )]
        .into(),
    );
    let cluster = vec![
        crb("alice-admin", ADMIN, user(ALICE)),
        crb("root-admin", ADMIN, user("root-1")),
        managed,
    ];
    (page1, page2, cluster)
}

fn status_check(want: Value) -> impl FnOnce(&Call) + Send + 'static {
    move |c: &Call| {
        assert_eq!(
            c.body,
            json!({"status": {"unmanagedBindings": want}}),
            "{c}: only unmanagedBindings is written"
        )
    }
}

fn script(scenario: Scenario) -> Scenario {
    let (page1, page2, cluster) = pages();
    scenario
        .then(expect::unmanaged_role_bindings_listed(None).replies_page(&page1, Some("p2")))
        .then(expect::unmanaged_role_bindings_listed(Some("p2")).replies_page(&page2, None))
        .then(expect::unmanaged_cluster_role_bindings_listed(None).replies_page(&cluster, None))
}

#[tokio::test(start_paused = true)]
async fn scan_reports_each_role_once_and_a_second_scan_writes_nothing() {
    let mut caches = Caches::new();
    let mut scenario = Scenario::new();
    for role in roles() {
        scenario = scenario.holding(&role);
        caches = caches.role(role);
    }
    // Statuses in name order; the clean role has nothing to report and is not written.
    let scenario = script(scenario)
        .then(
            expect::privileged_role_status_patched(ADMIN).checking(status_check(json!({
                "count": 1, "names": ["alice-admin"],
                "breakGlass": {"count": 1, "names": ["root-admin"]},
            }))),
        )
        .then(
            expect::privileged_role_status_patched(ROLE).checking(status_check(json!({
                "count": 2, "names": ["alpha/alice-db", "zeta/carol-db"],
                "breakGlass": {"count": 0, "names": []},
            }))),
        )
        .then(
            expect::privileged_role_status_patched(DEPLOYER).checking(status_check(json!({
                "count": 1, "names": ["payments/bob-deployer"],
                "breakGlass": {"count": 0, "names": []},
            }))),
        );
    let outcome = scenario
        .run(|client| async move {
            let ctx = caches.context(client);
            let result = scan(&ctx, &break_glass()).await;
            (result, ctx.standing.snapshot())
        })
        .await;
    let (result, snapshot) = outcome.result;
    assert_eq!(
        result.expect("the scan succeeds"),
        ScanOutcome {
            bindings_seen: 8,
            statuses_written: 3,
            events: 3,
        }
    );
    assert_eq!(
        outcome
            .server
            .events
            .iter()
            .filter(|r| *r == reasons::UNMANAGED_BINDINGS)
            .count(),
        3,
        "one Warning per role with findings: {:?}",
        outcome.server.events
    );
    // The metric's figures, zeros included.
    assert_eq!(
        snapshot.roles.into_iter().collect::<Vec<_>>(),
        [
            (
                ADMIN.to_string(),
                Counts {
                    unmanaged: 1,
                    break_glass: 1
                }
            ),
            (
                ROLE.to_string(),
                Counts {
                    unmanaged: 2,
                    break_glass: 0
                }
            ),
            (
                DEPLOYER.to_string(),
                Counts {
                    unmanaged: 1,
                    break_glass: 0
                }
            ),
            (CLEAN.to_string(), Counts::default()),
        ]
    );
    assert_eq!(snapshot.bindings_seen, 8);

    // A restarted operator sees the statuses it wrote: same bindings, no write, no Event.
    let mut restarted = Caches::new();
    for role in roles() {
        let path = format!(
            "/apis/kubepim.io/v1alpha1/privilegedroles/{}",
            role.metadata.name.as_deref().unwrap_or_default()
        );
        let on_server: PrivilegedRole = outcome.server.objects.get(&path).expect("held");
        restarted = restarted.role(on_server);
    }
    let again = script(Scenario::new())
        .run(|client| async move { scan(&restarted.context(client), &break_glass()).await })
        .await;
    assert_eq!(again.result.expect("the scan succeeds").statuses_written, 0);
    assert_eq!(again.server.writes(), 0);
    assert!(again.server.events.is_empty(), "{:?}", again.server.events);
}

#[tokio::test(start_paused = true)]
async fn a_changed_set_is_announced_once_and_its_end_too() {
    let admin = privileged_role(ADMIN).cluster_wide();
    let caches = Caches::new().role(admin.clone());
    let first = vec![crb("a", ADMIN, user(ALICE))];
    let second = vec![crb("b", ADMIN, user(BOB))];
    let none: Vec<ClusterRoleBinding> = vec![];
    let empty: Vec<RoleBinding> = vec![];
    let one = |page: &Vec<ClusterRoleBinding>| {
        let page = page.clone();
        let empty = empty.clone();
        move |s: Scenario| {
            s.then(expect::unmanaged_role_bindings_listed(None).replies_page(&empty, None))
                .then(
                    expect::unmanaged_cluster_role_bindings_listed(None).replies_page(&page, None),
                )
        }
    };
    let outcome = Scenario::new()
        .holding(&admin)
        .pipe(one(&first))
        .then(expect::privileged_role_status_patched(ADMIN))
        // Same set: the cache is stale, so the status is written again, but no Event.
        .pipe(one(&first))
        .then(expect::privileged_role_status_patched(ADMIN))
        // Same count, another binding: a change.
        .pipe(one(&second))
        .then(expect::privileged_role_status_patched(ADMIN))
        // All gone.
        .pipe(one(&none))
        .run(|client| async move {
            let ctx = caches.context(client);
            let mut events = Vec::new();
            for _ in 0..4 {
                events.push(
                    scan(&ctx, &BreakGlass::default())
                        .await
                        .expect("scan")
                        .events,
                );
            }
            events
        })
        .await;
    assert_eq!(outcome.result, [1, 0, 1, 1]);
    assert_eq!(
        outcome.server.events,
        [
            reasons::UNMANAGED_BINDINGS,
            reasons::UNMANAGED_BINDINGS,
            reasons::UNMANAGED_BINDINGS_GONE
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_privileged_roles_nothing_is_listed() {
    let outcome =
        Scenario::silent()
            .run(|client| async move {
                scan(&Caches::new().context(client), &BreakGlass::default()).await
            })
            .await;
    assert_eq!(outcome.result.expect("scan").bindings_seen, 0);
    assert!(outcome.server.calls.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_page_leaves_every_status_alone() {
    let admin = privileged_role(ADMIN).cluster_wide();
    let caches = Caches::new().role(admin.clone());
    let page1 = vec![rb(
        "alpha",
        "alice-admin",
        "ClusterRole",
        ADMIN,
        user(ALICE),
    )];
    let outcome = Scenario::new()
        .holding(&admin)
        .then(expect::unmanaged_role_bindings_listed(None).replies_page(&page1, Some("p2")))
        .then(expect::unmanaged_role_bindings_listed(Some("p2")).replies_unavailable())
        .run(|client| async move { scan(&caches.context(client), &BreakGlass::default()).await })
        .await;
    assert!(outcome.result.is_err());
    assert_eq!(outcome.server.writes(), 0);
    assert!(outcome.server.events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hung_list_is_given_up_after_five_seconds() {
    let admin = privileged_role(ADMIN).cluster_wide();
    let caches = Caches::new().role(admin.clone());
    let outcome = Scenario::new()
        .then(expect::unmanaged_role_bindings_listed(None).hangs())
        .run(|client| async move { scan(&caches.context(client), &BreakGlass::default()).await })
        .await;
    assert!(matches!(
        outcome.result,
        Err(crate::controller::Error::Timeout { .. })
    ));
    assert!(outcome.server.elapsed <= std::time::Duration::from_secs(6));
}

trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}
impl Pipe for Scenario {}
