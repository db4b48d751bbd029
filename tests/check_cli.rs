//! `kubepim check` as CI runs it: the built binary, its output lines and its exit codes.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What one run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn crate_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs `kubepim check ARGS` from the crate root, so reported paths are relative ones.
fn check(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_kubepim"))
        .arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run kubepim");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn the_examples_are_clean() {
    // The real clock: the examples must stay clean for years, not only at a pinned instant.
    let run = check(&["examples/"]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.stdout,
        "checked 13 objects in 12 files: 0 errors, 0 warnings\n"
    );
}

/// Problems the examples exercise only far in the future: the time-bound eligibility ends.
#[test]
fn the_examples_warn_once_their_time_bound_eligibility_ended() {
    let run = check(&["examples", "--now", "2099-06-01T00:00:00Z"]);
    assert_eq!(
        run.code,
        Some(0),
        "warnings do not fail the check: {}",
        run.stdout
    );
    assert!(run.stdout.contains(
        "examples/eligibilities/contractor-erin.yaml: Eligibility/contractor-erin-cluster-view: warning: \
         spec.notAfter: the window ended at 2099-01-01T00:00:00Z"
    ));
    assert!(
        run.stdout
            .ends_with("checked 13 objects in 12 files: 0 errors, 1 warning\n")
    );
}

const BROKEN: &str = "tests/fixtures/broken";

fn broken() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| check(&[BROKEN, "--now", "2026-11-24T00:00:00Z"]))
}

/// Asserts that the broken set's report has a line for `object` in `file` with this severity
/// whose message starts with `message`.
#[track_caller]
fn reported(file: &str, object: &str, severity: &str, message: &str) {
    let prefix = format!("{BROKEN}/{file}: {object}: {severity}: {message}");
    let run = broken();
    assert!(
        run.stdout.lines().any(|line| line.starts_with(&prefix)),
        "no line starting with\n  {prefix}\nin\n{}",
        run.stdout
    );
}

