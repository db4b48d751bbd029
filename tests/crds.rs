//! The committed CRDs in `crds/` are exactly what the Rust types generate, and the generated
//! schemas keep the properties the operator and the API server's CEL cost budget rely on.
use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// The committed CRD file, relative to the crate root.
const CRD_FILE: &str = "crds/kubepim.io.yaml";
/// Set to `1` to rewrite the committed file from the types instead of comparing.
const UPDATE_ENV: &str = "KUBEPIM_UPDATE_CRDS";
/// The Helm chart's exact copy of `CRD_FILE` (rewritten with it; `tests/chart` checks it).
const CHART_CRD_FILE: &str = "charts/kubepim/files/crds/kubepim.io.yaml";

fn crd_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE)
}

fn generated_yaml() -> String {
    kubepim::crdgen::all_crds_yaml().expect("CRDs serialise to YAML")
}

#[test]
fn committed_crds_match_the_types() {
    let generated = generated_yaml();
    let path = crd_path();
    if std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write the CRD file");
        let chart_copy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CHART_CRD_FILE);
        std::fs::write(&chart_copy, &generated).expect("write the chart's copy of the CRD file");
        return;
    }
    let how_to_fix = format!(
        "regenerate it with `cargo run -- crds > {CRD_FILE}` or `{UPDATE_ENV}=1 cargo test --test crds`, \
         then commit the result"
    );
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {how_to_fix}", path.display()));
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (file, types))| file != types)
            .map(|(i, (file, types))| {
                format!(
                    "line {}: file has {file:?}, types generate {types:?}",
                    i + 1
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "the file has {} lines, the types generate {}",
                    committed.lines().count(),
                    generated.lines().count()
                )
            });
        panic!(
            "{CRD_FILE} differs from the CRDs the types in src/api generate ({first_difference}); {how_to_fix}"
        );
    }
}

/// The committed file is what `kubectl apply -f crds/` installs: it must parse back into the
/// same CRDs, in install order.
#[test]
fn committed_file_parses_back_into_the_crds() {
    let committed = std::fs::read_to_string(crd_path()).expect("read the CRD file");
    let parsed: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(&committed).expect("parse the CRD file");
    let names: Vec<_> = parsed
        .iter()
        .map(|crd| crd.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "privilegedroles.kubepim.io",
            "eligibilities.kubepim.io",
            "activationrequests.kubepim.io",
            "accessreviews.kubepim.io"
        ]
    );
    // Compared without printing both (huge) values: the drift test above shows where they differ.
    assert!(
        parsed == kubepim::crdgen::all_crds(),
        "{CRD_FILE} does not parse back into the generated CRDs"
    );
}

fn crd(plural: &str) -> CustomResourceDefinition {
    kubepim::crdgen::all_crds()
        .into_iter()
        .find(|crd| crd.spec.names.plural == plural)
        .unwrap_or_else(|| panic!("no CRD with plural {plural}"))
}

#[test]
fn names_scope_and_category() {
    for (plural, kind, short_name) in [
        ("privilegedroles", "PrivilegedRole", "prole"),
        ("eligibilities", "Eligibility", "elig"),
        ("activationrequests", "ActivationRequest", "actreq"),
        ("accessreviews", "AccessReview", "pimreview"),
    ] {
        let crd = crd(plural);
        assert_eq!(crd.spec.group, "kubepim.io");
        assert_eq!(crd.spec.names.kind, kind);
        // Cluster-scoped: a namespace admin must not be able to write policy or requests for
        // other namespaces' roles.
        assert_eq!(crd.spec.scope, "Cluster", "{kind} scope");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["pim".to_string()][..]),
            "{kind} categories"
        );
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short_name.to_string()][..]),
            "{kind} short names"
        );
    }
}

