//! What `kubepim check` reports: one finding per problem, tied to the object it is about.
use std::fmt;

/// Where an object was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file as the user will recognise it (the path as found from the given arguments).
    pub file: String,
    /// Position of the file in the sorted list of checked files: findings print in file order.
    pub file_index: usize,
    /// 1-based position of the document in its file (empty documents are not counted).
    pub document: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Not a problem: something was skipped (e.g. a document of another kind).
    Info,
    /// Allowed, but probably not what the author meant.
    Warning,
    /// The API server or the operator would refuse or ignore this.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// One problem with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub source: Source,
    /// `PrivilegedRole`, `Eligibility`, `ActivationRequest`, or the kind of an ignored document.
    pub kind: String,
    pub name: String,
    pub severity: Severity,
    /// The field the finding is about, e.g. `spec.approval.requiredApprovals`, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}/{}: {}: ",
            self.source.file,
            self.kind,
            self.name,
            self.severity.as_str()
        )?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The object a finding is about: where it is, what kind and what name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub source: Source,
    pub kind: String,
    pub name: String,
}

/// Collects findings in the order the checks produce them.
#[derive(Debug, Default)]
pub struct Findings {
    items: Vec<Finding>,
}

impl Findings {
    pub fn push(
        &mut self,
        subject: &Subject,
        severity: Severity,
        field: Option<&str>,
        message: impl Into<String>,
    ) {
        self.items.push(Finding {
            source: subject.source.clone(),
            kind: subject.kind.clone(),
            name: subject.name.clone(),
            severity,
            field: field.map(str::to_owned),
            message: message.into(),
        });
    }

    pub fn error(&mut self, subject: &Subject, field: Option<&str>, message: impl Into<String>) {
        self.push(subject, Severity::Error, field, message);
    }

    pub fn warning(&mut self, subject: &Subject, field: Option<&str>, message: impl Into<String>) {
        self.push(subject, Severity::Warning, field, message);
    }

    pub fn info(&mut self, subject: &Subject, message: impl Into<String>) {
        self.push(subject, Severity::Info, None, message);
    }

    /// The findings in report order: by file, then by document, then in the order the checks
    /// found them (schema and CEL before cross-object rules).
    ///
    /// A field that already has an error (on itself, a part of it, or a field it is part of)
    /// gets no further finding: the CRD's own CEL rules and the semantic rules overlap on
    /// purpose (the semantic ones look further), and one problem should be reported once.
    pub fn into_sorted(self) -> Vec<Finding> {
        let mut items = self.items;
        // A stable sort keeps the checks' order within one document.
        items.sort_by_key(|f| (f.source.file_index, f.source.document));
        let mut errors_at: Vec<(usize, usize, String)> = Vec::new();
        items
            .into_iter()
            .filter(|f| {
                let Some(field) = &f.field else { return true };
                let (file, document) = (f.source.file_index, f.source.document);
                if errors_at
                    .iter()
                    .any(|(fi, d, at)| (*fi, *d) == (file, document) && overlaps(at, field))
                {
                    return false;
                }
                if f.severity == Severity::Error {
                    errors_at.push((file, document, field.clone()));
                }
                true
            })
            .collect()
    }
}

/// Is one field path the other, or inside it? (`spec.namespaces[0]` is inside `spec.namespaces`,
/// `spec.namespace` is not.)
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    };
    inside(a, b) || inside(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(file_index: usize, document: usize) -> Subject {
        Subject {
            source: Source {
                file: format!("f{file_index}.yaml"),
                file_index,
                document,
            },
            kind: "PrivilegedRole".into(),
            name: "r".into(),
        }
    }

    #[test]
    fn displays_one_line_with_field() {
        let mut findings = Findings::default();
        findings.error(&subject(0, 1), Some("spec.maxDuration"), "too long");
        findings.warning(&subject(0, 1), None, "odd");
        let lines: Vec<String> = findings
            .into_sorted()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "f0.yaml: PrivilegedRole/r: error: spec.maxDuration: too long",
                "f0.yaml: PrivilegedRole/r: warning: odd",
            ]
        );
    }

    #[test]
    fn sorted_by_file_then_document_then_discovery() {
        let mut findings = Findings::default();
        findings.error(&subject(1, 1), None, "c");
        findings.error(&subject(0, 2), None, "b");
        findings.error(&subject(0, 1), None, "a1");
        findings.warning(&subject(0, 1), None, "a2");
        let messages: Vec<String> = findings
            .into_sorted()
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(messages, ["a1", "a2", "b", "c"]);
    }

    #[test]
    fn one_error_per_field() {
        let mut findings = Findings::default();
        findings.error(&subject(0, 1), Some("spec.notAfter"), "from CEL");
        findings.error(&subject(0, 1), Some("spec.notAfter"), "from a rule");
        findings.warning(&subject(0, 1), Some("spec.notAfter"), "also from a rule");
        findings.error(&subject(0, 2), Some("spec.notAfter"), "another object");
        findings.error(&subject(0, 1), None, "no field");
        findings.error(&subject(0, 1), None, "no field either");
        let messages: Vec<String> = findings
            .into_sorted()
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(
            messages,
            ["from CEL", "no field", "no field either", "another object"]
        );
    }

    #[test]
    fn an_error_inside_a_field_hides_later_findings_on_the_whole_field() {
        let mut findings = Findings::default();
        findings.error(
            &subject(0, 1),
            Some("spec.namespaces[0]"),
            "not a DNS label",
        );
        findings.error(&subject(0, 1), Some("spec.namespaces"), "outside the scope");
        findings.error(
            &subject(0, 1),
            Some("spec.namespacesExtra"),
            "a different field",
        );
        let messages: Vec<String> = findings
            .into_sorted()
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(messages, ["not a DNS label", "a different field"]);
        assert!(overlaps("spec.a", "spec.a.b") && overlaps("spec.a[1]", "spec.a"));
        assert!(!overlaps("spec.a", "spec.ab") && !overlaps("spec.a", "spec.b"));
    }

    #[test]
    fn a_warning_does_not_hide_a_later_error() {
        let mut findings = Findings::default();
        findings.warning(&subject(0, 1), Some("spec.role"), "first a warning");
        findings.error(&subject(0, 1), Some("spec.role"), "then an error");
        assert_eq!(findings.into_sorted().len(), 2);
    }
}
