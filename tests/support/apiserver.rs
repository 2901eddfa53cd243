//! An offline stand-in for what the Kubernetes API server does with a CRD and a manifest:
//! refuse schemas that are not structural, default and validate objects against the
//! OpenAPI schema (strict field validation, as `kubectl apply` asks for), and run the
//! `x-kubernetes-validations` CEL rules (through kube-cel, the kube-rs CEL evaluator).

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value};

/// Formats the API server accepts in a CRD schema.
const KNOWN_FORMATS: [&str; 22] = [
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "duration",
    "quantity",
];
const JUNCTORS: [&str; 4] = ["allOf", "anyOf", "oneOf", "not"];
const FORBIDDEN_IN_JUNCTORS: [&str; 5] = [
    "description",
    "type",
    "default",
    "additionalProperties",
    "nullable",
];

/// The `openAPIV3Schema` of the CRD's only version, as JSON.
pub fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("every Brook CRD carries a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Every reason the API server would refuse `schema` as not structural, with its path.
pub fn structural_violations(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let root_type = schema.get("type").and_then(Value::as_str);
    if root_type != Some("object") {
        found.push("root: the root must be of type object".to_owned());
    }
    walk_structure(schema, "root", false, &mut found);
    if let Some(metadata) = schema.pointer("/properties/metadata") {
        let props: BTreeSet<&str> = metadata
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if props.iter().any(|p| *p != "name" && *p != "generateName") {
            found.push("root.metadata: only name and generateName may be restricted".into());
        }
    }
    found
}

fn walk_structure(node: &Value, path: &str, in_junctor: bool, found: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        found.push(format!("{path}: a schema must be an object"));
        return;
    };
    for key in ["$ref", "definitions", "$defs", "$schema", "const"] {
        if obj.contains_key(key) {
            found.push(format!("{path}: {key} is not allowed in a CRD schema"));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_junctor {
        for key in FORBIDDEN_IN_JUNCTORS {
            if obj.contains_key(key) && !int_or_string_branch(obj) {
                found.push(format!(
                    "{path}: {key} may not be set inside allOf/anyOf/oneOf/not"
                ));
            }
        }
    } else {
        match obj.get("type") {
            None if !int_or_string && !preserve => found.push(format!("{path}: type must be set")),
            Some(Value::String(t))
                if !["array", "boolean", "integer", "number", "object", "string"]
                    .contains(&t.as_str()) =>
            {
                found.push(format!("{path}: unknown type {t}"))
            }
            Some(Value::String(_)) | None => {}
            Some(other) => found.push(format!("{path}: type must be one string, not {other}")),
        }
        if int_or_string && obj.contains_key("type") {
            found.push(format!("{path}: x-kubernetes-int-or-string excludes type"));
        }
    }
    if let Some(format) = obj.get("format").and_then(Value::as_str)
        && !KNOWN_FORMATS.contains(&format)
    {
        found.push(format!(
            "{path}: format {format} is unknown to the API server"
        ));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        found.push(format!(
            "{path}: properties and additionalProperties are exclusive"
        ));
    }
    if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
        found.push(format!(
            "{path}: additionalProperties: false is not allowed"
        ));
    }
    if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
        found.push(format!("{path}: uniqueItems: true is not allowed"));
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        if t == "array" && !obj.contains_key("items") {
            found.push(format!("{path}: an array must specify items"));
        }
        if t != "object"
            && (obj.contains_key("properties") || obj.contains_key("additionalProperties"))
        {
            found.push(format!("{path}: properties on a non-object"));
        }
    }
    check_list_type(obj, path, found);
    check_default(obj, node, path, found);
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            walk_structure(child, &format!("{path}.{name}"), in_junctor, found);
        }
    }
    if let Some(child) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk_structure(child, &format!("{path}[*]"), in_junctor, found);
    }
    if let Some(items) = obj.get("items") {
        walk_structure(items, &format!("{path}[]"), in_junctor, found);
    }
    for junctor in JUNCTORS {
        let branches: Vec<&Value> = match obj.get(junctor) {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(single) => vec![single],
            None => continue,
        };
        for (i, branch) in branches.into_iter().enumerate() {
            let branch_path = format!("{path}.{junctor}[{i}]");
            walk_structure(branch, &branch_path, true, found);
            for key in branch
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.keys())
            {
                if node.pointer(&format!("/properties/{key}")).is_none() {
                    found.push(format!(
                        "{branch_path}.{key}: not specified outside the junctor"
                    ));
                }
            }
        }
    }
}

