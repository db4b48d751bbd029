//! Risk flags: one row per way in (and per near miss that must not count), wildcards included.
use k8s_openapi::api::rbac::v1::PolicyRule;

use super::RiskFlag::{self, *};
use super::{Reach, allows, assess, summary};
use crate::policy::reasons;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn named(mut r: PolicyRule, names: &[&str]) -> PolicyRule {
    r.resource_names = Some(names.iter().map(|s| s.to_string()).collect());
    r
}

const OPERATOR_NS: &str = "kubepim-system";

/// Cluster-wide, kubepim's namespace unknown (outside a cluster).
fn cluster() -> Reach<'static> {
    Reach {
        cluster_wide: true,
        namespaces: &[],
        operator_namespace: None,
    }
}

/// Cluster-wide, kubepim running in `OPERATOR_NS`.
fn cluster_with_operator() -> Reach<'static> {
    Reach {
        operator_namespace: Some(OPERATOR_NS),
        ..cluster()
    }
}

fn in_namespaces(namespaces: &'static [String]) -> Reach<'static> {
    Reach {
        cluster_wide: false,
        namespaces,
        operator_namespace: Some(OPERATOR_NS),
    }
}

fn payments() -> &'static [String] {
    static NS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NS.get_or_init(|| vec!["payments".into()])
}

fn operator_and_payments() -> &'static [String] {
    static NS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NS.get_or_init(|| vec!["payments".into(), OPERATOR_NS.into()])
}

struct Row {
    what: &'static str,
    rules: Vec<PolicyRule>,
    reach: Reach<'static>,
    want: Vec<RiskFlag>,
}

fn row(
    what: &'static str,
    rules: Vec<PolicyRule>,
    reach: Reach<'static>,
    want: &[RiskFlag],
) -> Row {
    Row {
        what,
        rules,
        reach,
        want: want.to_vec(),
    }
}

const ALL_BUT_OPERATOR_NS: &[RiskFlag] = &[
    Bind,
    Escalate,
    Impersonate,
    RbacWrite,
    ClusterSecretsRead,
    ClusterPodCreate,
    KubepimWrite,
    AdmissionConfigWrite,
];

