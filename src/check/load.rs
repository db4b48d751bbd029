//! Finding YAML files and reading their documents.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::findings::Source;

/// Input that cannot be checked at all: `kubepim check` exits with 2 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: no such file or directory")]
    Missing { path: String },
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML: {message}")]
    InvalidYaml { path: String, message: String },
    #[error("{path}: no *.yaml or *.yml files in this directory")]
    NoYamlFiles { path: String },
}

/// One YAML document of a checked file.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub value: Value,
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Collects the YAML files under `dir`, in name order so that reports are stable.
///
/// Hidden entries (`.git`, `.github`) are skipped: they hold no policy, and CI workflow YAML
/// would only add noise. Symlinked directories are not followed, so a link cycle cannot loop.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let unreadable = |source| InputError::Unreadable {
        path: dir.display().to_string(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if is_hidden(&path) {
            continue;
        }
        let file_type = entry.file_type().map_err(|source| InputError::Unreadable {
            path: path.display().to_string(),
            source,
        })?;
        if file_type.is_dir() {
            walk(&path, found)?;
        } else if is_yaml(&path) && (file_type.is_file() || path.is_file()) {
            found.push(path);
        }
    }
    Ok(())
}

/// The files to check: every named file (whatever its extension: the user asked for it) and
/// every `*.yaml` / `*.yml` file under every named directory, each file once.
///
/// All unusable paths are reported, not only the first.
pub fn find_yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<InputError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                errors.push(InputError::Missing { path: shown })
            }
            Err(source) => errors.push(InputError::Unreadable {
                path: shown,
                source,
            }),
            Ok(meta) if meta.is_dir() => {
                let before = files.len();
                if let Err(e) = walk(path, &mut files) {
                    errors.push(e);
                } else if files.len() == before {
                    // A directory without policy is almost always a wrong path in CI; passing
                    // it silently would make the gate check nothing.
                    errors.push(InputError::NoYamlFiles { path: shown });
                }
            }
            Ok(_) => files.push(path.clone()),
        }
    }
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// The parser's first line (`line 2 column 7: unclosed bracket '['`), without the source snippet
/// that follows it or advice meant for programs embedding the parser.
fn yaml_error_summary(error: &str) -> String {
    let first = error.lines().next().unwrap_or(error).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(first)
        .to_owned()
}

/// The documents of one file, and the line each starts on where that is known.
#[derive(Debug)]
pub struct FileDocuments {
    pub documents: Vec<Document>,
    /// 1-based line of each document's first content line, in document order; empty when the
    /// scan below disagrees with the parser on how many documents there are.
    pub lines: Vec<usize>,
}

/// Reads every non-empty document of one file.
pub fn read_documents(path: &Path, file_index: usize) -> Result<FileDocuments, InputError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Unreadable {
        path: shown.clone(),
        source,
    })?;
    let values: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| InputError::InvalidYaml {
            path: shown.clone(),
            message: yaml_error_summary(&e.to_string()),
        })?;
    let mut lines = document_lines(&text);
    if lines.len() != values.len() {
        lines.clear();
    }
    let documents = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| Document {
            source: Source {
                file: shown.clone(),
                file_index,
                document: i + 1,
            },
            value,
        })
        .collect();
    Ok(FileDocuments { documents, lines })
}

/// Where each non-empty document starts: its first line that is not blank, a comment, a
/// directive or a `---` / `...` marker (or the `---` line itself when content follows on it).
///
/// The parser (serde-saphyr into `serde_json::Value`) keeps no positions, so this is a line
/// scan. It cannot see a `---` inside a block scalar; the caller drops the lines when the count
/// disagrees with the parser's, rather than point annotations at the wrong object.
fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut current: Option<usize> = None;
    let mut in_document = false;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let is_marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if is_marker("---") {
            starts.extend(current.take());
            in_document = true;
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                current = Some(number);
            }
            continue;
        }
        if is_marker("...") {
            starts.extend(current.take());
            in_document = false;
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || (!in_document && line.starts_with('%'))
        {
            continue;
        }
        in_document = true;
        if current.is_none() {
            current = Some(number);
        }
    }
    starts.extend(current);
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn finds_yaml_recursively_in_name_order_skipping_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b/two.yml", "a: 1");
        write(dir.path(), "a/one.yaml", "a: 1");
        write(dir.path(), "a/README.md", "# no");
        write(dir.path(), ".git/config.yaml", "a: 1");
        let files = find_yaml_files(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a/one.yaml", "b/two.yml"]);
    }

    #[test]
    fn a_named_file_is_read_whatever_its_extension_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "policy.txt", "a: 1");
        let files = find_yaml_files(&[file.clone(), file.clone()]).unwrap();
        assert_eq!(files, [file]);
    }

    #[test]
    fn every_bad_path_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let errors = find_yaml_files(&[dir.path().join("missing"), empty]).unwrap_err();
        assert!(
            matches!(errors[0], InputError::Missing { .. }),
            "{errors:?}"
        );
        assert!(
            matches!(errors[1], InputError::NoYamlFiles { .. }),
            "{errors:?}"
        );
    }

    #[test]
    fn documents_are_numbered_skipping_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "x.yaml", "---\na: 1\n---\n---\nb: 2\n");
        let read = read_documents(&file, 3).unwrap();
        assert_eq!(read.lines, [2, 5]);
        let docs = read.documents;
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[1].source.file_index, docs[1].source.document), (3, 2));
        assert_eq!(docs[1].value, serde_json::json!({"b": 2}));
    }

    #[test]
    fn document_lines_skip_comments_directives_and_empty_documents() {
        let text = "# a comment\n\napiVersion: v1\nkind: A\n---\n# only a comment\n---\n\
                    --- {kind: B}\n...\n%YAML 1.2\n---\n  kind: C\n";
        assert_eq!(document_lines(text), [3, 8, 12]);
        assert_eq!(document_lines(""), Vec::<usize>::new());
        // Agrees with the parser on the count, so read_documents keeps these lines.
        let values: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
        assert_eq!(values.len(), 3);
    }

    #[test]
    fn invalid_yaml_is_an_input_error_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "x.yaml", "a: 1\nkind: [x\n");
        let Err(InputError::InvalidYaml { message, .. }) = read_documents(&file, 0) else {
            panic!("expected invalid YAML");
        };
        assert_eq!(message, "line 2 column 7: unclosed bracket '['");
        // Duplicate keys are ambiguous: the API server would keep one of them silently.
        let file = write(dir.path(), "y.yaml", "a: 1\na: 2\n");
        let Err(InputError::InvalidYaml { message, .. }) = read_documents(&file, 0) else {
            panic!("expected invalid YAML");
        };
        assert_eq!(message, "line 2 column 1: duplicate mapping key: a");
    }
}
