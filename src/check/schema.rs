//! The structural part of the CRD schema (types, required fields, unknown fields, lengths,
//! counts, patterns, enums, ranges), checked against the document as written.
//!
//! The schema is the one [`crate::crdgen`] generates, so `check` and the API server agree on
//! what is valid. Deserialising into the Rust types alone would miss bounds and patterns, and
//! would name no field when it fails.
use std::collections::HashSet;

use serde_json::Value;

/// One place where the document does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted path of the offending field, e.g. `spec.scope.namespaces[1]`.
    pub path: String,
    pub message: String,
}

/// Top-level fields the API server validates itself, outside the CRD's schema.
const SERVER_OWNED_ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Checks `value` (a whole object) against a CRD's `openAPIV3Schema`.
pub fn violations(schema: &Value, value: &Value) -> Vec<Violation> {
    let mut found = Vec::new();
    walk(schema, value, "", &mut found);
    // By path, so the report does not depend on how the YAML parser orders map keys.
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

fn child(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// YAML reads unquoted `yes`, `no`, `1.10` or `0755` as booleans and numbers, where the author
/// often meant text.
pub(super) fn quote_hint(expected: &str, value: &Value) -> &'static str {
    if expected == "string" && (value.is_boolean() || value.is_number()) {
        " (quote it in YAML to make it a string)"
    } else {
        ""
    }
}

fn number(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn count(schema: &Value, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

fn walk(schema: &Value, value: &Value, path: &str, found: &mut Vec<Violation>) {
    let mut report = |message: String| {
        found.push(Violation {
            path: path.to_owned(),
            message,
        });
    };
    if value.is_null() {
        if !schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            report("must not be null".into());
        }
        return;
    }
    let expected = schema.get("type").and_then(Value::as_str);
    let fits = match expected {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        _ => true,
    };
    if let Some(expected) = expected.filter(|_| !fits) {
        report(format!(
            "must be of type {expected}, got {}{}",
            describe(value),
            quote_hint(expected, value)
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        report(format!(
            "{} is not one of {}",
            describe(value),
            allowed.join(", ")
        ));
    }
    match value {
        Value::String(text) => check_string(schema, text, report),
        Value::Number(_) => {
            let n = value.as_f64().unwrap_or_default();
            if let Some(max) = number(schema, "maximum").filter(|max| n > *max) {
                report(format!("must be at most {max}, got {n}"));
            }
            if let Some(min) = number(schema, "minimum").filter(|min| n < *min) {
                report(format!("must be at least {min}, got {n}"));
            }
        }
        Value::Array(items) => check_array(schema, items, path, found),
        Value::Object(fields) => check_object(schema, fields, path, found),
        Value::Bool(_) | Value::Null => {}
    }
}

fn check_string(schema: &Value, text: &str, mut report: impl FnMut(String)) {
    // The API server counts characters, not bytes.
    let length = text.chars().count();
    if let Some(max) = count(schema, "maxLength").filter(|max| length > *max) {
        report(format!("must be at most {max} characters, got {length}"));
    }
    if let Some(min) = count(schema, "minLength").filter(|min| length < *min) {
        report(format!("must be at least {min} characters, got {length}"));
    }
    // The patterns come from our own types; that each compiles is a test in tests/crds.rs, so
    // one that does not is not reported against the user's file.
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && let Ok(re) = regex::Regex::new(pattern)
        && !re.is_match(text)
    {
        report(format!("{text:?} does not match {pattern}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && chrono::DateTime::parse_from_rfc3339(text).is_err()
    {
        report(format!(
            "{text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z"
        ));
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, found: &mut Vec<Violation>) {
    let mut report = |message: String| {
        found.push(Violation {
            path: path.to_owned(),
            message,
        });
    };
    if let Some(max) = count(schema, "maxItems").filter(|max| items.len() > *max) {
        report(format!(
            "must have at most {max} items, got {}",
            items.len()
        ));
    }
    if let Some(min) = count(schema, "minItems").filter(|min| items.len() < *min) {
        report(format!(
            "must have at least {min} items, got {}",
            items.len()
        ));
    }
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        let mut seen = HashSet::new();
        for item in items {
            if !seen.insert(item.to_string()) {
                report(format!("duplicate value {item}"));
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), found);
        }
    }
}

fn check_object(
    schema: &Value,
    fields: &serde_json::Map<String, Value>,
    path: &str,
    found: &mut Vec<Violation>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !fields.contains_key(required) {
            found.push(Violation {
                path: child(path, required),
                message: "required field is missing".into(),
            });
        }
    }
    if let Some(max) = count(schema, "maxProperties").filter(|max| fields.len() > *max) {
        found.push(Violation {
            path: path.to_owned(),
            message: format!("must have at most {max} entries, got {}", fields.len()),
        });
    }
    // An object schema without properties (e.g. free-form) accepts anything.
    if properties.is_none() && additional.is_none() {
        return;
    }
    for (name, value) in fields {
        if path.is_empty() && SERVER_OWNED_ROOT_FIELDS.contains(&name.as_str()) {
            continue;
        }
        let field_path = child(path, name);
        match (properties.and_then(|p| p.get(name)), additional) {
            (Some(field_schema), _) | (None, Some(field_schema)) => {
                walk(field_schema, value, &field_path, found)
            }
            (None, None) => found.push(Violation {
                path: field_path,
                // Strict field validation (kubectl's default) rejects it; without it the API
                // server silently drops it, which is worse for a misspelt limit.
                message: "unknown field".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {"type": "string", "minLength": 1, "maxLength": 5},
                        "duration": {"type": "string", "pattern": "^[0-9]+h$", "nullable": true},
                        "count": {"type": "integer", "minimum": 0, "maximum": 10},
                        "kind": {"type": "string", "enum": ["User", "Group"]},
                        "at": {"type": "string", "format": "date-time"},
                        "names": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "set",
                                  "items": {"type": "string", "maxLength": 3}},
                        "extra": {"type": "object", "maxProperties": 1,
                                  "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                    },
                },
            },
        })
    }

    fn check(object: Value) -> Vec<String> {
        violations(&schema(), &object)
            .into_iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect()
    }

    #[test]
    fn a_fitting_object_has_no_violations() {
        let object = json!({
            "apiVersion": "kubepim.io/v1alpha1", "kind": "X", "metadata": {"name": "x"},
            "spec": {"role": "r", "duration": null, "count": 3, "kind": "User",
                     "at": "2026-12-01T00:00:00Z", "names": ["a", "b"], "extra": {"amr": ["mfa"]}},
        });
        assert_eq!(check(object), Vec::<String>::new());
    }

    #[test]
    fn required_and_unknown_fields() {
        assert_eq!(check(json!({})), ["spec: required field is missing"]);
        assert_eq!(
            check(json!({"spec": {"role": "r", "rolle": "r"}, "stauts": {}})),
            ["spec.rolle: unknown field", "stauts: unknown field"]
        );
    }

    #[test]
    fn types() {
        assert_eq!(
            check(json!({"spec": {"role": 7, "count": "two", "names": "a"}})),
            [
                "spec.count: must be of type integer, got string \"two\"",
                "spec.names: must be of type array, got string \"a\"",
                "spec.role: must be of type string, got number 7 (quote it in YAML to make it a string)",
            ]
        );
        assert_eq!(
            check(json!({"spec": {"role": null}})),
            ["spec.role: must not be null"]
        );
        assert_eq!(
            check(json!({"spec": {"role": true}})),
            [
                "spec.role: must be of type string, got boolean true (quote it in YAML to make it a string)"
            ]
        );
    }

    #[test]
    fn strings_lengths_patterns_enums_and_times() {
        assert_eq!(
            check(
                json!({"spec": {"role": "", "duration": "90m", "kind": "Robot", "at": "tomorrow"}})
            ),
            [
                "spec.at: \"tomorrow\" is not an RFC 3339 time such as 2026-12-01T00:00:00Z",
                "spec.duration: \"90m\" does not match ^[0-9]+h$",
                "spec.kind: string \"Robot\" is not one of \"User\", \"Group\"",
                "spec.role: must be at least 1 characters, got 0",
            ]
        );
        // Characters, not bytes: five µ are five characters.
        assert_eq!(
            check(json!({"spec": {"role": "µµµµµ"}})),
            Vec::<String>::new()
        );
        assert_eq!(
            check(json!({"spec": {"role": "µµµµµµ"}})),
            ["spec.role: must be at most 5 characters, got 6"]
        );
    }

    #[test]
    fn numbers_lists_and_maps() {
        assert_eq!(
            check(
                json!({"spec": {"role": "r", "count": 11, "names": ["a", "a", "long"],
                                  "extra": {"a": [], "b": []}}})
            ),
            [
                "spec.count: must be at most 10, got 11",
                "spec.extra: must have at most 1 entries, got 2",
                "spec.names: must have at most 2 items, got 3",
                "spec.names: duplicate value \"a\"",
                "spec.names[2]: must be at most 3 characters, got 4",
            ]
        );
    }
}