fn rows() -> Vec<Row> {
    let star = || rule(&["*"], &["*"], &["*"]);
    vec![
        // Nothing, and plain reading.
        row("no rules", vec![], cluster(), &[]),
        row(
            "view-like reads",
            vec![
                rule(
                    &[""],
                    &["pods", "services", "configmaps"],
                    &["get", "list", "watch"],
                ),
                rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
                rule(
                    &["kubepim.io"],
                    &["privilegedroles", "activationrequests"],
                    &["get", "list", "watch"],
                ),
            ],
            cluster(),
            &[],
        ),
        row(
            "non-resource URLs only",
            vec![PolicyRule {
                non_resource_urls: Some(vec!["*".into()]),
                verbs: vec!["*".into()],
                ..Default::default()
            }],
            cluster(),
            &[],
        ),
        row(
            "no apiGroups matches nothing",
            vec![PolicyRule {
                resources: Some(vec!["*".into()]),
                verbs: vec!["*".into()],
                ..Default::default()
            }],
            cluster(),
            &[],
        ),
        // cluster-admin.
        row(
            "cluster-admin cluster-wide, operator namespace known",
            vec![star()],
            cluster_with_operator(),
            &RiskFlag::ALL,
        ),
        row(
            "cluster-admin cluster-wide, operator namespace unknown",
            vec![star()],
            cluster(),
            ALL_BUT_OPERATOR_NS,
        ),
        row(
            "cluster-admin in one namespace",
            vec![star()],
            in_namespaces(payments()),
            &[Bind, Escalate, Impersonate, RbacWrite, KubepimWrite],
        ),
        row(
            "cluster-admin in the operator's namespace",
            vec![star()],
            in_namespaces(operator_and_payments()),
            &[
                Bind,
                Escalate,
                Impersonate,
                RbacWrite,
                OperatorNamespace,
                KubepimWrite,
            ],
        ),
        // bind / escalate.
        row(
            "bind clusterroles by name",
            vec![named(
                rule(&["rbac.authorization.k8s.io"], &["clusterroles"], &["bind"]),
                &["view"],
            )],
            in_namespaces(payments()),
            &[Bind],
        ),
        row(
            "bind roles",
            vec![rule(&["rbac.authorization.k8s.io"], &["roles"], &["bind"])],
            in_namespaces(payments()),
            &[Bind],
        ),
        row(
            "bind in another group is not RBAC bind",
            vec![rule(&["apps"], &["*"], &["bind", "escalate"])],
            cluster(),
            &[],
        ),
        row(
            "bind on bindings is not bind on roles",
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["rolebindings"],
                &["bind"],
            )],
            cluster(),
            &[],
        ),
        row(
            "escalate with a group wildcard",
            vec![rule(&["*"], &["clusterroles"], &["escalate"])],
            cluster(),
            &[Escalate],
        ),
        row(
            "every verb on roles: bind, escalate and RBAC writes",
            vec![rule(&["rbac.authorization.k8s.io"], &["roles"], &["*"])],
            in_namespaces(payments()),
            &[Bind, Escalate, RbacWrite],
        ),
        // impersonate.
        row(
            "impersonate users",
            vec![rule(&[""], &["users"], &["impersonate"])],
            in_namespaces(payments()),
            &[Impersonate],
        ),
        row(
            "impersonate groups",
            vec![rule(&[""], &["groups"], &["impersonate"])],
            cluster(),
            &[Impersonate],
        ),
        row(
            "impersonate serviceaccounts",
            vec![named(
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
                &["deployer"],
            )],
            in_namespaces(payments()),
            &[Impersonate],
        ),
        row(
            "impersonate uids",
            vec![rule(
                &["authentication.k8s.io"],
                &["uids"],
                &["impersonate"],
            )],
            cluster(),
            &[Impersonate],
        ),
        row(
            "uids in the core group is nothing",
            vec![rule(&[""], &["uids"], &["impersonate"])],
            cluster(),
            &[],
        ),
        row(
            "impersonate an extra attribute",
            vec![rule(
                &["authentication.k8s.io"],
                &["userextras/scopes"],
                &["impersonate"],
            )],
            cluster(),
            &[Impersonate],
        ),
        row(
            "impersonate any resource's subresource matches userextras",
            vec![rule(
                &["authentication.k8s.io"],
                &["*/scopes"],
                &["impersonate"],
            )],
            cluster(),
            &[Impersonate],
        ),
        row(
            "userextras without a key matches no extra",
            vec![rule(
                &["authentication.k8s.io"],
                &["userextras"],
                &["impersonate"],
            )],
            cluster(),
            &[],
        ),
        row(
            "every verb on users",
            vec![rule(&[""], &["users"], &["*"])],
            cluster(),
            &[Impersonate],
        ),
        // RBAC writes.
        row(
            "create rolebindings",
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["rolebindings"],
                &["create"],
            )],
            in_namespaces(payments()),
            &[RbacWrite],
        ),
        row(
            "patch clusterroles",
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
                &["patch"],
            )],
            cluster(),
            &[RbacWrite],
        ),
        row(
            "deletecollection clusterrolebindings",
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["clusterrolebindings"],
                &["deletecollection"],
            )],
            cluster(),
            &[RbacWrite],
        ),
        row(
            "every resource of the RBAC group, update",
            vec![rule(&["rbac.authorization.k8s.io"], &["*"], &["update"])],
            cluster(),
            &[RbacWrite],
        ),
        row(
            "reading RBAC objects",
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["*"],
                &["get", "list", "watch"],
            )],
            cluster(),
            &[],
        ),
        row(
            "rolebindings in the wrong group",
            vec![rule(&[""], &["rolebindings"], &["create"])],
            cluster(),
            &[],
        ),
        // Secrets.
        row(
            "get secrets cluster-wide",
            vec![rule(&[""], &["secrets"], &["get"])],
            cluster(),
            &[ClusterSecretsRead],
        ),
        row(
            "watch secrets cluster-wide",
            vec![rule(&[""], &["secrets"], &["watch"])],
            cluster(),
            &[ClusterSecretsRead],
        ),
        row(
            "list every core resource cluster-wide",
            vec![rule(&[""], &["*"], &["list"])],
            cluster(),
            &[ClusterSecretsRead],
        ),
        row(
            "read secrets in a namespace",
            vec![rule(&[""], &["secrets"], &["get", "list", "watch"])],
            in_namespaces(payments()),
            &[],
        ),
        row(
            "read secrets in the operator's namespace",
            vec![rule(&[""], &["secrets"], &["get"])],
            in_namespaces(operator_and_payments()),
            &[OperatorNamespace],
        ),
        row(
            "read secrets cluster-wide reaches the operator's namespace",
            vec![rule(&[""], &["secrets"], &["list"])],
            cluster_with_operator(),
            &[ClusterSecretsRead, OperatorNamespace],
        ),
        row(
            "create pods cluster-wide reaches the operator's namespace",
            vec![rule(&["apps"], &["deployments"], &["create"])],
            cluster_with_operator(),
            &[ClusterPodCreate, OperatorNamespace],
        ),
        row(
            "reading pods cluster-wide does not reach the operator",
            vec![rule(&[""], &["pods", "configmaps"], &["get", "list"])],
            cluster_with_operator(),
            &[],
        ),
        row(
            "create secrets without reading them",
            vec![rule(&[""], &["secrets"], &["create", "delete"])],
            cluster(),
            &[],
        ),
        row(
            "secrets in another group",
            vec![rule(&["apps"], &["secrets"], &["get"])],
            cluster(),
            &[],
        ),
        // Pods.
        row(
            "create pods cluster-wide",
            vec![rule(&[""], &["pods"], &["create"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "create pods in a namespace",
            vec![rule(&[""], &["pods"], &["create"])],
            in_namespaces(payments()),
            &[],
        ),
        row(
            "create pods in the operator's namespace",
            vec![rule(&[""], &["pods"], &["create"])],
            in_namespaces(operator_and_payments()),
            &[OperatorNamespace],
        ),
        row(
            "every verb on pods cluster-wide",
            vec![rule(&[""], &["pods"], &["*"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "exec with get (WebSockets)",
            vec![rule(&[""], &["pods/exec"], &["get"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "attach with create",
            vec![rule(&[""], &["pods/attach"], &["create"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "exec through a subresource wildcard",
            vec![rule(&[""], &["*/exec"], &["create"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "pods/* is not a wildcard",
            vec![rule(&[""], &["pods/*"], &["create"])],
            cluster(),
            &[],
        ),
        row(
            "ephemeral containers",
            vec![rule(&[""], &["pods/ephemeralcontainers"], &["patch"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "reading pods and logs",
            vec![rule(
                &[""],
                &["pods", "pods/log"],
                &["get", "list", "watch"],
            )],
            cluster(),
            &[],
        ),
        row(
            "port-forward only",
            vec![rule(&[""], &["pods/portforward"], &["create"])],
            cluster(),
            &[],
        ),
        row(
            "patch deployments",
            vec![rule(&["apps"], &["deployments"], &["patch"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "create daemonsets",
            vec![rule(&["apps"], &["daemonsets"], &["create"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "create cronjobs",
            vec![rule(&["batch"], &["cronjobs"], &["create"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "update replicationcontrollers",
            vec![rule(&[""], &["replicationcontrollers"], &["update"])],
            cluster(),
            &[ClusterPodCreate],
        ),
        row(
            "deployments in the core group",
            vec![rule(&[""], &["deployments"], &["create"])],
            cluster(),
            &[],
        ),
        row(
            "scale deployments",
            vec![rule(&["apps"], &["deployments/scale"], &["patch"])],
            cluster(),
            &[],
        ),
        row(
            "delete deployments",
            vec![rule(&["apps"], &["deployments"], &["delete"])],
            cluster(),
            &[],
        ),
        // kubepim's own resources.
        row(
            "approve privilegedroles",
            vec![rule(&["kubepim.io"], &["privilegedroles"], &["approve"])],
            cluster(),
            &[KubepimWrite],
        ),
        row(
            "manage activationrequests",
            vec![rule(&["kubepim.io"], &["activationrequests"], &["manage"])],
            cluster(),
            &[KubepimWrite],
        ),
        row(
            "patch request status",
            vec![rule(
                &["kubepim.io"],
                &["activationrequests/status"],
                &["patch"],
            )],
            in_namespaces(payments()),
            &[KubepimWrite],
        ),
        row(
            "write policy",
            vec![rule(
                &["kubepim.io"],
                &["eligibilities"],
                &["create", "update"],
            )],
            cluster(),
            &[KubepimWrite],
        ),
        row(
            "every verb in every group on some resources",
            vec![rule(&["*"], &["privilegedroles"], &["*"])],
            cluster(),
            &[KubepimWrite],
        ),
        row(
            "a wildcard group with unrelated resources",
            vec![rule(&["*"], &["pods"], &["create"])],
            in_namespaces(payments()),
            &[],
        ),
        row(
            "kubepim.io with another group's resource names is nothing",
            vec![rule(&["kubepim.io"], &["secrets", "pods"], &["*"])],
            cluster(),
            &[],
        ),
        // Combinations are sorted and unique.
        row(
            "edit-like role cluster-wide",
            vec![
                rule(&[""], &["pods", "secrets", "configmaps"], &["*"]),
                rule(&["apps"], &["*"], &["*"]),
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["rolebindings"],
                    &["get", "list"],
                ),
            ],
            cluster(),
            &[ClusterSecretsRead, ClusterPodCreate],
        ),
        row(
            "the same flag from two rules",
            vec![
                rule(&["rbac.authorization.k8s.io"], &["clusterroles"], &["bind"]),
                rule(&["*"], &["roles"], &["bind"]),
            ],
            cluster(),
            &[Bind],
        ),
        // Self-protection: what admission cannot stop.
        row(
            "writes ValidatingAdmissionPolicies",
            vec![rule(
                &["admissionregistration.k8s.io"],
                &["validatingadmissionpolicies"],
                &["patch"],
            )],
            cluster(),
            &[AdmissionConfigWrite],
        ),
        row(
            "the same rule granted in a namespace reaches no cluster-scoped policy",
            vec![rule(
                &["admissionregistration.k8s.io"],
                &["validatingadmissionpolicies"],
                &["patch"],
            )],
            in_namespaces(payments()),
            &[],
        ),
        row(
            "deletes webhook configurations",
            vec![rule(
                &["admissionregistration.k8s.io"],
                &[
                    "validatingwebhookconfigurations",
                    "mutatingwebhookconfigurations",
                ],
                &["delete"],
            )],
            cluster(),
            &[AdmissionConfigWrite],
        ),
        row(
            "reads admission configuration only",
            vec![rule(
                &["admissionregistration.k8s.io"],
                &["*"],
                &["get", "list", "watch"],
            )],
            cluster(),
            &[],
        ),
        row(
            "mints ServiceAccount tokens in kubepim's namespace",
            vec![rule(&[""], &["serviceaccounts/token"], &["create"])],
            in_namespaces(operator_and_payments()),
            &[OperatorNamespace],
        ),
        row(
            "mints ServiceAccount tokens elsewhere only",
            vec![rule(&[""], &["serviceaccounts/token"], &["create"])],
            in_namespaces(payments()),
            &[],
        ),
    ]
}

#[test]
fn risk_flags_table() {
    let mut failures = Vec::new();
    for r in rows() {
        let got = assess(&r.rules, r.reach);
        if got != r.want {
            failures.push(format!("{}: got {got:?}, want {:?}", r.what, r.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn flags_are_sorted_unique_and_named_for_status() {
    let all = assess(&[rule(&["*"], &["*"], &["*"])], cluster_with_operator());
    assert_eq!(all, RiskFlag::ALL.to_vec());
    let names: Vec<&str> = all.iter().map(|f| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "Bind",
            "Escalate",
            "Impersonate",
            "RBACWrite",
            "ClusterSecretsRead",
            "ClusterPodCreate",
            "OperatorNamespace",
            "KubepimWrite",
            "AdmissionConfigWrite"
        ]
    );
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
}

#[test]
fn matching_follows_the_rbac_authorizer() {
    let r = rule(&["apps"], &["deployments", "*/scale"], &["get", "patch"]);
    assert!(allows(&r, "apps", "deployments", "get"));
    assert!(allows(&r, "apps", "statefulsets/scale", "patch"));
    assert!(allows(&r, "apps", "deployments/scale", "get"));
    assert!(!allows(&r, "apps", "deployments/status", "get"));
    assert!(!allows(&r, "apps", "statefulsets", "get"));
    assert!(!allows(&r, "", "deployments", "get"));
    assert!(!allows(&r, "apps", "deployments", "delete"));
    // Exact, case-sensitive names.
    assert!(!allows(&r, "Apps", "deployments", "get"));
    assert!(!allows(&r, "apps", "Deployments", "get"));
    // A subresource wildcard does not match the resource itself.
    let sub = rule(&[""], &["*/exec"], &["create"]);
    assert!(allows(&sub, "", "pods/exec", "create"));
    assert!(!allows(&sub, "", "pods", "create"));
    assert!(!allows(&sub, "", "exec", "create"));
}

#[test]
fn summary_names_every_flag_or_says_low() {
    let (reason, message) = summary(&[]);
    assert_eq!(reason, reasons::RISK_LOW);
    assert!(message.contains("cannot bind"), "{message}");
    let (reason, message) = summary(&[Bind, ClusterSecretsRead]);
    assert_eq!(reason, reasons::RISK_ELEVATED);
    assert!(message.contains("Bind (can bind roles"), "{message}");
    assert!(
        message.contains("ClusterSecretsRead (reads secrets cluster-wide)"),
        "{message}"
    );
    let (_, all) = summary(&RiskFlag::ALL);
    for flag in RiskFlag::ALL {
        assert!(all.contains(flag.as_str()), "{all}");
    }
}
