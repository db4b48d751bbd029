use super::*;
use crate::check::findings::Finding;

fn read(yaml: &str) -> (PolicySet, DocumentCounts, Vec<Finding>) {
    let documents: Vec<Document> = serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, value)| Document {
            source: Source {
                file: "test.yaml".into(),
                file_index: 0,
                document: i + 1,
            },
            value,
        })
        .collect();
    let mut findings = Findings::default();
    let (set, counts) = Reader::default().read(&documents, &mut findings);
    (set, counts, findings.into_sorted())
}

fn lines(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}

const ROLE: &str = "
apiVersion: kubepim.io/v1alpha1
kind: PrivilegedRole
metadata: {name: view}
spec:
  roleRef: {kind: ClusterRole, name: view}
  scope: {clusterWide: true}
  approval: {requiredApprovals: 0}
";

#[test]
fn reads_the_three_kinds() {
    let yaml = format!(
        "{ROLE}---
apiVersion: kubepim.io/v1alpha1
kind: Eligibility
metadata: {{name: alice-view}}
spec: {{role: view, subjects: [{{kind: User, name: alice}}]}}
---
apiVersion: kubepim.io/v1alpha1
kind: ActivationRequest
metadata: {{name: alice-view-1}}
spec: {{role: view, justification: look}}
"
    );
    let (set, counts, findings) = read(&yaml);
    assert_eq!(lines(&findings), Vec::<String>::new());
    assert_eq!(
        (set.roles.len(), set.eligibilities.len(), set.requests.len()),
        (1, 1, 1)
    );
    assert_eq!(
        counts,
        DocumentCounts {
            objects: 3,
            ignored: 0
        }
    );
    assert_eq!(set.roles[0].subject.name, "view");
    assert_eq!(set.declared.len(), 3);
}

#[test]
fn other_kinds_are_ignored_with_a_note() {
    let (set, counts, findings) = read("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    assert_eq!(
        counts,
        DocumentCounts {
            objects: 0,
            ignored: 1
        }
    );
    assert!(set.declared.is_empty());
    assert_eq!(
        lines(&findings),
        ["test.yaml: ConfigMap/x: info: not a kubepim.io/v1alpha1 object; ignored"]
    );
}

#[test]
fn a_wrong_kubepim_version_or_kind_is_an_error() {
    let (_, counts, findings) = read(
        "apiVersion: kubepim.io/v1\nkind: PrivilegedRole\nmetadata: {name: x}\n---\n\
         apiVersion: kubepim.io/v1alpha1\nkind: Role\nmetadata: {name: z}\n",
    );
    assert_eq!(
        counts,
        DocumentCounts {
            objects: 2,
            ignored: 0
        }
    );
    let lines = lines(&findings);
    assert!(lines[0].starts_with("test.yaml: PrivilegedRole/x: error: apiVersion \"kubepim.io/v1\" with kind \"PrivilegedRole\" is not a kubepim kind"), "{lines:?}");
    assert!(
        lines[1].starts_with(
            "test.yaml: Role/z: error: apiVersion \"kubepim.io/v1alpha1\" with kind \"Role\""
        ),
        "{lines:?}"
    );
}

#[test]
fn metadata_name_namespace_and_status() {
    let yaml = ROLE
        .replace(
            "metadata: {name: view}",
            "metadata: {name: View_1, namespace: default}",
        )
        .replace(
            "approval: {requiredApprovals: 0}",
            "approval: {requiredApprovals: 0}\nstatus: {activeGrants: 1}",
        );
    let (_, _, findings) = read(&yaml);
    assert_eq!(
        lines(&findings),
        [
            "test.yaml: PrivilegedRole/View_1: error: metadata.name: \"View_1\" is not a valid name: lower-case letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit",
            "test.yaml: PrivilegedRole/View_1: warning: metadata.namespace: PrivilegedRole is cluster-scoped: the namespace is ignored",
            "test.yaml: PrivilegedRole/View_1: warning: status: the operator writes status; the one in this file is ignored",
        ]
    );
    let (set, _, findings) = read(&ROLE.replace("metadata: {name: view}", "metadata: {}"));
    assert_eq!(
        lines(&findings),
        [
            "test.yaml: PrivilegedRole/(unnamed, document 1): error: metadata.name: required field is missing"
        ]
    );
    assert!(set.declared.is_empty());
}