#[test]
fn the_broken_set_fails_with_exit_code_1_and_a_summary() {
    let run = broken();
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    // Exact counts: a new finding (or a lost one) shows up here even if no line below names it.
    assert!(
        run.stdout.ends_with(
            "checked 25 objects in 5 files: 25 errors, 5 warnings (1 document of other kinds ignored)\n"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn every_line_has_the_documented_shape() {
    let run = broken();
    let lines: Vec<&str> = run.stdout.lines().collect();
    let (summary, findings) = lines.split_last().expect("output");
    assert!(summary.starts_with("checked "), "{summary}");
    let shape = regex::Regex::new(
        r"^tests/fixtures/broken/[a-z]+\.yaml: [A-Za-z]+/[^:]+: (error|warning|info): \S",
    )
    .expect("regex");
    for line in findings {
        assert!(shape.is_match(line), "{line}");
    }
    // Ordered by file, then document order within the file.
    let files: Vec<&str> = findings
        .iter()
        .filter_map(|l| l.split(':').next())
        .collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);
}

#[test]
fn role_problems() {
    reported(
        "roles.yaml",
        "PrivilegedRole/too-long",
        "error",
        "spec.defaultDuration: defaultDuration must not exceed maxDuration",
    );
    reported(
        "roles.yaml",
        "PrivilegedRole/too-long",
        "error",
        "spec.maxDuration: maxDuration may exceed 24h only for a breakGlass role",
    );
    reported(
        "roles.yaml",
        "PrivilegedRole/glass-with-approvals",
        "error",
        "spec.approval.requiredApprovals: a breakGlass role activates without approval",
    );
    reported(
        "roles.yaml",
        "PrivilegedRole/role-elsewhere",
        "error",
        "spec.scope.namespaces: a Role can only be bound in its own namespace",
    );
    reported(
        "roles.yaml",
        "PrivilegedRole/bad-ticket",
        "error",
        "spec.ticketPattern: \"^(INC|CHG-[0-9]+$\" is not a valid regular expression (unclosed group)",
    );
    reported(
        "roles.yaml",
        "PrivilegedRole/loose-ticket",
        "warning",
        "spec.ticketPattern: \"INC-[0-9]+\" is not anchored",
    );
    reported(
        "roles.yaml",
        "PrivilegedRole/robot-approvers",
        "error",
        "spec.approval.requiredApprovals: 2 approvals are required but only 1 distinct approver user(s)",
    );
    reported(
        "roles.yaml",
        "PrivilegedRole/robot-approvers",
        "warning",
        "spec.approval.approvers.users: system:serviceaccount:ci:approver-bot is a ServiceAccount",
    );
}

#[test]
fn schema_problems() {
    reported(
        "schema.yaml",
        "PrivilegedRole/typos",
        "error",
        "spec.maxDuraton: unknown field",
    );
    reported(
        "schema.yaml",
        "PrivilegedRole/typos",
        "error",
        "spec.defaultDuration: \"1 hour\" does not match",
    );
    reported(
        "schema.yaml",
        "PrivilegedRole/typos",
        "error",
        "spec.approval.requiredApprovals: must be at most 10, got 11",
    );
    reported(
        "schema.yaml",
        "Eligibility/nobody",
        "error",
        "spec.subjects: must have at least 1 items",
    );
    reported(
        "schema.yaml",
        "Eligibility/nobody",
        "error",
        "spec.namespaces[0]: \"Payments\" does not match",
    );
}

#[test]
fn eligibility_problems() {
    reported(
        "eligibilities.yaml",
        "Eligibility/missing-role",
        "error",
        "spec.role: PrivilegedRole payments-admn is not defined in the checked files",
    );
    reported(
        "eligibilities.yaml",
        "Eligibility/outside-scope",
        "error",
        "spec.namespaces: namespaces [kube-system] are outside the scope of role payments-admin",
    );
    reported(
        "eligibilities.yaml",
        "Eligibility/narrowing-cluster-wide",
        "error",
        "spec.namespaces: role cluster-view is granted cluster-wide",
    );
    reported(
        "eligibilities.yaml",
        "Eligibility/backwards-window",
        "error",
        "spec.notAfter: notAfter must be later than notBefore",
    );
    reported(
        "eligibilities.yaml",
        "Eligibility/ended-window",
        "warning",
        "spec.notAfter: the window ended at 2020-01-01T00:00:00Z",
    );
    reported(
        "eligibilities.yaml",
        "Eligibility/too-long-for-role",
        "error",
        "spec.maxDuration: 8h0m0s is longer than the maximum 4h0m0s of role payments-admin",
    );
    reported(
        "eligibilities.yaml",
        "Eligibility/bad-subjects",
        "error",
        "spec.subjects[0]: namespace is required for a ServiceAccount",
    );
    reported(
        "eligibilities.yaml",
        "Eligibility/bad-subjects",
        "warning",
        "spec.subjects[1]: group system:authenticated contains every authenticated user",
    );
}

#[test]
fn request_problems() {
    reported(
        "requests.yaml",
        "ActivationRequest/mallory-payments-admin",
        "error",
        "would be denied: NotEligible: mallory is not eligible for role payments-admin",
    );
    reported(
        "requests.yaml",
        "ActivationRequest/alice-bad-ticket",
        "error",
        "would be denied: TicketMismatch: ticket JIRA-7 does not match",
    );
    reported(
        "requests.yaml",
        "ActivationRequest/alice-no-role",
        "error",
        "spec.role: would be denied: RoleNotFound: PrivilegedRole payments-superuser",
    );
    reported(
        "requests.yaml",
        "ActivationRequest/unstamped",
        "warning",
        "spec.requester: not set: admission stamps it",
    );
    reported(
        "requests.yaml",
        "ActivationRequest/pre-approved",
        "error",
        "status: must not be set",
    );
    reported(
        "requests.yaml",
        "ActivationRequest/pre-approved",
        "error",
        "would be denied: NamespaceNotAllowed: eligibility narrowing-cluster-wide",
    );
}

#[test]
fn name_and_kind_problems() {
    reported(
        "roles.yaml",
        "PrivilegedRole/cluster-view",
        "error",
        "metadata.name: duplicate PrivilegedRole name cluster-view: also defined in tests/fixtures/broken/misc.yaml",
    );
    reported(
        "misc.yaml",
        "Eligibility/old-version",
        "error",
        "apiVersion \"kubepim.io/v1beta1\" with kind \"Eligibility\" is not a kubepim kind",
    );
    reported(
        "misc.yaml",
        "Eligibility/true",
        "error",
        "metadata.name: must be a string, got boolean true (quote it",
    );
    reported(
        "misc.yaml",
        "ConfigMap/unrelated",
        "info",
        "not a kubepim.io/v1alpha1 object; ignored",
    );
}

#[test]
fn invalid_yaml_is_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: kubepim.io/v1alpha1\nkind: [PrivilegedRole\n",
    )
    .expect("write");
    let run = check(&[file.to_str().expect("utf-8 path")]);
    assert_eq!(run.code, Some(2), "stdout: {}", run.stdout);
    assert_eq!(
        run.stderr,
        format!(
            "error: {}: invalid YAML: line 2 column 7: unclosed bracket '['\n",
            file.display()
        )
    );
    assert_eq!(
        run.stdout, "",
        "nothing is checked when a file cannot be read"
    );
}

#[test]
fn a_missing_path_is_bad_input() {
    let run = check(&["examples", "no/such/dir"]);
    assert_eq!(run.code, Some(2), "stdout: {}", run.stdout);
    assert_eq!(
        run.stderr,
        "error: no/such/dir: no such file or directory\n"
    );
}

#[test]
fn a_directory_without_yaml_is_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = check(&[dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(run.code, Some(2), "stdout: {}", run.stdout);
    assert!(
        run.stderr
            .contains("no *.yaml or *.yml files in this directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_fixture_directory_exists() {
    // Guards the relative paths above against a moved fixture directory.
    assert!(crate_path(BROKEN).is_dir());
}

/// The lines from `line` (1-based) up to the next `---`: the document a finding points at.
fn document_at(file: &str, line: usize) -> String {
    let text = std::fs::read_to_string(crate_path(file)).expect("read fixture");
    text.lines()
        .skip(line - 1)
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("---"))
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

#[test]
fn output_text_is_the_default() {
    let run = check(&[BROKEN, "--now", "2026-11-24T00:00:00Z", "-o", "text"]);
    assert_eq!((run.code, &run.stdout), (Some(1), &broken().stdout));
}

#[test]
fn output_json_is_one_document_with_lines_and_the_same_exit_code() {
    let run = check(&[BROKEN, "--now", "2026-11-24T00:00:00Z", "-o", "json"]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(report["version"], 1);
    let summary = &report["summary"];
    assert_eq!(
        (&summary["errors"], &summary["warnings"]),
        (&25.into(), &5.into())
    );
    assert_eq!(
        (&summary["files"], &summary["objects"]),
        (&5.into(), &25.into())
    );
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(
        findings.len(),
        broken().stdout.lines().count() - 1,
        "one per text line"
    );
    for f in findings {
        let file = f["file"].as_str().expect("file");
        let line = f["line"]
            .as_u64()
            .expect("every fixture document has a known line") as usize;
        let name = f["name"].as_str().expect("name");
        // The line is where the object's document starts: its own name is in it (except the
        // fixture whose `name: yes` a YAML 1.1 reader turns into `true`).
        if !name.is_empty() && !name.starts_with('<') && name != "true" {
            let document = document_at(file, line);
            assert!(
                document.contains(name),
                "{file}:{line} is not the document of {name}:\n{document}"
            );
        }
        assert!(["error", "warning", "info"].contains(&f["severity"].as_str().expect("severity")));
        assert!(f["kind"].is_string() && f["message"].is_string());
        assert!(f["field"].is_string() || f["field"].is_null());
    }
}

#[test]
fn output_github_annotates_files_and_lines() {
    let run = check(&[BROKEN, "--now", "2026-11-24T00:00:00Z", "-o", "github"]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("::error file="), 25, "{}", run.stdout);
    assert_eq!(count("::warning file="), 5, "{}", run.stdout);
    let commands: Vec<&&str> = lines.iter().filter(|l| l.starts_with("::")).collect();
    for command in &commands {
        let (properties, message) = command
            .split_once("::")
            .and_then(|(_, rest)| rest.split_once("::"))
            .expect("::severity properties::message");
        assert!(
            properties.contains(&format!("file={BROKEN}/")) && properties.contains(",line="),
            "{command}"
        );
        assert!(!message.is_empty() && !message.contains('\n'));
    }
    assert_eq!(
        lines.last().copied(),
        Some(
            "checked 25 objects in 5 files: 25 errors, 5 warnings (1 document of other kinds ignored)"
        )
    );
    let clean = check(&["examples/", "-o", "github"]);
    assert_eq!(clean.code, Some(0));
    assert_eq!(
        clean.stdout,
        "checked 13 objects in 12 files: 0 errors, 0 warnings\n"
    );
}

#[test]
fn output_formats_keep_exit_code_2_for_bad_input() {
    let run = check(&["tests/fixtures/missing", "-o", "json"]);
    assert_eq!(run.code, Some(2));
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["errors"][0]["file"], "tests/fixtures/missing");
    assert!(report["summary"].is_null());
    let run = check(&["tests/fixtures/missing", "-o", "github"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stdout
            .starts_with("::error file=tests/fixtures/missing,"),
        "{}",
        run.stdout
    );
    assert_eq!(
        check(&["examples/", "-o", "yaml"]).code,
        Some(2),
        "clap rejects it"
    );
}
