//! Request checks driven by the Kinesis API model: every operation's input shape, with the
//! types, required members, lengths, ranges, patterns and enums the model gives them
//! (`model.json`, extracted from the model the AWS SDKs are generated from by
//! `tests/python/kinesis_constraints.py`; a test keeps it in step).
//!
//! Two passes, as Kinesis makes them. First the types: the first value of the wrong JSON type
//! is a `SerializationException` in Kinesis's words ("Expected list or null", "class
//! java.lang.String can not be converted to an Integer", a blob that is not base64). Then the
//! constraints: every violation, in the model's member order, depth first, at most ten, in one
//! `ValidationException` ("2 validation errors detected: Value null at 'streamName' failed to
//! satisfy constraint: Member must not be null; ...").

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, ErrorKind};

const MODEL: &str = include_str!("model.json");

/// Kinesis reports at most this many violations in one answer.
const MAX_REPORTED: usize = 10;

#[derive(Deserialize)]
struct ModelFile {
    operations: HashMap<String, String>,
    shapes: HashMap<String, ShapeSpec>,
}

#[derive(Deserialize)]
struct ShapeSpec {
    #[serde(rename = "type")]
    kind: String,
    min: Option<f64>,
    max: Option<f64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    enumeration: Option<Vec<String>>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    members: Vec<(String, String)>,
    member: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Structure,
    List,
    Map,
    String,
    Integer,
    Long,
    Boolean,
    Blob,
    Timestamp,
}

