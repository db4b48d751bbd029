//! One test (or more) per semantic rule, on small policy sets written as YAML.
use chrono::TimeZone;
use serde_json::Value;

use super::*;
use crate::check::findings::Source;
use crate::check::load::Document;
use crate::check::objects::Reader;

/// The instant the checks run at.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

const ROLE: &str = "
apiVersion: kubepim.io/v1alpha1
kind: PrivilegedRole
metadata: {name: payments-admin}
spec:
  roleRef: {kind: ClusterRole, name: admin}
  scope: {namespaces: [payments, payments-staging]}
  maxDuration: 4h
  approval: {requiredApprovals: 1, approvers: {users: [bob], groups: [sre-leads]}}
  ticketPattern: '^(INC|CHG)-[0-9]+$'
";

const ELIGIBILITY: &str = "
apiVersion: kubepim.io/v1alpha1
kind: Eligibility
metadata: {name: alice-payments-admin}
spec:
  role: payments-admin
  subjects: [{kind: User, name: alice}]
";

const REQUEST: &str = "
apiVersion: kubepim.io/v1alpha1
kind: ActivationRequest
metadata: {name: alice-payments-1}
spec:
  role: payments-admin
  namespaces: [payments]
  duration: 1h
  justification: INC-4211 payment retries stuck
  ticket: INC-4211
  requester: {username: alice, groups: [payments-oncall]}
";

/// Reads the documents (one per string) and runs every check; returns the report lines.
fn check(documents: &[&str]) -> Vec<String> {
    let documents: Vec<Document> = documents
        .iter()
        .enumerate()
        .map(|(i, yaml)| Document {
            source: Source {
                file: format!("{i}.yaml"),
                file_index: i,
                document: 1,
            },
            value: serde_saphyr::from_str::<Value>(yaml).unwrap(),
        })
        .collect();
    let mut findings = Findings::default();
    let (set, _) = Reader::default().read(&documents, &mut findings);
    check_set(&set, now(), &mut findings);
    findings
        .into_sorted()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn role_with(from: &str, to: &str) -> String {
    assert!(ROLE.contains(from), "{from:?} not in ROLE");
    ROLE.replace(from, to)
}

fn eligibility_with(extra_spec: &str) -> String {
    format!("{ELIGIBILITY}  {extra_spec}\n")
}

fn request_with(from: &str, to: &str) -> String {
    assert!(REQUEST.contains(from), "{from:?} not in REQUEST");
    REQUEST.replace(from, to)
}

#[test]
fn a_consistent_set_has_no_findings() {
    assert_eq!(check(&[ROLE, ELIGIBILITY, REQUEST]), Vec::<String>::new());
}

#[test]
fn duplicate_names_per_kind() {
    let lines = check(&[ROLE, ELIGIBILITY, ROLE]);
    assert_eq!(
        lines,
        [
            "2.yaml: PrivilegedRole/payments-admin: error: metadata.name: duplicate PrivilegedRole name \
          payments-admin: also defined in 0.yaml (document 1); the later one would replace it"
        ]
    );
    // The same name in different kinds is fine.
    let same_name_eligibility = ELIGIBILITY.replace("alice-payments-admin", "payments-admin");
    assert_eq!(check(&[ROLE, &same_name_eligibility]), Vec::<String>::new());
}

#[test]
fn eligibility_naming_a_missing_role() {
    assert_eq!(
        check(&[ELIGIBILITY]),
        [
            "0.yaml: Eligibility/alice-payments-admin: error: spec.role: PrivilegedRole payments-admin \
          is not defined in the checked files"
        ]
    );
}

#[test]
fn a_role_that_cannot_be_read_is_not_reported_missing_again() {
    let unreadable = role_with("maxDuration: 4h", "maxDuration: four hours");
    let lines = check(&[&unreadable, ELIGIBILITY]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("0.yaml: PrivilegedRole/payments-admin: error: spec.maxDuration:")
    );
}

#[test]
fn eligibility_namespaces_outside_the_role_scope() {
    assert_eq!(
        check(&[ROLE, &eligibility_with("namespaces: [payments]")]),
        Vec::<String>::new()
    );
    assert_eq!(
        check(&[
            ROLE,
            &eligibility_with("namespaces: [payments, billing, kube-system]")
        ]),
        [
            "1.yaml: Eligibility/alice-payments-admin: error: spec.namespaces: namespaces [billing, kube-system] \
          are outside the scope of role payments-admin, which allows [payments, payments-staging]"
        ]
    );
}

#[test]
fn eligibility_namespaces_cannot_narrow_a_cluster_wide_role() {
    let cluster_wide = role_with(
        "{namespaces: [payments, payments-staging]}",
        "{clusterWide: true}",
    );
    assert_eq!(check(&[&cluster_wide, ELIGIBILITY]), Vec::<String>::new());
    assert_eq!(
        check(&[&cluster_wide, &eligibility_with("namespaces: [payments]")]),
        [
            "1.yaml: Eligibility/alice-payments-admin: error: spec.namespaces: role payments-admin is granted \
          cluster-wide, which namespaces [payments] cannot narrow: the operator refuses every request resting \
          on this eligibility"
        ]
    );
}

#[test]
fn eligibility_window_that_ends_before_it_starts() {
    // Through the whole pipeline the CRD's CEL rule reports it, and only once.
    let backwards = "notBefore: 2027-02-01T00:00:00Z\n  notAfter: 2027-01-01T00:00:00Z";
    assert_eq!(
        check(&[ROLE, &eligibility_with(backwards)]),
        [
            "1.yaml: Eligibility/alice-payments-admin: error: spec.notAfter: notAfter must be later than notBefore"
        ]
    );
    // The rule on its own says more, should the CEL rule not be evaluated.
    let (set, _) = {
        let mut findings = Findings::default();
        let document = Document {
            source: Source {
                file: "e.yaml".into(),
                file_index: 0,
                document: 1,
            },
            value: serde_saphyr::from_str::<Value>(&eligibility_with(backwards)).unwrap(),
        };
        Reader::default().read(&[document], &mut findings)
    };
    let mut findings = Findings::default();
    eligibility_window(&set.eligibilities[0], now(), &mut findings);
    let lines: Vec<String> = findings
        .into_sorted()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "e.yaml: Eligibility/alice-payments-admin: error: spec.notAfter: the window is empty: \
          notAfter 2027-01-01T00:00:00Z is not later than notBefore 2027-02-01T00:00:00Z"
        ]
    );
}

