//! From YAML documents to typed kubepim objects: kind dispatch, metadata, the CRD schema and the
//! CRD's CEL rules, each object on its own.
use std::collections::HashMap;

use kube::core::cel::{ErrorKind, ValidationErrors};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{AccessReview, ActivationRequest, Eligibility, GROUP, PrivilegedRole, VERSION};

use super::findings::{Findings, Source, Subject};
use super::load::Document;
use super::schema;

/// The kubepim kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    PrivilegedRole,
    Eligibility,
    ActivationRequest,
    /// Typically an export (`kubectl get accessreview -o yaml`): its closed outcomes are checked
    /// against the Eligibilities in Git.
    AccessReview,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::PrivilegedRole,
        Kind::Eligibility,
        Kind::ActivationRequest,
        Kind::AccessReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivilegedRole => "PrivilegedRole",
            Self::Eligibility => "Eligibility",
            Self::ActivationRequest => "ActivationRequest",
            Self::AccessReview => "AccessReview",
        }
    }

    fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// A typed object and where it came from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub subject: Subject,
    pub resource: T,
}

/// Every kubepim object of the checked files.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub roles: Vec<Located<PrivilegedRole>>,
    pub eligibilities: Vec<Located<Eligibility>>,
    pub requests: Vec<Located<ActivationRequest>>,
    pub reviews: Vec<Located<AccessReview>>,
    /// Every kubepim object with a name, including those that could not be read: duplicates
    /// are found among these, and a reference to an unreadable object is not reported as
    /// missing (its own errors say what is wrong).
    pub declared: Vec<(Kind, Subject)>,
}

impl PolicySet {
    pub fn is_declared(&self, kind: Kind, name: &str) -> bool {
        self.declared
            .iter()
            .any(|(k, s)| *k == kind && s.name == name)
    }
}

/// How many documents were kubepim objects, and how many were something else.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DocumentCounts {
    pub objects: usize,
    pub ignored: usize,
}

/// Object names are DNS subdomains (RFC 1123), as for every cluster-scoped custom resource.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Reads documents into a [`PolicySet`], reporting what is wrong with each object on its own.
pub struct Reader {
    schemas: HashMap<String, Value>,
}

impl Default for Reader {
    fn default() -> Self {
        let schemas = crate::crdgen::all_crds()
            .into_iter()
            .filter_map(|crd| {
                let schema = crd.spec.versions.first()?.schema.as_ref()?;
                let schema = serde_json::to_value(schema.open_api_v3_schema.as_ref()?).ok()?;
                Some((crd.spec.names.kind, schema))
            })
            .collect();
        Self { schemas }
    }
}

impl Reader {
    pub fn read(
        &self,
        documents: &[Document],
        findings: &mut Findings,
    ) -> (PolicySet, DocumentCounts) {
        let mut set = PolicySet::default();
        let mut counts = DocumentCounts::default();
        for document in documents {
            if self.read_one(document, &mut set, findings) {
                counts.objects += 1;
            } else {
                counts.ignored += 1;
            }
        }
        (set, counts)
    }

    /// Returns whether the document is a kubepim object (as opposed to something ignored).
    fn read_one(&self, document: &Document, set: &mut PolicySet, findings: &mut Findings) -> bool {
        let value = &document.value;
        let api_version = text(value, "/apiVersion").unwrap_or_default();
        let kind_text = text(value, "/kind").unwrap_or_default();
        let subject = subject_of(&document.source, value);
        let expected_api_version = format!("{GROUP}/{VERSION}");
        let kind = match Kind::parse(kind_text) {
            Some(kind) if api_version == expected_api_version => kind,
            known => {
                let group = api_version.split_once('/').map_or("", |(group, _)| group);
                if known.is_none() && group != GROUP {
                    findings.info(
                        &subject,
                        format!("not a {expected_api_version} object; ignored"),
                    );
                    return false;
                }
                findings.error(
                    &subject,
                    None,
                    format!(
                        "apiVersion {api_version:?} with kind {kind_text:?} is not a kubepim kind: \
                         expected apiVersion {expected_api_version} with kind PrivilegedRole, \
                         Eligibility, ActivationRequest or AccessReview"
                    ),
                );
                return true;
            }
        };
        let metadata_fits = check_metadata(kind, value, &subject, findings);
        if text(value, "/metadata/name").is_some() {
            set.declared.push((kind, subject.clone()));
        }
        let violations = self
            .schemas
            .get(kind.as_str())
            .map(|schema| schema::violations(schema, value))
            .unwrap_or_default();
        let fits_schema = violations.is_empty() && metadata_fits;
        for violation in violations {
            findings.error(&subject, Some(&violation.path), violation.message);
        }
        match kind {
            Kind::PrivilegedRole => {
                if let Some(role) =
                    typed::<PrivilegedRole>(value, kind, &subject, fits_schema, findings)
                {
                    report_cel(role.validate_cel(), &subject, findings);
                    set.roles.push(Located {
                        subject,
                        resource: role,
                    });
                }
            }
            Kind::Eligibility => {
                if let Some(elig) =
                    typed::<Eligibility>(value, kind, &subject, fits_schema, findings)
                {
                    report_cel(elig.validate_cel(), &subject, findings);
                    set.eligibilities.push(Located {
                        subject,
                        resource: elig,
                    });
                }
            }
            Kind::ActivationRequest => {
                if let Some(request) =
                    typed::<ActivationRequest>(value, kind, &subject, fits_schema, findings)
                {
                    report_cel(request.validate_cel(), &subject, findings);
                    set.requests.push(Located {
                        subject,
                        resource: request,
                    });
                }
            }
            Kind::AccessReview => {
                if let Some(review) =
                    typed::<AccessReview>(value, kind, &subject, fits_schema, findings)
                {
                    report_cel(review.validate_cel(), &subject, findings);
                    set.reviews.push(Located {
                        subject,
                        resource: review,
                    });
                }
            }
        }
        true
    }
}

