//! The generated CustomResourceDefinitions: committed, structural, lossless and installable.

mod support;

use std::path::Path;

use brook::api::{crd_file_name, crd_yaml, crds};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_cel::CompiledSchema;
use serde_json::Value;
use support::apiserver::{schema_of, structural_violations};

#[test]
fn committed_crds_match_what_brook_crd_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected_files = Vec::new();
    for crd in crds() {
        let file = crd_file_name(&crd);
        let committed = std::fs::read_to_string(dir.join(&file))
            .unwrap_or_else(|e| panic!("crds/{file} is missing ({e}); run `make generate`"));
        assert_eq!(
            committed,
            crd_yaml(&crd).expect("CRD renders"),
            "crds/{file} is stale; run `make generate` and commit the result"
        );
        expected_files.push(file);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .map(|entry| {
            entry
                .expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds files `brook crd` no longer makes"
    );
}

#[test]
fn every_crd_schema_is_structural() {
    for crd in crds() {
        let violations = structural_violations(&schema_of(&crd));
        assert!(
            violations.is_empty(),
            "{} is not structural:\n{}",
            crd.spec.names.kind,
            violations.join("\n")
        );
    }
}

#[test]
fn the_structural_check_refuses_what_the_api_server_refuses() {
    let untyped =
        serde_json::json!({"type": "object", "properties": {"a": {"description": "no type"}}});
    let typed_branch = serde_json::json!({
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "oneOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]
    });
    let reference =
        serde_json::json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}});
    let bad_list_map = serde_json::json!({
        "type": "object",
        "properties": {"c": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": {"type": {"type": "string"}}}}}
    });
    let bad_default = serde_json::json!({
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "default": 0}}
    });
    for (schema, expected) in [
        (untyped, "type must be set"),
        (typed_branch, "may not be set inside"),
        (reference, "$ref is not allowed"),
        (bad_list_map, "must be required or defaulted"),
        (bad_default, "default is invalid"),
    ] {
        let violations = structural_violations(&schema);
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "expected {expected:?} in {violations:?}"
        );
    }
}

#[test]
fn every_document_of_brook_crd_round_trips_through_k8s_openapi_without_loss() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_brook"))
        .arg("crd")
        .output()
        .expect("brook crd runs");
    assert!(output.status.success(), "brook crd failed: {output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8 output");
    let mut kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let raw: Value = serde::Deserialize::deserialize(document).expect("a YAML document");
        let crd: CustomResourceDefinition =
            serde_json::from_value(raw.clone()).expect("parses as a CustomResourceDefinition");
        let again = serde_json::to_value(&crd).expect("serializes");
        assert_eq!(
            raw, again,
            "{} lost data in the round trip",
            crd.spec.names.kind
        );
        kinds.push(crd.spec.names.kind.clone());
    }
    assert_eq!(kinds, ["Stream", "DeliveryStream", "Consumer", "Queue"]);
}

fn compilation_errors(node: &CompiledSchema, path: &str, out: &mut Vec<String>) {
    for error in node.compilation_errors() {
        out.push(format!("{path}: {error}"));
    }
    for compiled in node.validations.iter().flatten() {
        for warning in kube_cel::estimate_rule_cost(&compiled.rule.rule, node) {
            if warning.kind == kube_cel::WarningKind::CostExceeded {
                out.push(format!("{path}: {}", warning.message));
            }
        }
    }
    for (name, child) in &node.properties {
        compilation_errors(child, &format!("{path}.{name}"), out);
    }
    if let Some(items) = &node.items {
        compilation_errors(items, &format!("{path}[]"), out);
    }
    if let Some(values) = &node.additional_properties {
        compilation_errors(values, &format!("{path}[*]"), out);
    }
}

fn count_rules(schema: &Value) -> usize {
    match schema {
        Value::Object(map) => {
            let here = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            here + map.values().map(count_rules).sum::<usize>()
        }
        Value::Array(list) => list.iter().map(count_rules).sum(),
        _ => 0,
    }
}

#[test]
fn every_cel_rule_compiles_and_fits_the_cost_budget() {
    let mut total_rules = 0;
    for crd in crds() {
        let schema = schema_of(&crd);
        let compiled = kube_cel::compile_schema(&schema);
        let mut errors = Vec::new();
        compilation_errors(&compiled, &crd.spec.names.kind, &mut errors);
        assert!(
            errors.is_empty(),
            "CEL rules would be refused:\n{}",
            errors.join("\n")
        );
        total_rules += count_rules(&schema);
    }
    // Stream: name length, autoscaling bounds and source, one Prometheus auth, no autoscaling
    // when ON_DEMAND; DeliveryStream: one source, one destination, AT_TIMESTAMP; Consumer: both
    // names immutable; Queue: both names and the starting position immutable, AT_TIMESTAMP
    // with its timestamp, maxReceiveCount only with BUILT_IN.
    assert_eq!(total_rules, 15);
}