#[test]
fn a_name_that_yaml_reads_as_a_boolean() {
    let (_, _, findings) = read(&ROLE.replace("{name: view}", "{name: yes}"));
    assert_eq!(
        lines(&findings),
        [
            "test.yaml: PrivilegedRole/true: error: metadata.name: must be a string, got boolean true \
          (quote it in YAML to make it a string)"
        ]
    );
}

#[test]
fn a_request_may_use_generate_name_but_not_carry_status() {
    let (_, _, findings) = read(
        "apiVersion: kubepim.io/v1alpha1\nkind: ActivationRequest\nmetadata: {generateName: alice-}\n\
         spec: {role: view}\nstatus: {phase: Active}\n",
    );
    assert_eq!(lines(&findings).len(), 1, "{findings:?}");
    assert!(
        lines(&findings)[0]
            .starts_with("test.yaml: ActivationRequest/alice-*: error: status: must not be set")
    );
}

#[test]
fn schema_violations_name_the_field_and_hide_the_deserialisation_error() {
    let yaml = ROLE.replace(
        "approval: {requiredApprovals: 0}",
        "approval: {requiredApprovals: two}\n  maxDuraton: 2h\n  defaultDuration: 1 hour",
    );
    let (set, _, findings) = read(&yaml);
    assert!(set.roles.is_empty());
    assert_eq!(
        set.declared.len(),
        1,
        "an unreadable role is still declared"
    );
    assert_eq!(
        lines(&findings),
        [
            "test.yaml: PrivilegedRole/view: error: spec.approval.requiredApprovals: must be of type integer, got string \"two\"",
            "test.yaml: PrivilegedRole/view: error: spec.defaultDuration: \"1 hour\" does not match ^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$",
            "test.yaml: PrivilegedRole/view: error: spec.maxDuraton: unknown field",
        ]
    );
}

#[test]
fn cel_rules_are_reported_with_their_field() {
    let (set, _, findings) = read(&ROLE.replace(
        "{clusterWide: true}",
        "{clusterWide: true, namespaces: [a]}",
    ));
    assert_eq!(
        set.roles.len(),
        1,
        "a role that breaks a CEL rule is still checked further"
    );
    assert_eq!(
        lines(&findings),
        [
            "test.yaml: PrivilegedRole/view: error: spec.scope: scope needs exactly one of: a non-empty namespaces list, or clusterWide: true"
        ]
    );
}

#[test]
fn dns_subdomain_names() {
    for good in ["a", "payments-admin", "a.b-c.d", "0"] {
        assert!(is_dns_subdomain(good), "{good}");
    }
    for bad in ["", "A", "a_b", "-a", "a-", "a..b", &"a".repeat(254)] {
        assert!(!is_dns_subdomain(bad), "{bad}");
    }
}

#[test]
fn a_budget_needs_both_fields_as_durations_and_fits_its_window() {
    let with_budget =
        |budget: &str| ROLE.replace("approval:", &format!("budget: {budget}\n  approval:"));
    let (set, _, findings) = read(&with_budget("{maxElevated: 8h, per: 168h}"));
    assert_eq!(lines(&findings), Vec::<String>::new());
    assert_eq!(set.roles.len(), 1);

    let (_, _, findings) = read(&with_budget("{maxElevated: 8h}"));
    assert_eq!(
        lines(&findings),
        ["test.yaml: PrivilegedRole/view: error: spec.budget.per: required field is missing"]
    );
    let (_, _, findings) = read(&with_budget("{maxElevated: 8h, per: 7d}"));
    assert_eq!(
        lines(&findings),
        [
            "test.yaml: PrivilegedRole/view: error: spec.budget.per: \"7d\" does not match ^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
        ]
    );
    let (_, _, findings) = read(&with_budget("{maxElevated: 9h, per: 8h}"));
    assert_eq!(
        lines(&findings),
        [
            "test.yaml: PrivilegedRole/view: error: spec.budget.maxElevated: budget.maxElevated must not exceed budget.per"
        ]
    );
}