struct Shape {
    kind: Kind,
    min: Option<f64>,
    max: Option<f64>,
    pattern: Option<(String, regex::Regex)>,
    enumeration: Option<Vec<String>>,
    required: Vec<String>,
    members: Vec<(String, String)>,
    member: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

/// The model's input shapes, ready to check requests against.
pub struct Model {
    operations: HashMap<String, String>,
    shapes: HashMap<String, Shape>,
}

/// Why the embedded model could not be loaded (a build defect, reported by a test).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file is not the expected JSON.
    #[error("model.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A shape's type is not one the validator knows.
    #[error("shape {shape}: unknown type {kind}")]
    UnknownType {
        /// The shape.
        shape: String,
        /// Its type.
        kind: String,
    },
    /// A pattern does not compile.
    #[error("shape {shape}: pattern {pattern}: {message}")]
    Pattern {
        /// The shape.
        shape: String,
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
}

impl Model {
    /// Parses a model file.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let file: ModelFile = serde_json::from_str(text)?;
        let mut shapes = HashMap::with_capacity(file.shapes.len());
        for (name, spec) in file.shapes {
            let kind = match spec.kind.as_str() {
                "structure" => Kind::Structure,
                "list" => Kind::List,
                "map" => Kind::Map,
                "string" => Kind::String,
                "integer" => Kind::Integer,
                "long" => Kind::Long,
                "boolean" => Kind::Boolean,
                "blob" => Kind::Blob,
                "timestamp" => Kind::Timestamp,
                other => {
                    return Err(ModelError::UnknownType {
                        shape: name,
                        kind: other.to_owned(),
                    });
                }
            };
            let pattern = match spec.pattern {
                Some(pattern) => {
                    // The model's patterns must match the whole value.
                    let compiled = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                        ModelError::Pattern {
                            shape: name.clone(),
                            pattern: pattern.clone(),
                            message: e.to_string(),
                        }
                    })?;
                    Some((pattern, compiled))
                }
                None => None,
            };
            shapes.insert(
                name,
                Shape {
                    kind,
                    min: spec.min,
                    max: spec.max,
                    pattern,
                    enumeration: spec.enumeration,
                    required: spec.required,
                    members: spec.members,
                    member: spec.member,
                    key: spec.key,
                    value: spec.value,
                },
            );
        }
        Ok(Self {
            operations: file.operations,
            shapes,
        })
    }

    /// The model Brook embeds.
    pub fn embedded() -> Result<&'static Model, &'static ModelError> {
        static MODEL_CELL: OnceLock<Result<Model, ModelError>> = OnceLock::new();
        MODEL_CELL.get_or_init(|| Model::parse(MODEL)).as_ref()
    }

    /// Operations the model has an input shape for.
    pub fn operations(&self) -> impl Iterator<Item = &str> {
        self.operations.keys().map(String::as_str)
    }

    /// Checks a JSON request body of `operation` against its input shape: the first type
    /// mismatch as a `SerializationException`, else every constraint violation as one
    /// `ValidationException`. A body that is not JSON, or an operation the model does not
    /// have, passes (the decoder answers those).
    pub fn check(&self, operation: &str, body: &[u8]) -> Result<(), ApiError> {
        let Some(input) = self.operations.get(operation) else {
            return Ok(());
        };
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(serde_json::Map::new())
        } else {
            match serde_json::from_slice(body) {
                Ok(value) => value,
                Err(_) => return Ok(()),
            }
        };
        self.check_value(input, &value)
    }

    /// Whether `text`, the value of a string member of shape `shape_name`, keeps the shape's
    /// length, pattern and enum rules. The data path checks its members with this instead of
    /// parsing every body a second time; a shape the model lacks conforms.
    pub fn string_conforms(&self, shape_name: &str, text: &str) -> bool {
        let Some(shape) = self.shapes.get(shape_name) else {
            return true;
        };
        // Lengths count characters.
        let length = if text.is_ascii() {
            text.len()
        } else {
            text.chars().count()
        } as f64;
        shape.min.is_none_or(|min| length >= min)
            && shape.max.is_none_or(|max| length <= max)
            && shape
                .pattern
                .as_ref()
                .is_none_or(|(_, compiled)| compiled.is_match(text))
            && shape
                .enumeration
                .as_ref()
                .is_none_or(|values| values.iter().any(|v| v == text))
    }

    fn check_value(&self, input: &str, value: &Value) -> Result<(), ApiError> {
        if let Some(message) = self.type_mismatch(input, value) {
            return Err(ApiError::new(ErrorKind::Serialization, message));
        }
        let mut violations = Vec::new();
        self.constraints(input, value, "", &mut violations);
        match violations.len() {
            0 => Ok(()),
            count => {
                violations.truncate(MAX_REPORTED);
                let count = count.min(MAX_REPORTED);
                Err(ApiError::new(
                    ErrorKind::Validation,
                    format!(
                        "{count} validation error{} detected: {}",
                        if count == 1 { "" } else { "s" },
                        violations.join("; ")
                    ),
                ))
            }
        }
    }

    /// The first value whose JSON type the shape cannot take, in Kinesis's words.
    fn type_mismatch(&self, shape_name: &str, value: &Value) -> Option<String> {
        let shape = self.shapes.get(shape_name)?;
        if value.is_null() {
            return None;
        }
        let structure_or_list = |value: &Value| match value {
            Value::Array(_) => Some("Start of list found where not expected".to_owned()),
            Value::Object(_) => {
                Some("Start of structure or map found where not expected.".to_owned())
            }
            _ => None,
        };
        const NUMBER: &str = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
        match shape.kind {
            Kind::Structure => match value {
                Value::Object(fields) => shape.members.iter().find_map(|(member, target)| {
                    fields
                        .get(member)
                        .and_then(|v| self.type_mismatch(target, v))
                }),
                Value::Array(_) => Some("Start of list found where not expected".to_owned()),
                _ => Some("Expected null".to_owned()),
            },
            Kind::List => match value {
                Value::Array(items) => {
                    let member = shape.member.as_deref()?;
                    items
                        .iter()
                        .find_map(|item| self.type_mismatch(member, item))
                }
                Value::Object(_) => {
                    Some("Start of structure or map found where not expected.".to_owned())
                }
                _ => Some("Expected list or null".to_owned()),
            },
            Kind::Map => match value {
                Value::Object(entries) => {
                    let target = shape.value.as_deref()?;
                    entries.values().find_map(|v| self.type_mismatch(target, v))
                }
                Value::Array(_) => Some("Start of list found where not expected".to_owned()),
                _ => Some("Expected map or null".to_owned()),
            },
            Kind::String => match value {
                Value::Bool(_) => {
                    Some("class java.lang.Boolean can not be converted to an String".to_owned())
                }
                Value::Number(_) => Some(format!("{NUMBER} can not be converted to an String")),
                other => structure_or_list(other),
            },
            Kind::Integer | Kind::Long => {
                let name = if shape.kind == Kind::Integer {
                    "Integer"
                } else {
                    "Long"
                };
                match value {
                    Value::Bool(_) => Some(format!(
                        "class java.lang.Boolean can not be converted to an {name}"
                    )),
                    Value::String(_) => Some(format!(
                        "class java.lang.String can not be converted to an {name}"
                    )),
                    other => structure_or_list(other),
                }
            }
            Kind::Boolean => match value {
                Value::Number(_) => Some(format!("{NUMBER} can not be converted to an Boolean")),
                Value::String(text) => Some(format!(
                    "'{}' can not be converted to an Boolean",
                    text.to_uppercase()
                )),
                other => structure_or_list(other),
            },
            Kind::Blob => match value {
                Value::Bool(_) => {
                    Some("class java.lang.Boolean can not be converted to a Blob".to_owned())
                }
                Value::Number(_) => Some(format!("{NUMBER} can not be converted to a Blob")),
                Value::String(text) => base64_problem(text)
                    .map(|problem| format!("'{text}' can not be converted to a Blob: {problem}")),
                other => structure_or_list(other),
            },
            Kind::Timestamp => match value {
                Value::Bool(_) => Some(
                    "class java.lang.Boolean can not be converted to milliseconds since epoch"
                        .to_owned(),
                ),
                Value::String(_) => Some(
                    "class java.lang.String can not be converted to milliseconds since epoch"
                        .to_owned(),
                ),
                other => structure_or_list(other),
            },
        }
    }

    /// Appends every constraint `value` (at `path`) breaks, depth first.
    fn constraints(&self, shape_name: &str, value: &Value, path: &str, out: &mut Vec<String>) {
        let Some(shape) = self.shapes.get(shape_name) else {
            return;
        };
        let Value::Object(fields) = value else {
            return;
        };
        for (member, target) in &shape.members {
            let at = join_path(path, &lower_first(member));
            match fields.get(member).filter(|v| !v.is_null()) {
                None if shape.required.contains(member) => {
                    out.push(violation("null", &at, "Member must not be null"));
                }
                None => {}
                Some(field) => self.member_constraints(target, field, &at, out),
            }
        }
    }

    fn member_constraints(&self, shape_name: &str, value: &Value, at: &str, out: &mut Vec<String>) {
        let Some(shape) = self.shapes.get(shape_name) else {
            return;
        };
        let shown = || format!("'{}'", self.render(shape_name, value));
        if let (Some(values), Value::String(text)) = (&shape.enumeration, value)
            && !values.contains(text)
        {
            out.push(violation(
                &shown(),
                at,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    values.join(", ")
                ),
            ));
        }
        if let (Some((pattern, compiled)), Value::String(text)) = (&shape.pattern, value)
            && !compiled.is_match(text)
        {
            out.push(violation(
                &shown(),
                at,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            ));
        }
        let measured = match (shape.kind, value) {
            (Kind::String, Value::String(text)) => Some(text.chars().count() as f64),
            (Kind::Blob, Value::String(text)) => Some(decoded_len(text) as f64),
            (Kind::List, Value::Array(items)) => Some(items.len() as f64),
            (Kind::Map, Value::Object(entries)) => Some(entries.len() as f64),
            (Kind::Integer | Kind::Long, Value::Number(n)) => n.as_f64().map(f64::floor),
            _ => None,
        };
        let is_number = matches!(shape.kind, Kind::Integer | Kind::Long);
        if let Some(measured) = measured {
            let what = if is_number { "value" } else { "length" };
            if let Some(min) = shape.min
                && measured < min
            {
                out.push(violation(
                    &shown(),
                    at,
                    &format!(
                        "Member must have {what} greater than or equal to {}",
                        whole(min)
                    ),
                ));
            }
            if let Some(max) = shape.max
                && measured > max
            {
                out.push(violation(
                    &shown(),
                    at,
                    &format!(
                        "Member must have {what} less than or equal to {}",
                        whole(max)
                    ),
                ));
            }
        }
        match (shape.kind, value) {
            (Kind::Structure, _) => self.constraints(shape_name, value, at, out),
            (Kind::List, Value::Array(items)) => {
                let Some(member) = shape.member.as_deref() else {
                    return;
                };
                if self
                    .shapes
                    .get(member)
                    .is_some_and(|s| s.kind == Kind::Structure)
                {
                    for (i, item) in items.iter().enumerate() {
                        let item_at = format!("{at}.{}.member", i + 1);
                        self.constraints(member, item, &item_at, out);
                    }
                } else if let Some(rules) = self.broken_rules(member, items.iter()) {
                    out.push(violation(
                        &shown(),
                        at,
                        &format!("Member must satisfy constraint: [{rules}]"),
                    ));
                }
            }
            (Kind::Map, Value::Object(entries)) => {
                let keys: Vec<Value> = entries.keys().cloned().map(Value::String).collect();
                if let Some(rules) = shape
                    .key
                    .as_deref()
                    .and_then(|key| self.broken_rules(key, keys.iter()))
                {
                    out.push(violation(
                        &shown(),
                        at,
                        &format!("Map keys must satisfy constraint: [{rules}]"),
                    ));
                }
                if let Some(rules) = shape
                    .value
                    .as_deref()
                    .and_then(|v| self.broken_rules(v, entries.values()))
                {
                    out.push(violation(
                        &shown(),
                        at,
                        &format!("Map value must satisfy constraint: [{rules}]"),
                    ));
                }
            }
            _ => {}
        }
    }

    /// For scalar members of a list or map: the rules of `shape_name` (length and pattern),
    /// listed as Kinesis lists them, when any item breaks one.
    fn broken_rules<'a>(
        &self,
        shape_name: &str,
        mut items: impl Iterator<Item = &'a Value>,
    ) -> Option<String> {
        let shape = self.shapes.get(shape_name)?;
        let breaks = items.any(|item| {
            let mut found = Vec::new();
            self.member_constraints(shape_name, item, "", &mut found);
            !found.is_empty()
        });
        if !breaks {
            return None;
        }
        let mut rules = Vec::new();
        if let Some(max) = shape.max {
            rules.push(format!(
                "Member must have length less than or equal to {}",
                whole(max)
            ));
        }
        if let Some(min) = shape.min {
            rules.push(format!(
                "Member must have length greater than or equal to {}",
                whole(min)
            ));
        }
        if let Some((pattern, _)) = &shape.pattern {
            rules.push(format!(
                "Member must satisfy regular expression pattern: {pattern}"
            ));
        }
        if let Some(values) = &shape.enumeration {
            rules.push(format!(
                "Member must satisfy enum value set: [{}]",
                values.join(", ")
            ));
        }
        Some(rules.join(", "))
    }

    /// A value as Kinesis prints it in a violation.
    fn render(&self, shape_name: &str, value: &Value) -> String {
        let shape = self.shapes.get(shape_name);
        let kind = shape.map(|s| s.kind);
        match (kind, value) {
            (_, Value::Null) => "null".to_owned(),
            (_, Value::String(text)) if kind == Some(Kind::Blob) => {
                let len = decoded_len(text);
                format!("java.nio.HeapByteBuffer[pos=0 lim={len} cap={len}]")
            }
            (_, Value::String(text)) => text.clone(),
            (Some(Kind::Integer | Kind::Long), Value::Number(n)) => n
                .as_f64()
                .map_or_else(|| n.to_string(), |f| whole(f.floor())),
            (_, Value::Number(n)) => n.to_string(),
            (_, Value::Bool(b)) => b.to_string(),
            (_, Value::Array(items)) => {
                let member = shape.and_then(|s| s.member.as_deref()).unwrap_or("");
                let shown: Vec<String> = items.iter().map(|i| self.render(member, i)).collect();
                format!("[{}]", shown.join(", "))
            }
            (Some(Kind::Map), Value::Object(entries)) => {
                let target = shape.and_then(|s| s.value.as_deref()).unwrap_or("");
                let shown: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{k}={}", self.render(target, v)))
                    .collect();
                format!("{{{}}}", shown.join(", "))
            }
            // A structure prints as its Java class would, without the identity hash.
            (_, Value::Object(_)) => format!("com.amazonaws.kinesis.v20131202.{shape_name}"),
        }
    }
}