#[test]
fn the_scale_subresource_drives_shards_and_reads_open_shards() {
    let stream = crds().remove(0);
    let version = &stream.spec.versions[0];
    let scale = version
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("Stream has a scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.shards");
    assert_eq!(scale.status_replicas_path, ".status.openShards");
    let schema = schema_of(&stream);
    for path in [&scale.spec_replicas_path, &scale.status_replicas_path] {
        let pointer = path.replace('.', "/properties/");
        assert_eq!(
            schema
                .pointer(&format!("{pointer}/type"))
                .and_then(Value::as_str),
            Some("integer"),
            "{path} must be an integer field"
        );
    }
    let selector = scale
        .label_selector_path
        .as_deref()
        .expect("a label selector path");
    let pointer = selector.replace('.', "/properties/");
    assert_eq!(
        schema
            .pointer(&format!("{pointer}/type"))
            .and_then(Value::as_str),
        Some("string")
    );
}

#[test]
fn printer_columns_name_fields_that_exist() {
    for crd in crds() {
        let schema = schema_of(&crd);
        let version = &crd.spec.versions[0];
        let columns = version
            .additional_printer_columns
            .as_deref()
            .unwrap_or_default();
        assert!(
            columns.iter().any(|c| c.name == "Age"),
            "{} lacks an Age column",
            crd.spec.names.kind
        );
        for column in columns {
            let path = column.json_path.split("[?").next().unwrap_or_default();
            if path.starts_with(".metadata.") {
                continue;
            }
            let pointer = path.replace('.', "/properties/");
            assert!(
                schema.pointer(&pointer).is_some(),
                "{}: column {} points at {} which the schema lacks",
                crd.spec.names.kind,
                column.name,
                column.json_path
            );
        }
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["brook".to_owned()][..])
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty())
        );
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
}

#[test]
fn the_committed_operator_install_matches_what_brook_install_generates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/operator.yaml");
    let committed = std::fs::read_to_string(&path).expect("deploy/operator.yaml exists");
    let image = brook::operator::resources::BrokerDefaults::for_this_version().image;
    assert_eq!(
        committed,
        brook::operator::install::install_yaml("brook-system", &image).expect("renders"),
        "deploy/operator.yaml is stale; run `make generate` and commit the result"
    );
}

/// Every path under `node` where a schema sets a default.
fn defaults_under(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = node {
        for (key, child) in map {
            if key == "default" {
                out.push(path.to_owned());
            } else {
                defaults_under(child, &format!("{path}/{key}"), out);
            }
        }
    }
}

/// Every path under `node` where a list's item schema sets a default.
fn defaults_in_list_items(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = node {
        for (key, child) in map {
            if key == "items" {
                defaults_under(child, &format!("{path}/items"), out);
            } else {
                defaults_in_list_items(child, &format!("{path}/{key}"), out);
            }
        }
    }
}

#[test]
fn gitops_tools_can_apply_the_crds_and_see_no_diff_from_their_defaults() {
    for crd in crds() {
        // Client-side apply keeps the whole object in one annotation; all of an object's
        // annotations together may hold 256 KiB.
        let size = serde_json::to_vec(&crd).expect("JSON").len();
        assert!(
            size < 128 * 1024,
            "{} is {size} bytes: too close to the 256 KiB annotation limit of client-side apply",
            crd.spec.names.kind
        );
        // A default inside a list item makes the live list differ from Git's under a
        // client-side (three-way) diff, as lists are compared whole.
        let mut found = Vec::new();
        defaults_in_list_items(&schema_of(&crd), "", &mut found);
        assert!(
            found.is_empty(),
            "{} defaults fields inside list items: {found:?}",
            crd.spec.names.kind
        );
    }
    // The walk finds a default inside a list item when there is one.
    let mut found = Vec::new();
    defaults_in_list_items(
        &serde_json::json!({"properties": {"rules": {"type": "array", "items": {"properties": {"weight": {"default": 1}}}}}}),
        "",
        &mut found,
    );
    assert_eq!(found, ["/properties/rules/items/properties/weight"]);
}