#[test]
fn one_served_storage_version_with_status_subresource() {
    for crd in kubepim::crdgen::all_crds() {
        let kind = &crd.spec.names.kind;
        let [version] = crd.spec.versions.as_slice() else {
            panic!(
                "{kind}: expected exactly one version, got {}",
                crd.spec.versions.len()
            );
        };
        assert_eq!(version.name, "v1alpha1", "{kind}");
        assert!(
            version.served && version.storage,
            "{kind}: v1alpha1 must be served and stored"
        );
        // Approvals and controller state go through /status; without the subresource a spec
        // writer could also write status.
        let subresources = version
            .subresources
            .as_ref()
            .unwrap_or_else(|| panic!("{kind}: no subresources"));
        assert!(
            subresources.status.is_some(),
            "{kind}: status subresource missing"
        );
    }
}

/// The columns `kubectl get` shows: the essential ones in this order (others may be added
/// between them), and `Age` last.
#[test]
fn printer_columns_include_age() {
    let essential: [(&str, &[&str]); 3] = [
        (
            "privilegedroles",
            &["Role", "Approvals", "Max", "Active", "Ready"],
        ),
        (
            "eligibilities",
            &["Role", "Subjects", "Not After", "Active"],
        ),
        (
            "activationrequests",
            &["Requester", "Role", "Phase", "Expires"],
        ),
    ];
    for (plural, columns) in essential {
        let crd = crd(plural);
        let printed = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let names: Vec<&str> = printed.iter().map(|c| c.name.as_str()).collect();
        let mut remaining = names.iter();
        for column in columns {
            assert!(
                remaining.any(|name| name == column),
                "{plural}: column {column} missing or out of order in {names:?}"
            );
        }
        // kubectl drops its own Age column once any column is declared.
        let age = printed.last().expect("printer columns");
        assert_eq!(
            (
                age.name.as_str(),
                age.type_.as_str(),
                age.json_path.as_str()
            ),
            ("Age", "date", ".metadata.creationTimestamp"),
            "{plural}: Age must be the last column"
        );
    }
}

/// Walks a structural schema and reports, by path, every string without a length bound (or an
/// enum or a date-time format, which bound it implicitly), every array without `maxItems` and
/// every map without `maxProperties`. The API server's CEL cost estimator assumes unbounded
/// values are as large as a whole request, which pushes rules over their cost budget.
fn unbounded(schema: &Value, path: &str, found: &mut Vec<String>) {
    let has = |key: &str| schema.get(key).is_some();
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => {
            let date_time = schema.get("format").and_then(Value::as_str) == Some("date-time");
            if !(has("maxLength") || has("enum") || date_time) {
                found.push(format!("{path}: string without maxLength"));
            }
        }
        Some("array") if !has("maxItems") => found.push(format!("{path}: array without maxItems")),
        Some("object") => {
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                if !has("maxProperties") {
                    found.push(format!("{path}: map without maxProperties"));
                }
                unbounded(additional, &format!("{path}.*"), found);
            }
        }
        _ => {}
    }
    if let Some(items) = schema.get("items") {
        unbounded(items, &format!("{path}[*]"), found);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            // Object metadata is validated by the API server's own schema, not the CRD's.
            if path.is_empty() && name == "metadata" {
                continue;
            }
            unbounded(property, &format!("{path}.{name}"), found);
        }
    }
}

#[test]
fn every_string_list_and_map_is_bounded() {
    let mut found = Vec::new();
    for crd in kubepim::crdgen::all_crds() {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        let schema =
            serde_json::to_value(schema.expect("openAPIV3Schema")).expect("schema to JSON");
        let mut here = Vec::new();
        unbounded(&schema, "", &mut here);
        found.extend(
            here.into_iter()
                .map(|p| format!("{}: {p}", crd.spec.names.kind)),
        );
    }
    assert!(
        found.is_empty(),
        "unbounded values (add #[schemars(length(max = …))]):\n{}",
        found.join("\n")
    );
}