#[test]
fn eligibility_window_already_ended_is_a_warning() {
    let ended = "notBefore: 2026-01-01T00:00:00Z\n  notAfter: 2026-11-24T12:00:00Z";
    assert_eq!(
        check(&[ROLE, &eligibility_with(ended)]),
        [
            "1.yaml: Eligibility/alice-payments-admin: warning: spec.notAfter: the window ended at \
          2026-11-24T12:00:00Z: this eligibility no longer allows anything; remove it"
        ]
    );
    let future = "notBefore: 2026-12-01T00:00:00Z\n  notAfter: 2099-01-01T00:00:00Z";
    assert_eq!(
        check(&[ROLE, &eligibility_with(future)]),
        Vec::<String>::new()
    );
}

#[test]
fn eligibility_max_duration_above_the_role_maximum() {
    assert_eq!(
        check(&[ROLE, &eligibility_with("maxDuration: 4h")]),
        Vec::<String>::new()
    );
    let hours = |h| format_duration(chrono::Duration::hours(h));
    assert_eq!(
        check(&[ROLE, &eligibility_with("maxDuration: 8h")]),
        [format!(
            "1.yaml: Eligibility/alice-payments-admin: error: spec.maxDuration: {} is longer than the \
             maximum {} of role payments-admin: an eligibility can only narrow its role",
            hours(8),
            hours(4)
        )]
    );
}

#[test]
fn system_groups_as_subjects_are_warned_about() {
    let everyone = ELIGIBILITY.replace(
        "[{kind: User, name: alice}]",
        "[{kind: User, name: alice}, {kind: Group, name: system:authenticated}, \
         {kind: Group, name: 'system:serviceaccounts:ci'}, {kind: Group, name: payments-oncall}]",
    );
    assert_eq!(
        check(&[ROLE, &everyone]),
        [
            "1.yaml: Eligibility/alice-payments-admin: warning: spec.subjects[1]: group system:authenticated \
             contains every authenticated user and ServiceAccount: all of them become eligible",
            "1.yaml: Eligibility/alice-payments-admin: warning: spec.subjects[2]: group system:serviceaccounts:ci \
             contains every ServiceAccount in namespace ci: all of them become eligible",
        ]
    );
}

