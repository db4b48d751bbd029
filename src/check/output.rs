//! How `kubepim check` prints its report: text for people, JSON for programs, and GitHub
//! workflow commands so that findings show up as annotations on the pull request's files.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Finding, InputError, Report, Severity};

/// Version of the JSON document; bumped only when a field changes meaning or goes away.
pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per finding (`FILE: KIND/NAME: SEVERITY: [FIELD: ]MESSAGE`) and a summary.
    #[default]
    Text,
    /// One JSON document (see the README, "kubepim check").
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`) and the summary.
    Github,
}

/// The report as `format` prints it, ending in a newline.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => {
            let mut out = String::new();
            for finding in &report.findings {
                let _ = writeln!(out, "{finding}");
            }
            let _ = writeln!(out, "{}", report.summary());
            out
        }
        Format::Json => {
            let findings: Vec<Value> = report
                .findings
                .iter()
                .map(|f| finding_json(f, report.line(f)))
                .collect();
            let document = json!({
                "version": JSON_VERSION,
                "findings": findings,
                "errors": [],
                "summary": {
                    "files": report.files,
                    "objects": report.objects,
                    "ignored": report.ignored,
                    "errors": report.count(Severity::Error),
                    "warnings": report.count(Severity::Warning),
                    "infos": report.count(Severity::Info),
                    "text": report.summary(),
                },
            });
            format!("{document:#}\n")
        }
        Format::Github => {
            let mut out = String::new();
            for finding in &report.findings {
                let mut properties = format!("file={}", property(&finding.source.file));
                if let Some(line) = report.line(finding) {
                    let _ = write!(properties, ",line={line}");
                }
                let _ = write!(
                    properties,
                    ",title={}",
                    property(&format!("kubepim check: {}/{}", finding.kind, finding.name))
                );
                let mut message = String::new();
                if let Some(field) = &finding.field {
                    let _ = write!(message, "{field}: ");
                }
                message.push_str(&finding.message);
                let _ = writeln!(
                    out,
                    "::{} {properties}::{}",
                    command(finding.severity),
                    data(&message)
                );
            }
            // Plain lines are log output in a workflow: the summary stays readable there.
            let _ = writeln!(out, "{}", report.summary());
            out
        }
    }
}

/// What stdout carries when the input cannot be checked (exit code 2). The text format says it
/// on stderr only, as before.
pub fn render_input_errors(errors: &[InputError], format: Format) -> String {
    match format {
        Format::Text => String::new(),
        Format::Json => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| json!({"file": input_path(e), "message": e.to_string()}))
                .collect();
            let document = json!({
                "version": JSON_VERSION,
                "findings": [],
                "errors": errors,
                "summary": Value::Null,
            });
            format!("{document:#}\n")
        }
        Format::Github => errors
            .iter()
            .map(|e| {
                format!(
                    "::error file={},title={}::{}\n",
                    property(input_path(e)),
                    property("kubepim check: input"),
                    data(&e.to_string())
                )
            })
            .collect(),
    }
}

fn finding_json(finding: &Finding, line: Option<usize>) -> Value {
    json!({
        "file": finding.source.file,
        "line": line,
        "document": finding.source.document,
        "kind": finding.kind,
        "name": finding.name,
        "severity": finding.severity.as_str(),
        "field": finding.field,
        "message": finding.message,
    })
}

fn input_path(error: &InputError) -> &str {
    match error {
        InputError::Missing { path }
        | InputError::Unreadable { path, .. }
        | InputError::InvalidYaml { path, .. }
        | InputError::NoYamlFiles { path } => path,
    }
}

fn command(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "notice",
    }
}

/// Escaping of a workflow command's message: a newline would end the command and the rest
/// would print as a plain log line.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping of a property value: `,` and `:` also separate properties from each other and from
/// the message.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Source;
    use std::collections::BTreeMap;

    fn report() -> Report {
        let finding = |document, severity, field: Option<&str>, message: &str| Finding {
            source: Source {
                file: "dir/a,b.yaml".into(),
                file_index: 0,
                document,
            },
            kind: "Eligibility".into(),
            name: "e".into(),
            severity,
            field: field.map(str::to_owned),
            message: message.into(),
        };
        Report {
            findings: vec![
                finding(
                    1,
                    Severity::Error,
                    Some("spec.role"),
                    "no PrivilegedRole \"x\"\n100%",
                ),
                finding(2, Severity::Warning, None, "ended"),
                finding(3, Severity::Info, None, "skipped"),
            ],
            files: 1,
            objects: 2,
            ignored: 1,
            // The third document's line is unknown.
            lines: BTreeMap::from([((0, 1), 4), ((0, 2), 20)]),
        }
    }

    #[test]
    fn github_commands_are_escaped_and_carry_lines_where_known() {
        let out = render(&report(), Format::Github);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "::error file=dir/a%2Cb.yaml,line=4,title=kubepim check%3A Eligibility/e::\
                 spec.role: no PrivilegedRole \"x\"%0A100%25",
                "::warning file=dir/a%2Cb.yaml,line=20,title=kubepim check%3A Eligibility/e::ended",
                "::notice file=dir/a%2Cb.yaml,title=kubepim check%3A Eligibility/e::skipped",
                "checked 2 objects in 1 file: 1 error, 1 warning (1 document of other kinds ignored)",
            ]
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let value: Value = serde_json::from_str(&render(&report(), Format::Json)).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(
            value["findings"][0],
            json!({
                "file": "dir/a,b.yaml", "line": 4, "document": 1, "kind": "Eligibility",
                "name": "e", "severity": "error", "field": "spec.role",
                "message": "no PrivilegedRole \"x\"\n100%",
            })
        );
        assert_eq!(value["findings"][2]["line"], Value::Null);
        assert_eq!(value["findings"][2]["field"], Value::Null);
        assert_eq!(value["errors"], json!([]));
        let summary = &value["summary"];
        assert_eq!(
            (
                &summary["errors"],
                &summary["warnings"],
                &summary["infos"],
                &summary["files"],
                &summary["objects"],
                &summary["ignored"]
            ),
            (
                &json!(1),
                &json!(1),
                &json!(1),
                &json!(1),
                &json!(2),
                &json!(1)
            )
        );
    }

    #[test]
    fn text_is_one_line_per_finding_and_the_summary() {
        let out = render(&report(), Format::Text);
        assert!(out.ends_with("\nchecked 2 objects in 1 file: 1 error, 1 warning (1 document of other kinds ignored)\n"));
        assert!(out.contains("\ndir/a,b.yaml: Eligibility/e: warning: ended\n"));
        assert!(out.starts_with("dir/a,b.yaml: Eligibility/e: error: spec.role: "));
    }

    #[test]
    fn input_errors_on_stdout_for_programs_only() {
        let errors = [InputError::Missing {
            path: "nope".into(),
        }];
        assert_eq!(render_input_errors(&errors, Format::Text), "");
        assert_eq!(
            render_input_errors(&errors, Format::Github),
            "::error file=nope,title=kubepim check%3A input::nope: no such file or directory\n"
        );
        let value: Value =
            serde_json::from_str(&render_input_errors(&errors, Format::Json)).unwrap();
        assert_eq!(value["errors"][0]["file"], "nope");
        assert_eq!(value["summary"], Value::Null);
    }
}