/// The bound walker itself must notice a missing bound, or the test above proves nothing.
#[test]
fn the_bound_walker_finds_unbounded_values() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "name": {"type": "string"},
                "when": {"type": "string", "format": "date-time"},
                "kind": {"type": "string", "enum": ["A"]},
                "list": {"type": "array", "items": {"type": "string", "maxLength": 3}},
                "map": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}},
            }},
        },
    });
    let mut found = Vec::new();
    unbounded(&schema, "", &mut found);
    found.sort();
    assert_eq!(
        found,
        [
            ".spec.list: array without maxItems",
            ".spec.map: map without maxProperties",
            ".spec.name: string without maxLength",
        ]
    );
}

/// `kubepim check` evaluates the schema's `pattern`s with the `regex` crate: each must compile
/// there (the API server uses Go's RE2, whose syntax `regex` follows).
#[test]
fn every_pattern_compiles() {
    let crds = serde_json::to_value(kubepim::crdgen::all_crds()).expect("CRDs to JSON");
    let mut patterns = Vec::new();
    collect_patterns(&crds, &mut patterns);
    assert!(
        patterns.len() >= 5,
        "expected the name and duration patterns, found {patterns:?}"
    );
    for pattern in patterns {
        if let Err(e) = regex::Regex::new(pattern) {
            panic!("pattern {pattern:?} does not compile: {e}");
        }
    }
}

fn collect_patterns<'a>(value: &'a Value, patterns: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(pattern)) = map.get("pattern") {
                patterns.push(pattern);
            }
            map.values().for_each(|v| collect_patterns(v, patterns));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_patterns(v, patterns)),
        _ => {}
    }
}

/// kube-cel's static analysis of every rule where it sits in the schema: variables valid in a
/// CRD rule, and its coarse cost estimate within budget. The API server's exact estimate runs
/// when the end-to-end suite installs the CRDs.
#[test]
fn every_cel_rule_passes_static_analysis() {
    use kube::core::cel::{ScopeContext, analyze_rule, compile_schema};
    let mut nodes = Vec::new();
    for crd in kubepim::crdgen::all_crds() {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        nodes.push(serde_json::to_value(schema.expect("openAPIV3Schema")).expect("schema to JSON"));
    }
    let mut with_rules = Vec::new();
    for node in &nodes {
        collect_nodes_with_rules(node, &mut with_rules);
    }
    assert!(
        with_rules.len() >= 10,
        "found only {} schema nodes with rules",
        with_rules.len()
    );
    let mut warnings = Vec::new();
    for node in with_rules {
        let compiled = compile_schema(node);
        for rule in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let text = rule["rule"].as_str().unwrap_or_default();
            warnings.extend(
                analyze_rule(text, &compiled, ScopeContext::CrdValidation)
                    .into_iter()
                    .map(|w| format!("{text}: {}", w.message)),
            );
        }
    }
    assert!(warnings.is_empty(), "{}", warnings.join("\n"));
}

fn collect_nodes_with_rules<'a>(value: &'a Value, nodes: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("x-kubernetes-validations") {
                nodes.push(value);
            }
            map.values()
                .for_each(|v| collect_nodes_with_rules(v, nodes));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| collect_nodes_with_rules(v, nodes)),
        _ => {}
    }
}

#[test]
fn every_cel_rule_has_a_message() {
    let crds = serde_json::to_value(kubepim::crdgen::all_crds()).expect("CRDs to JSON");
    let mut rules = Vec::new();
    collect_rules(&crds, &mut rules);
    assert!(
        rules.len() >= 20,
        "expected the CEL rules of all three kinds, found {}",
        rules.len()
    );
    for rule in rules {
        let message = rule
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(!message.is_empty(), "CEL rule without a message: {rule}");
    }
}

fn collect_rules<'a>(value: &'a Value, rules: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(found)) = map.get("x-kubernetes-validations") {
                rules.extend(found);
            }
            map.values().for_each(|v| collect_rules(v, rules));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rules(v, rules)),
        _ => {}
    }
}
