//! `kubepim separation report` on an export, as an auditor runs it: no cluster.
use std::process::Command;

fn kubepim(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kubepim"))
        .args(args)
        .output()
        .expect("the kubepim binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const EXPORT: &str = "tests/fixtures/separation/export.yaml";
const AT: &str = "2026-03-02T00:00:00Z";

#[test]
fn an_export_shows_the_pair_approving_each_other() {
    let (code, json, err) = kubepim(&[
        "separation",
        "report",
        "--file",
        EXPORT,
        "--now",
        AT,
        "-o",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(doc["requests"], 2);
    let findings = doc["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{json}");
    assert_eq!(findings[0]["kind"], "ReciprocalApproval");
    assert_eq!(findings[0]["people"], serde_json::json!(["alice", "bob"]));

    // Outside the window (a day back from a month later) nothing is found.
    let (code, md, _) = kubepim(&[
        "separation",
        "report",
        "--file",
        EXPORT,
        "--now",
        "2026-04-15T00:00:00Z",
        "--window",
        "24h",
    ]);
    assert_eq!(code, Some(0));
    assert!(md.contains("Nothing found."), "{md}");
}

#[test]
fn an_unreadable_export_exits_2() {
    let (code, _, err) = kubepim(&[
        "separation",
        "report",
        "--file",
        "tests/fixtures/no-such-file.yaml",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read"), "{err}");
}