/// Checks `body` of `operation` against the embedded model (see [`Model::check`]).
pub fn check(operation: &str, body: &[u8]) -> Result<(), ApiError> {
    match Model::embedded() {
        Ok(model) => model.check(operation, body),
        // The model is part of the build; a test fails when it does not load.
        Err(_) => Ok(()),
    }
}

/// Whether `text` keeps the rules of the string shape `shape_name` of the embedded model (see
/// [`Model::string_conforms`]).
pub fn string_conforms(shape_name: &str, text: &str) -> bool {
    Model::embedded().map_or(true, |model| model.string_conforms(shape_name, text))
}

fn violation(value: &str, at: &str, constraint: &str) -> String {
    format!("Value {value} at '{at}' failed to satisfy constraint: {constraint}")
}

fn join_path(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_owned()
    } else {
        format!("{path}.{member}")
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A whole number as the model writes it (`1`, not `1.0`).
fn whole(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e18 {
        format!("{}", value as i64)
    } else {
        value.to_string()
    }
}

/// Why `text` is not standard base64, worded as Kinesis words it.
fn base64_problem(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(4) {
        return Some(format!(
            "Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            text.len()
        ));
    }
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 {
        return Some("Invalid Base64 character: '='".to_owned());
    }
    if let Some(bad) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/'))
    {
        return Some(format!("Invalid Base64 character: '{bad}'"));
    }
    if base64::engine::general_purpose::STANDARD
        .decode(text)
        .is_err()
    {
        // Kinesis's own spelling.
        return Some("Invalid last non-pad Base64 character dectected".to_owned());
    }
    None
}

/// Bytes a base64 text decodes to (its length when it is not base64).
fn decoded_len(text: &str) -> usize {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_or(text.len(), |bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> &'static Model {
        Model::embedded().expect("the embedded model loads and every pattern compiles")
    }

    fn message(operation: &str, body: &str) -> (ErrorKind, String) {
        let error = model()
            .check(operation, body.as_bytes())
            .expect_err("a violation");
        (error.kind, error.message)
    }

    #[test]
    fn every_violation_is_reported_in_model_order() {
        assert_eq!(
            message("CreateStream", r#"{"ShardCount":0}"#),
            (
                ErrorKind::Validation,
                "2 validation errors detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null; Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1".to_owned()
            )
        );
    }

    #[test]
    fn patterns_lengths_and_enums_are_worded_as_kinesis_words_them() {
        let (_, text) = message(
            "GetShardIterator",
            r#"{"StreamName":"","ShardId":"a","ShardIteratorType":"OLDEST"}"#,
        );
        assert_eq!(
            text,
            "3 validation errors detected: Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1; Value 'OLDEST' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
        );
    }

    #[test]
    fn list_items_are_checked_at_their_one_based_path() {
        let (_, text) = message(
            "PutRecords",
            r#"{"StreamName":"s","Records":[{"Data":"AA==","PartitionKey":"k"},{"Data":"AA==","PartitionKey":""}]}"#,
        );
        assert_eq!(
            text,
            "1 validation error detected: Value '' at 'records.2.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1"
        );
    }

    #[test]
    fn types_are_checked_first_with_kinesis_wording() {
        for (body, expected) in [
            (
                r#"{"StreamName":"s","ShardCount":"1"}"#,
                "class java.lang.String can not be converted to an Integer",
            ),
            (
                r#"{"StreamName":["s"]}"#,
                "Start of list found where not expected",
            ),
            (
                r#"{"StreamName":{"a":1}}"#,
                "Start of structure or map found where not expected.",
            ),
            (
                r#"{"StreamName":true}"#,
                "class java.lang.Boolean can not be converted to an String",
            ),
        ] {
            assert_eq!(
                message("CreateStream", body),
                (ErrorKind::Serialization, expected.to_owned()),
                "{body}"
            );
        }
        assert_eq!(
            message("PutRecords", r#"{"StreamName":"s","Records":"x"}"#),
            (ErrorKind::Serialization, "Expected list or null".to_owned())
        );
        assert_eq!(
            message("PutRecord", r#"{"StreamName":"s","PartitionKey":"k","Data":"abc"}"#),
            (
                ErrorKind::Serialization,
                "'abc' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3".to_owned()
            )
        );
        assert_eq!(
            message(
                "PutRecord",
                r#"{"StreamName":"s","PartitionKey":"k","Data":"ab!c"}"#
            ),
            (
                ErrorKind::Serialization,
                "'ab!c' can not be converted to a Blob: Invalid Base64 character: '!'".to_owned()
            )
        );
    }

    #[test]
    fn at_most_ten_violations_are_reported() {
        let records: Vec<String> = (0..12)
            .map(|_| r#"{"Data":"AA==","PartitionKey":""}"#.to_owned())
            .collect();
        let body = format!(r#"{{"StreamName":"s","Records":[{}]}}"#, records.join(","));
        let (_, text) = message("PutRecords", &body);
        assert!(
            text.starts_with("10 validation errors detected: "),
            "{text}"
        );
        assert_eq!(text.matches("failed to satisfy constraint").count(), 10);
    }

    #[test]
    fn well_formed_requests_and_unknown_members_pass() {
        let model = model();
        assert!(
            model
                .check(
                    "CreateStream",
                    br#"{"StreamName":"s","ShardCount":2,"Other":1}"#
                )
                .is_ok()
        );
        assert!(model.check("ListStreams", b"").is_ok());
        assert!(model.check("NoSuchOperation", b"{}").is_ok());
    }
}