#[test]
fn more_required_approvals_than_distinct_human_approvers() {
    // Two entries, so the CRD's size() rule passes; the list is a set, so the API server refuses
    // the repeat; and bob counts once.
    let repeated = role_with(
        "{requiredApprovals: 1, approvers: {users: [bob], groups: [sre-leads]}}",
        "{requiredApprovals: 2, approvers: {users: [bob, bob]}}",
    );
    assert_eq!(
        check(&[&repeated]),
        [
            "0.yaml: PrivilegedRole/payments-admin: error: spec.approval.approvers.users: duplicate value \"bob\"",
            "0.yaml: PrivilegedRole/payments-admin: error: spec.approval.requiredApprovals: 2 approvals are \
          required but only 1 distinct approver user(s) can give one (ServiceAccounts and repeated names do not \
          count) and no approver group is named: no request for this role can ever be approved"
        ]
    );
    let enough = role_with(
        "{requiredApprovals: 1, approvers: {users: [bob], groups: [sre-leads]}}",
        "{requiredApprovals: 2, approvers: {users: [bob, carol]}}",
    );
    assert_eq!(check(&[&enough]), Vec::<String>::new());
    // Fewer users than required, with no group: the CRD's own rule says so, once.
    let short = role_with(
        "{requiredApprovals: 1, approvers: {users: [bob], groups: [sre-leads]}}",
        "{requiredApprovals: 2, approvers: {users: [bob]}}",
    );
    let lines = check(&[&short]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with(
        "spec.approval.requiredApprovals: approval.requiredApprovals is more than the number of approver users, \
         and no approver group is named"
    ));
}

#[test]
fn service_account_approvers_are_warned_about_and_never_count() {
    let with_robot = role_with(
        "{requiredApprovals: 1, approvers: {users: [bob], groups: [sre-leads]}}",
        "{requiredApprovals: 2, approvers: {users: [bob, 'system:serviceaccount:ci:approver-bot'], \
         groups: ['system:serviceaccounts:ci']}}",
    );
    let lines = check(&[&with_robot]);
    assert_eq!(
        lines,
        [
            "0.yaml: PrivilegedRole/payments-admin: error: spec.approval.requiredApprovals: 2 approvals are \
             required but only 1 distinct approver user(s) can give one (ServiceAccounts and repeated names do not \
             count) and no approver group is named: no request for this role can ever be approved",
            "0.yaml: PrivilegedRole/payments-admin: warning: spec.approval.approvers.users: \
             system:serviceaccount:ci:approver-bot is a ServiceAccount: approvals by ServiceAccounts never count",
            "0.yaml: PrivilegedRole/payments-admin: warning: spec.approval.approvers.groups: \
             system:serviceaccounts:ci holds only ServiceAccounts: approvals by ServiceAccounts never count",
        ]
    );
}

#[test]
fn invalid_ticket_pattern() {
    let broken = role_with("'^(INC|CHG)-[0-9]+$'", "'^(INC|CHG-[0-9]+$'");
    let lines = check(&[&broken]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "0.yaml: PrivilegedRole/payments-admin: error: spec.ticketPattern: \"^(INC|CHG-[0-9]+$\" is not a \
             valid regular expression (unclosed group)"
        ),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("every request would be denied"));
}

#[test]
fn unanchored_ticket_pattern_is_a_warning() {
    let loose = role_with("'^(INC|CHG)-[0-9]+$'", "'INC-[0-9]+'");
    assert_eq!(
        check(&[&loose]),
        [
            "0.yaml: PrivilegedRole/payments-admin: warning: spec.ticketPattern: \"INC-[0-9]+\" is not anchored \
          with ^ and $: any ticket that merely contains a match is accepted"
        ]
    );
}

#[test]
fn a_request_that_would_be_denied() {
    let cases = [
        (
            request_with("username: alice", "username: mallory"),
            "would be denied: NotEligible: mallory is not eligible for role payments-admin",
        ),
        (
            request_with("duration: 1h", "duration: 5h"),
            "would be denied: DurationTooLong:",
        ),
        (
            request_with("ticket: INC-4211", "ticket: JIRA-1"),
            "would be denied: TicketMismatch:",
        ),
        (
            request_with("[payments]", "[billing]"),
            "would be denied: NamespaceNotAllowed:",
        ),
    ];
    for (request, expected) in cases {
        let lines = check(&[ROLE, ELIGIBILITY, &request]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!(
                "2.yaml: ActivationRequest/alice-payments-1: error: {expected}"
            )),
            "{lines:?}"
        );
    }
}