/// The two shapes the API server allows inside an int-or-string node's junctors.
fn int_or_string_branch(obj: &Map<String, Value>) -> bool {
    matches!(
        obj.get("type").and_then(Value::as_str),
        Some("integer" | "string")
    ) && obj.len() == 1
}

fn check_list_type(obj: &Map<String, Value>, path: &str, found: &mut Vec<String>) {
    let Some(list_type) = obj.get("x-kubernetes-list-type").and_then(Value::as_str) else {
        return;
    };
    if !["atomic", "set", "map"].contains(&list_type) {
        found.push(format!(
            "{path}: unknown x-kubernetes-list-type {list_type}"
        ));
    }
    if list_type == "map" {
        let keys: Vec<&str> = obj
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if keys.is_empty() {
            found.push(format!(
                "{path}: a map list needs x-kubernetes-list-map-keys"
            ));
        }
        let items = obj.get("items").cloned().unwrap_or(Value::Null);
        for key in keys {
            let required = items
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|k| k == key));
            let defaulted = items
                .pointer(&format!("/properties/{key}/default"))
                .is_some();
            if !required && !defaulted {
                found.push(format!(
                    "{path}: list map key {key} must be required or defaulted"
                ));
            }
        }
    }
}

fn check_default(obj: &Map<String, Value>, node: &Value, path: &str, found: &mut Vec<String>) {
    let Some(default) = obj.get("default") else {
        return;
    };
    // The API server refuses defaults that pruning would change or that fail validation
    // once nested defaults are applied.
    let mut defaulted = default.clone();
    apply_defaults(node, &mut defaulted);
    let mut errors = Vec::new();
    validate_value(node, &defaulted, path, &mut errors);
    for error in errors {
        found.push(format!("{path}: default is invalid: {error}"));
    }
}

/// Fills in schema defaults the way the API server does before it validates.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, child) in props {
                    if !fields.contains_key(name)
                        && let Some(default) = child.get("default")
                    {
                        fields.insert(name.clone(), default.clone());
                    }
                    if let Some(field) = fields.get_mut(name) {
                        apply_defaults(child, field);
                    }
                }
            } else if let Some(child) = schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for field in fields.values_mut() {
                    apply_defaults(child, field);
                }
            }
        }
        Value::Array(items) => {
            if let Some(child) = schema.get("items") {
                for item in items {
                    apply_defaults(child, item);
                }
            }
        }
        _ => {}
    }
}