fn subject_of(source: &Source, value: &Value) -> Subject {
    let kind = text(value, "/kind").unwrap_or("(no kind)").to_owned();
    let name = match (
        text(value, "/metadata/name"),
        text(value, "/metadata/generateName"),
    ) {
        (Some(name), _) => name.to_owned(),
        (None, Some(prefix)) => format!("{prefix}*"),
        // An unquoted `yes` or `1` read as a boolean or number still names the object.
        (None, None) => match value.pointer("/metadata/name") {
            Some(name) if !name.is_null() => name.to_string(),
            _ => format!("(unnamed, document {})", source.document),
        },
    };
    Subject {
        source: source.clone(),
        kind,
        name,
    }
}

/// Checks what the API server checks in metadata; returns false if it found a name error (the
/// other metadata findings are warnings).
fn check_metadata(kind: Kind, value: &Value, subject: &Subject, findings: &mut Findings) -> bool {
    if let Some(name) = value.pointer("/metadata/name").filter(|n| !n.is_string()) {
        findings.error(
            subject,
            Some("metadata.name"),
            format!(
                "must be a string, got {}{}",
                schema::describe(name),
                schema::quote_hint("string", name)
            ),
        );
        return false;
    }
    let name_fits = match (
        text(value, "/metadata/name"),
        text(value, "/metadata/generateName"),
    ) {
        (Some(name), _) if !is_dns_subdomain(name) => {
            findings.error(
                subject,
                Some("metadata.name"),
                format!(
                    "{name:?} is not a valid name: lower-case letters, digits, '-' and '.', \
                     at most 253 characters, starting and ending with a letter or digit"
                ),
            );
            false
        }
        (Some(_), _) => true,
        // `kubectl create` can name a request from a prefix; policy is applied and needs names.
        (None, Some(_)) if kind == Kind::ActivationRequest => true,
        (None, _) => {
            findings.error(subject, Some("metadata.name"), "required field is missing");
            false
        }
    };
    if value.pointer("/metadata/namespace").is_some() {
        findings.warning(
            subject,
            Some("metadata.namespace"),
            format!(
                "{} is cluster-scoped: the namespace is ignored",
                kind.as_str()
            ),
        );
    }
    // A review's status is what an export is read for.
    if kind != Kind::AccessReview && value.get("status").is_some_and(|s| !s.is_null()) {
        if kind == Kind::ActivationRequest {
            findings.error(
                subject,
                Some("status"),
                "must not be set: admission refuses a request that carries a status \
                 (approvals and phase are written through /status by approvers and the operator)",
            );
        } else {
            findings.warning(
                subject,
                Some("status"),
                "the operator writes status; the one in this file is ignored",
            );
        }
    }
    name_fits
}

/// Deserialises into the Rust type. When the schema check already found problems, a
/// deserialisation failure is one of them said again, without a field name, so it is not
/// reported twice.
fn typed<T: DeserializeOwned>(
    value: &Value,
    kind: Kind,
    subject: &Subject,
    fits_schema: bool,
    findings: &mut Findings,
) -> Option<T> {
    match serde_json::from_value(value.clone()) {
        Ok(resource) => Some(resource),
        Err(e) => {
            if fits_schema {
                findings.error(
                    subject,
                    None,
                    format!("cannot be read as {}: {e}", kind.as_str()),
                );
            }
            None
        }
    }
}

/// Reports the CRD's CEL rules that the object breaks. A rule the client-side interpreter
/// cannot evaluate is a gap of this tool, not a problem of the file: a warning.
fn report_cel(result: Result<(), ValidationErrors>, subject: &Subject, findings: &mut Findings) {
    let Err(errors) = result else { return };
    for error in errors.iter() {
        let field = Some(error.field_path.as_str()).filter(|f| !f.is_empty());
        match error.kind {
            ErrorKind::UnsupportedReference => findings.warning(
                subject,
                field,
                format!(
                    "rule `{}` cannot be evaluated offline ({}); the API server will check it",
                    error.rule, error.message
                ),
            ),
            _ => findings.error(subject, field, error.message.clone()),
        }
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
