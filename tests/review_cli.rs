//! `kubepim review report` and `kubepim check` with a review export, as the built binary runs.
use std::process::Command;

fn kubepim(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kubepim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run kubepim");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const EXPORT: &str = "tests/fixtures/reviews/q3-export.yaml";

#[test]
fn report_from_an_export_as_csv_markdown_and_json() {
    let (code, csv, err) = kubepim(&["review", "report", "--file", EXPORT, "-o", "csv"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "item,eligibility,role,subjectKind,subject,activations,lastUsed,elevatedHours,approvers,auditedRequests,unusedGrants,recommendation,outcome,decisions",
            "payments/User/alice,payments,payments-admin,User,alice,0,,0.0,,,,Remove,Remove,carol Remove",
            "payments/User/bob,payments,payments-admin,User,bob,3,2026-09-12T08:00:00Z,4.5,carol,,,Keep,Keep,",
        ]
    );
    let (code, md, _) = kubepim(&["review", "report", "--file", EXPORT]);
    assert_eq!(code, Some(0));
    assert!(
        md.starts_with("# Access review q3\n\n- Phase: Closed\n"),
        "{md}"
    );
    assert!(md.contains("| carol Remove | Remove |"), "{md}");
    let (code, json, _) = kubepim(&["review", "report", "--file", EXPORT, "-o", "json"]);
    assert_eq!(code, Some(0));
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(doc["items"][0]["decisions"][0]["comment"], "left the team");
}

#[test]
fn an_unreadable_export_is_exit_2() {
    let (code, _, err) = kubepim(&[
        "review",
        "report",
        "--file",
        "tests/fixtures/reviews/none.yaml",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn check_reports_a_removed_subject_still_in_git() {
    let (code, out, err) = kubepim(&["check", "tests/fixtures/reviews/"]);
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains(
            "tests/fixtures/reviews/policy.yaml: Eligibility/payments: error: spec.subjects[1]: \
             User alice was removed by access review q3"
        ),
        "{out}"
    );
}
