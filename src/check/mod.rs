//! Offline validation of policy YAML (`kubepim check PATH…`), for GitOps repositories before
//! merge.
//!
//! Every kubepim object is checked on its own against the CRD's schema and CEL rules (the same
//! ones the API server enforces; transition rules need an old object and do not apply), then the
//! set as a whole: references between objects, time windows, approver quorums, and whether each
//! request with a requester would be granted by the operator's own validation.
//!
//! Exit codes: 0 clean (warnings allowed), 1 errors found, 2 input that cannot be checked.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

mod findings;
mod load;
mod objects;
mod output;
mod rules;
mod schema;

pub use findings::{Finding, Severity, Source};
pub use load::InputError;
pub use output::Format;

/// The outcome of checking a set of files.
#[derive(Debug)]
pub struct Report {
    /// In report order: by file, then by document.
    pub findings: Vec<Finding>,
    pub files: usize,
    /// kubepim objects checked.
    pub objects: usize,
    /// Documents of other kinds, skipped.
    pub ignored: usize,
    /// The line each document starts on, by (file index, document), where it is known.
    pub lines: BTreeMap<(usize, usize), usize>,
}

impl Report {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// The 1-based line of the document a finding is about, where it is known.
    pub fn line(&self, finding: &Finding) -> Option<usize> {
        let source = &finding.source;
        self.lines
            .get(&(source.file_index, source.document))
            .copied()
    }

    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    /// `checked 12 objects in 5 files: 0 errors, 1 warning`.
    pub fn summary(&self) -> String {
        fn counted(n: usize, what: &str) -> String {
            format!("{n} {what}{}", if n == 1 { "" } else { "s" })
        }
        let mut line = format!(
            "checked {} in {}: {}, {}",
            counted(self.objects, "object"),
            counted(self.files, "file"),
            counted(self.count(Severity::Error), "error"),
            counted(self.count(Severity::Warning), "warning"),
        );
        if self.ignored > 0 {
            line.push_str(&format!(
                " ({} of other kinds ignored)",
                counted(self.ignored, "document")
            ));
        }
        line
    }
}

/// Checks the YAML files at `paths` (files, or directories searched recursively), with time
/// windows and requests evaluated at `now`.
///
/// Fails only when the input cannot be checked at all; problems in the policy are findings.
pub fn check_paths(paths: &[PathBuf], now: DateTime<Utc>) -> Result<Report, Vec<InputError>> {
    let files = load::find_yaml_files(paths)?;
    let mut documents = Vec::new();
    let mut lines = BTreeMap::new();
    let mut errors = Vec::new();
    for (index, file) in files.iter().enumerate() {
        match load::read_documents(file, index) {
            Ok(found) => {
                let numbered = found.lines.iter().enumerate();
                lines.extend(numbered.map(|(i, line)| ((index, i + 1), *line)));
                documents.extend(found.documents);
            }
            Err(e) => errors.push(e),
        }
    }
    // Checking the rest would report references into the unreadable file as missing.
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut findings = findings::Findings::default();
    let (set, counts) = objects::Reader::default().read(&documents, &mut findings);
    rules::check_set(&set, now, &mut findings);
    Ok(Report {
        findings: findings.into_sorted(),
        files: files.len(),
        objects: counts.objects,
        ignored: counts.ignored,
        lines,
    })
}

/// `kubepim check`: prints the findings and a summary in `format`, and returns the exit code
/// (the same for every format).
pub fn run(paths: &[PathBuf], now: DateTime<Utc>, format: Format) -> ExitCode {
    match check_paths(paths, now) {
        Ok(report) => {
            print!("{}", output::render(&report, format));
            if report.has_errors() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            print!("{}", output::render_input_errors(&errors, format));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(findings: Vec<Finding>, ignored: usize) -> Report {
        Report {
            findings,
            files: 5,
            objects: 12,
            ignored,
            lines: BTreeMap::new(),
        }
    }

    fn finding(severity: Severity) -> Finding {
        Finding {
            source: Source {
                file: "f.yaml".into(),
                file_index: 0,
                document: 1,
            },
            kind: "Eligibility".into(),
            name: "e".into(),
            severity,
            field: None,
            message: "m".into(),
        }
    }

    #[test]
    fn summary_counts_with_plurals() {
        assert_eq!(
            report(vec![finding(Severity::Warning), finding(Severity::Info)], 0).summary(),
            "checked 12 objects in 5 files: 0 errors, 1 warning"
        );
        assert_eq!(
            report(vec![finding(Severity::Error)], 2).summary(),
            "checked 12 objects in 5 files: 1 error, 0 warnings (2 documents of other kinds ignored)"
        );
    }

    #[test]
    fn only_errors_fail_the_check() {
        assert!(!report(vec![finding(Severity::Warning), finding(Severity::Info)], 0).has_errors());
        assert!(report(vec![finding(Severity::Error)], 0).has_errors());
    }

    #[test]
    fn files_are_checked_together() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("role.yaml"),
            "apiVersion: kubepim.io/v1alpha1\nkind: PrivilegedRole\nmetadata: {name: view}\n\
             spec: {roleRef: {kind: ClusterRole, name: view}, scope: {clusterWide: true}, \
             approval: {requiredApprovals: 0}}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("elig.yaml"),
            "apiVersion: kubepim.io/v1alpha1\nkind: Eligibility\nmetadata: {name: e}\n\
             spec: {role: view, subjects: [{kind: User, name: alice}]}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: payments}\n",
        )
        .unwrap();
        let report = check_paths(&[dir.path().to_path_buf()], Utc::now()).unwrap();
        assert_eq!((report.files, report.objects, report.ignored), (2, 2, 1));
        assert!(!report.has_errors(), "{:?}", report.findings);
    }

    #[test]
    fn unreadable_input_is_an_error_not_a_finding() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "a: [").unwrap();
        let missing = dir.path().join("missing");
        let errors = check_paths(&[dir.path().to_path_buf(), missing], Utc::now()).unwrap_err();
        assert_eq!(
            errors.len(),
            1,
            "path errors are reported before files are read: {errors:?}"
        );
        let errors = check_paths(&[dir.path().to_path_buf()], Utc::now()).unwrap_err();
        assert!(
            matches!(errors[0], InputError::InvalidYaml { .. }),
            "{errors:?}"
        );
    }
}