/// Validates `value` against the OpenAPI schema node, pushing `path: problem` lines.
pub fn validate_value(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{path}: must not be null"));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let type_ok = match (schema.get("type").and_then(Value::as_str), value) {
        (None, Value::String(_) | Value::Number(_)) if int_or_string => true,
        (None, _) if int_or_string => false,
        (None, _) => true,
        (Some("object"), Value::Object(_)) | (Some("array"), Value::Array(_)) => true,
        (Some("string"), Value::String(_)) | (Some("boolean"), Value::Bool(_)) => true,
        (Some("number"), Value::Number(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !type_ok {
        let expected = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("integer or string");
        errors.push(format!("{path}: must be of type {expected}, got {value}"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!(
            "{path}: Unsupported value: {value}: supported values: {allowed:?}"
        ));
    }
    match value {
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or(f64::NAN), path, errors),
        Value::String(s) => check_string(schema, s, path, errors),
        Value::Array(items) => {
            if let Some(child) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_value(child, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(fields) => check_object(schema, fields, path, errors),
        Value::Bool(_) | Value::Null => {}
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        let Some(branches) = schema.get(junctor).and_then(Value::as_array) else {
            continue;
        };
        let passing = branches
            .iter()
            .filter(|branch| {
                let mut branch_errors = Vec::new();
                validate_value(branch, value, path, &mut branch_errors);
                branch_errors.is_empty()
            })
            .count();
        let ok = match junctor {
            "allOf" => passing == branches.len(),
            "anyOf" => passing >= 1,
            _ => passing == 1,
        };
        if !ok {
            errors.push(format!("{path}: does not satisfy {junctor}"));
        }
    }
}

fn check_number(schema: &Value, n: f64, path: &str, errors: &mut Vec<String>) {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        errors.push(format!("{path}: should be greater than or equal to {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        errors.push(format!("{path}: should be less than or equal to {max}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("int32")
        && (n < f64::from(i32::MIN) || n > f64::from(i32::MAX))
    {
        errors.push(format!("{path}: does not fit int32"));
    }
}

fn check_string(schema: &Value, s: &str, path: &str, errors: &mut Vec<String>) {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        errors.push(format!("{path}: should be at least {min} chars long"));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        errors.push(format!("{path}: may not be more than {max} chars long"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(format!("{path}: should match '{pattern}'")),
            Err(e) => errors.push(format!("{path}: pattern {pattern} does not compile: {e}")),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && s.parse::<k8s_openapi::jiff::Timestamp>().is_err()
    {
        errors.push(format!("{path}: {s:?} is not an RFC 3339 date-time"));
    }
}

fn check_object(schema: &Value, fields: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                errors.push(format!("{path}.{name}: Required value"));
            }
        }
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|v| v.is_object());
    for (name, field) in fields {
        let child_path = format!("{path}.{name}");
        match (props.and_then(|p| p.get(name)), additional) {
            (Some(child), _) | (None, Some(child)) => {
                validate_value(child, field, &child_path, errors)
            }
            (None, None) if preserve => {}
            // With no properties at all the node is an open object only if it says so.
            (None, None) => errors.push(format!("{child_path}: unknown field \"{name}\"")),
        }
    }
}

/// What the API server answers to a create (or, with `old`, an update) of `manifest`:
/// the stored object with defaults filled in, or every reason it refuses it.
pub fn admit(
    crd: &CustomResourceDefinition,
    manifest: &Value,
    old: Option<&Value>,
) -> Result<Value, Vec<String>> {
    let schema = schema_of(crd);
    let mut errors = Vec::new();
    let expected_api_version = format!("{}/{}", crd.spec.group, crd.spec.versions[0].name);
    if manifest.get("apiVersion").and_then(Value::as_str) != Some(expected_api_version.as_str()) {
        errors.push(format!("apiVersion: must be {expected_api_version}"));
    }
    if manifest.get("kind").and_then(Value::as_str) != Some(crd.spec.names.kind.as_str()) {
        errors.push(format!("kind: must be {}", crd.spec.names.kind));
    }
    match manifest.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) if is_dns_subdomain(name) => {}
        Some(name) => errors.push(format!(
            "metadata.name: {name:?} is not a DNS-1123 subdomain"
        )),
        None => errors.push("metadata.name: Required value".to_owned()),
    }
    let mut object = manifest.clone();
    apply_defaults(&schema, &mut object);
    let mut body = object.clone();
    if let Some(fields) = body.as_object_mut() {
        // apiVersion, kind and metadata are the API server's own, not the CRD schema's.
        for own in ["apiVersion", "kind", "metadata"] {
            fields.remove(own);
        }
    }
    validate_value(&schema, &body, "", &mut errors);
    if errors.is_empty()
        && let Err(failures) = kube_cel::Validator::new().validate(&schema, &object, old)
    {
        errors.extend(failures.iter().map(ToString::to_string));
    }
    if errors.is_empty() {
        Ok(object)
    } else {
        Err(errors)
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=253).contains(&bytes.len())
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-' || *b == b'.')
}