#[test]
fn a_request_larger_than_a_whole_budget_would_be_denied() {
    let role = role_with(
        "maxDuration: 4h",
        "maxDuration: 4h\n  budget: {maxElevated: 30m, per: 24h}",
    );
    let lines = check(&[&role, ELIGIBILITY, REQUEST]);
    assert_eq!(
        lines,
        [
            "2.yaml: ActivationRequest/alice-payments-1: error: would be denied: BudgetExceeded: alice \
          used 0s of 30m in the last 1d on role payments-admin; this request asks for 1h (budget: \
          spec.budget of PrivilegedRole payments-admin)"
        ]
    );
    let roomy = role_with(
        "maxDuration: 4h",
        "maxDuration: 4h\n  budget: {maxElevated: 1h, per: 24h}",
    );
    assert_eq!(check(&[&roomy, ELIGIBILITY, REQUEST]), Vec::<String>::new());
    let tight = eligibility_with("budget: {maxElevated: 30m, per: 24h}");
    let lines = check(&[ROLE, &tight, REQUEST]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with("(budget: spec.budget of Eligibility alice-payments-admin)"),
        "{lines:?}"
    );
}

#[test]
fn a_request_for_a_missing_role() {
    assert_eq!(
        check(&[ELIGIBILITY.replace("payments-admin", "x").as_str(), REQUEST]),
        [
            "0.yaml: Eligibility/alice-x: error: spec.role: PrivilegedRole x is not defined in the checked files",
            "1.yaml: ActivationRequest/alice-payments-1: error: spec.role: would be denied: RoleNotFound: \
             PrivilegedRole payments-admin is not defined in the checked files",
        ]
    );
}

#[test]
fn a_request_without_requester_cannot_be_evaluated() {
    let anonymous = request_with(
        "  requester: {username: alice, groups: [payments-oncall]}\n",
        "",
    );
    assert_eq!(
        check(&[ROLE, ELIGIBILITY, &anonymous]),
        [
            "2.yaml: ActivationRequest/alice-payments-1: warning: spec.requester: not set: admission stamps it \
          from the caller's identity, so whether this request would be granted cannot be checked offline"
        ]
    );
}

#[test]
fn regex_errors_are_summarised_on_one_line() {
    // Built at run time: a literal invalid pattern is (rightly) a clippy error.
    let unclosed = String::from("(a");
    let error = regex::Regex::new(&unclosed).unwrap_err();
    assert_eq!(regex_error_summary(&error), "unclosed group");
}

/// A closed review export: alice removed from alice-payments-admin, bob kept.
fn review_export(phase: &str) -> String {
    format!(
        "
apiVersion: kubepim.io/v1alpha1
kind: AccessReview
metadata: {{name: q3}}
spec:
  selector: {{roles: [payments-admin]}}
  reviewers: {{users: [carol]}}
  duration: 336h
status:
  phase: {phase}
  items:
    - id: alice-payments-admin/User/alice
      eligibility: alice-payments-admin
      eligibilityUid: u1
      eligibilityGeneration: 3
      role: payments-admin
      subject: {{kind: User, name: alice}}
      evidence: {{activations: 0}}
      recommendation: Remove
      recommendationReason: unused for 90 days
      outcome: Remove
    - id: alice-payments-admin/User/bob
      eligibility: alice-payments-admin
      eligibilityUid: u1
      eligibilityGeneration: 3
      role: payments-admin
      subject: {{kind: User, name: bob}}
      evidence: {{activations: 2}}
      recommendation: Keep
      recommendationReason: used
      outcome: Keep
"
    )
}

#[test]
fn a_subject_a_closed_review_removed_is_reported_while_still_in_git() {
    let both = ELIGIBILITY.replace(
        "[{kind: User, name: alice}]",
        "[{kind: User, name: bob}, {kind: User, name: alice}]",
    );
    assert_eq!(
        check(&[ROLE, &both, &review_export("Closed")]),
        [
            "1.yaml: Eligibility/alice-payments-admin: error: spec.subjects[1]: User alice was removed \
             by access review q3: drop it from this Eligibility (the operator stops honouring it, but \
             the next change to this file would make it eligible again)"
        ]
    );
    // Dropped in Git: clean. An open review has no outcome yet: nothing to report.
    let bob_only = ELIGIBILITY.replace("name: alice}]", "name: bob}]");
    assert_eq!(
        check(&[ROLE, &bob_only, &review_export("Closed")]),
        Vec::<String>::new()
    );
    assert_eq!(
        check(&[ROLE, &both, &review_export("Open")]),
        Vec::<String>::new()
    );
}
