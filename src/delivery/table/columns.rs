//! A channel table's columns — pure: the Iceberg schema a record schema (JSON Schema, as the
//! Glue Schema Registry holds it for `GSR_JSON` and `JSON` records) describes, the table's
//! partition spec, and records turned into the table's columns, one bad record set aside
//! without failing the others.

use std::sync::Arc;

use arrow_array::RecordBatch;
use iceberg::spec::{
    ListType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Transform, Type,
    UnboundPartitionSpec,
};
use serde_json::Value;

/// Why a record schema or partition spec cannot describe a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnsError {
    /// The schema is not a JSON Schema of an object with properties.
    #[error("the record schema must be a JSON Schema of an object with properties")]
    NotAnObject,
    /// A property whose type has no Iceberg column type.
    #[error("property {path}: {reason}")]
    Property {
        /// The property's dotted path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The partition source is not a timestamptz column of the schema.
    #[error(
        "partition source {0}: TIME_HOUR partitions by a column of type timestamptz (a string property with format date-time)"
    )]
    PartitionSource(String),
    /// The Iceberg library refused the schema or spec.
    #[error("{0}")]
    Iceberg(String),
}

fn property_error(path: &str, reason: impl ToString) -> ColumnsError {
    ColumnsError::Property {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Hands out field ids in order (the table's creation renumbers them; they only need to be
/// unique here).
struct Ids(i32);

impl Ids {
    fn next(&mut self) -> i32 {
        self.0 += 1;
        self.0
    }
}

/// A property's declared types, without `null`, and whether `null` was among them.
fn declared_type(property: &Value) -> (Option<&str>, bool) {
    match &property["type"] {
        Value::String(t) => (Some(t.as_str()), false),
        Value::Array(types) => {
            let nullable = types.iter().any(|t| t == "null");
            let mut others = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null");
            match (others.next(), others.next()) {
                (Some(only), None) => (Some(only), nullable),
                _ => (None, nullable),
            }
        }
        _ => (None, false),
    }
}

fn column_type(property: &Value, path: &str, ids: &mut Ids) -> Result<Type, ColumnsError> {
    let (declared, _) = declared_type(property);
    Ok(match declared {
        Some("string") => match property["format"].as_str() {
            Some("date-time") => Type::Primitive(PrimitiveType::Timestamptz),
            Some("date") => Type::Primitive(PrimitiveType::Date),
            _ => Type::Primitive(PrimitiveType::String),
        },
        Some("integer") => Type::Primitive(PrimitiveType::Long),
        Some("number") => Type::Primitive(PrimitiveType::Double),
        Some("boolean") => Type::Primitive(PrimitiveType::Boolean),
        Some("object") => Type::Struct(StructType::new(struct_fields(property, path, ids)?)),
        Some("array") => {
            let items = &property["items"];
            if !items.is_object() {
                return Err(property_error(path, "an array needs one `items` schema"));
            }
            let id = ids.next();
            let element = column_type(items, &format!("{path}[]"), ids)?;
            Type::List(ListType::new(Arc::new(NestedField::list_element(
                id, element, false,
            ))))
        }
        Some(other) => {
            return Err(property_error(
                path,
                format!("type {other} has no column type"),
            ));
        }
        None => {
            return Err(property_error(
                path,
                "give one `type` (string, integer, number, boolean, object or array), optionally with null",
            ));
        }
    })
}

fn struct_fields(
    object: &Value,
    path: &str,
    ids: &mut Ids,
) -> Result<Vec<NestedFieldRef>, ColumnsError> {
    let properties = object["properties"]
        .as_object()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| property_error(path, "an object needs `properties`"))?;
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields = Vec::with_capacity(properties.len());
    for (name, property) in properties {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let id = ids.next();
        let column = column_type(property, &child, ids)?;
        let (_, nullable) = declared_type(property);
        let field = if required.contains(&name.as_str()) && !nullable {
            NestedField::required(id, name, column)
        } else {
            NestedField::optional(id, name, column)
        };
        fields.push(Arc::new(field));
    }
    Ok(fields)
}

/// The Iceberg schema of records described by the JSON Schema `record_schema`: strings
/// (`date-time` → timestamptz, `date` → date), integers → long, numbers → double, booleans,
/// objects → structs, arrays → lists; properties in `required` (and not nullable) are
/// required columns.
pub fn table_schema(record_schema: &Value) -> Result<Schema, ColumnsError> {
    if declared_type(record_schema).0 != Some("object") {
        return Err(ColumnsError::NotAnObject);
    }
    let fields = struct_fields(record_schema, "", &mut Ids(0)).map_err(|e| match e {
        ColumnsError::Property { path, .. } if path.is_empty() => ColumnsError::NotAnObject,
        other => other,
    })?;
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| ColumnsError::Iceberg(e.to_string()))
}

/// The table's partition spec: an hour partition of each `TIME_HOUR` source column (named
/// `<column>_hour`, as Iceberg names hour partitions); unpartitioned when there is none.
pub fn partition_spec(
    schema: &Schema,
    hour_sources: &[String],
) -> Result<UnboundPartitionSpec, ColumnsError> {
    let mut spec = UnboundPartitionSpec::builder();
    for source in hour_sources {
        let field = schema
            .field_by_name(source)
            .filter(|f| *f.field_type == Type::Primitive(PrimitiveType::Timestamptz))
            .ok_or_else(|| ColumnsError::PartitionSource(source.clone()))?;
        spec = spec
            .add_partition_field(
                field.id,
                format!("{}_hour", source.replace('.', "_")),
                Transform::Hour,
            )
            .map_err(|e| ColumnsError::Iceberg(e.to_string()))?;
    }
    Ok(spec.build())
}

/// A column a record schema has and its table does not.
#[derive(Debug, Clone, PartialEq)]
pub struct NewColumn {
    /// The dotted path of the struct column it goes into; the top level when absent.
    pub parent: Option<String>,
    /// Its name.
    pub name: String,
    /// Its type.
    pub column: Type,
}

/// Whether two column types are the same, field ids aside.
fn same_type(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Primitive(a), Type::Primitive(b)) => a == b,
        (Type::Struct(a), Type::Struct(b)) => {
            a.fields().len() == b.fields().len()
                && a.fields()
                    .iter()
                    .zip(b.fields())
                    .all(|(x, y)| x.name == y.name && same_type(&x.field_type, &y.field_type))
        }
        (Type::List(a), Type::List(b)) => {
            same_type(&a.element_field.field_type, &b.element_field.field_type)
        }
        _ => false,
    }
}

fn compare_structs(
    current: &StructType,
    wanted: &StructType,
    parent: Option<&str>,
    added: &mut Vec<NewColumn>,
    changed: &mut Vec<String>,
) {
    for field in wanted.fields() {
        let path = match parent {
            Some(parent) => format!("{parent}.{}", field.name),
            None => field.name.clone(),
        };
        match current.field_by_name(&field.name) {
            None => added.push(NewColumn {
                parent: parent.map(str::to_owned),
                name: field.name.clone(),
                column: (*field.field_type).clone(),
            }),
            Some(existing) => match (existing.field_type.as_ref(), field.field_type.as_ref()) {
                (Type::Struct(have), Type::Struct(want)) => {
                    compare_structs(have, want, Some(&path), added, changed)
                }
                (have, want) if !same_type(have, want) => changed.push(path),
                _ => {}
            },
        }
    }
}

/// What a newer record schema (`wanted`, as a table schema) adds to a table's `current`
/// columns: the properties it gained, at the top level or inside a struct column both have
/// (added as optional columns, as Iceberg adds columns to existing rows). Properties whose type
/// changed are listed apart and keep their column (JSON's type changes are not Iceberg type
/// promotions); properties the schema dropped keep theirs too.
pub fn new_columns(current: &Schema, wanted: &Schema) -> (Vec<NewColumn>, Vec<String>) {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    compare_structs(
        current.as_struct(),
        wanted.as_struct(),
        None,
        &mut added,
        &mut changed,
    );
    (added, changed)
}

fn has_unknown(value: &Value, columns: &StructType) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    object
        .iter()
        .any(|(name, value)| match columns.field_by_name(name) {
            None => !value.is_null(),
            Some(field) => match field.field_type.as_ref() {
                Type::Struct(inner) => has_unknown(value, inner),
                _ => false,
            },
        })
}

/// Whether a JSON record has a (non-null) property the table has no column for: a sign
/// that the record schema gained one.
pub fn has_unknown_properties(schema: &Schema, record: &[u8]) -> bool {
    serde_json::from_slice::<Value>(record)
        .is_ok_and(|value| has_unknown(&value, schema.as_struct()))
}

/// Records turned into columns: the rows that fit, and each record that did not with why.
pub struct Decoded {
    /// The rows, in the order of the records that fit (none when no record fits).
    pub rows: Option<RecordBatch>,
    /// The indexes of the records that do not fit the schema, with the reason.
    pub rejected: Vec<(usize, String)>,
}

fn decode_all(
    arrow_schema: &Arc<arrow_schema::Schema>,
    records: &[&[u8]],
) -> Result<Option<RecordBatch>, String> {
    let mut decoder = arrow_json::ReaderBuilder::new(arrow_schema.clone())
        .with_batch_size(records.len().max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    for record in records {
        // One JSON value per record: a record holding two values is not one row.
        let value: Value = serde_json::from_slice(record).map_err(|e| e.to_string())?;
        if !value.is_object() {
            return Err("the record is not a JSON object".to_owned());
        }
        decoder
            .serialize(std::slice::from_ref(&value))
            .map_err(|e| e.to_string())?;
    }
    decoder.flush().map_err(|e| e.to_string())
}

/// Turns JSON `records` into rows of `arrow_schema` (the table schema's Arrow form). All at
/// once when every record fits; otherwise record by record, so that only the records that do
/// not fit are rejected.
pub fn decode(arrow_schema: &Arc<arrow_schema::Schema>, records: &[&[u8]]) -> Decoded {
    if let Ok(rows) = decode_all(arrow_schema, records) {
        return Decoded {
            rows,
            rejected: Vec::new(),
        };
    }
    let mut fitting = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match decode_all(arrow_schema, std::slice::from_ref(record)) {
            Ok(Some(row)) => fitting.push(row),
            Ok(None) => rejected.push((index, "the record is empty".to_owned())),
            Err(reason) => rejected.push((index, reason)),
        }
    }
    let rows = match fitting.len() {
        0 => None,
        _ => match arrow_select::concat::concat_batches(arrow_schema, &fitting) {
            Ok(rows) => Some(rows),
            Err(error) => {
                // Rows of one schema always concatenate; if not, nothing is written as if
                // it were.
                let reason = error.to_string();
                return Decoded {
                    rows: None,
                    rejected: (0..records.len()).map(|i| (i, reason.clone())).collect(),
                };
            }
        },
    };
    Decoded { rows, rejected }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn orders() -> Value {
        json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "integer"},
                "customer": {"type": "string"},
                "amount": {"type": ["number", "null"]},
                "placed_at": {"type": "string", "format": "date-time"},
                "paid": {"type": "boolean"},
                "address": {"type": "object", "properties": {"city": {"type": "string"}}},
                "items": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["order_id", "placed_at", "amount"]
        })
    }

    #[test]
    fn a_json_schema_becomes_table_columns() {
        let schema = table_schema(&orders()).expect("schema");
        let column = |name: &str| schema.field_by_name(name).expect(name).clone();
        assert_eq!(
            *column("order_id").field_type,
            Type::Primitive(PrimitiveType::Long)
        );
        assert!(column("order_id").required);
        assert!(!column("amount").required, "nullable beats required");
        assert_eq!(
            *column("placed_at").field_type,
            Type::Primitive(PrimitiveType::Timestamptz)
        );
        assert_eq!(
            *column("paid").field_type,
            Type::Primitive(PrimitiveType::Boolean)
        );
        assert_eq!(
            *column("address.city").field_type,
            Type::Primitive(PrimitiveType::String)
        );
        assert!(matches!(*column("items").field_type, Type::List(_)));
    }

    #[test]
    fn schemas_without_columns_are_refused() {
        assert_eq!(
            table_schema(&json!({"type": "string"})),
            Err(ColumnsError::NotAnObject)
        );
        assert_eq!(
            table_schema(&json!({"type": "object", "properties": {}})),
            Err(ColumnsError::NotAnObject)
        );
        let refused = table_schema(
            &json!({"type": "object", "properties": {"x": {"type": ["string", "integer"]}}}),
        );
        assert!(
            matches!(refused, Err(ColumnsError::Property { ref path, .. }) if path == "x"),
            "{refused:?}"
        );
        let refused =
            table_schema(&json!({"type": "object", "properties": {"x": {"type": "array"}}}));
        assert!(
            matches!(refused, Err(ColumnsError::Property { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn hour_partitions_need_a_timestamptz_column() {
        let schema = table_schema(&orders()).expect("schema");
        let spec = partition_spec(&schema, &["placed_at".to_owned()]).expect("spec");
        assert_eq!(spec.fields().len(), 1);
        assert_eq!(spec.fields()[0].name, "placed_at_hour");
        assert_eq!(spec.fields()[0].transform, Transform::Hour);
        for source in ["customer", "missing"] {
            assert_eq!(
                partition_spec(&schema, &[source.to_owned()]),
                Err(ColumnsError::PartitionSource(source.to_owned()))
            );
        }
        assert!(
            partition_spec(&schema, &[])
                .expect("none")
                .fields()
                .is_empty()
        );
    }

    #[test]
    fn a_newer_record_schema_adds_optional_columns_and_keeps_changed_ones() {
        let current = table_schema(&orders()).expect("schema");
        let mut newer = orders();
        newer["properties"]["coupon"] = json!({"type": "string"});
        newer["properties"]["address"]["properties"]["zip"] = json!({"type": "string"});
        newer["properties"]["paid"] = json!({"type": "string"});
        newer["required"] = json!(["order_id", "placed_at", "coupon"]);
        let wanted = table_schema(&newer).expect("newer");
        let (added, changed) = new_columns(&current, &wanted);
        let string = Type::Primitive(PrimitiveType::String);
        assert_eq!(
            added,
            vec![
                NewColumn {
                    parent: Some("address".into()),
                    name: "zip".into(),
                    column: string.clone()
                },
                NewColumn {
                    parent: None,
                    name: "coupon".into(),
                    column: string
                },
            ]
        );
        assert_eq!(changed, vec!["paid".to_owned()]);
        assert_eq!(new_columns(&current, &current), (vec![], vec![]));
        let mut fewer = orders();
        fewer["properties"]
            .as_object_mut()
            .expect("object")
            .remove("items");
        assert_eq!(
            new_columns(&current, &table_schema(&fewer).expect("fewer")),
            (vec![], vec![])
        );
    }

    #[test]
    fn records_with_properties_the_table_lacks_are_noticed() {
        let schema = table_schema(&orders()).expect("schema");
        let known = br#"{"order_id": 1, "placed_at": "2026-12-01T10:00:00Z", "address": {"city": "Porto"}}"#;
        assert!(!has_unknown_properties(&schema, known));
        assert!(!has_unknown_properties(
            &schema,
            br#"{"order_id": 1, "coupon": null}"#
        ));
        assert!(has_unknown_properties(
            &schema,
            br#"{"order_id": 1, "coupon": "X"}"#
        ));
        assert!(has_unknown_properties(
            &schema,
            br#"{"address": {"zip": "4000"}}"#
        ));
        assert!(!has_unknown_properties(&schema, b"not json"));
    }

    #[test]
    fn records_that_do_not_fit_are_set_aside_alone() {
        let schema = table_schema(&orders()).expect("schema");
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).expect("arrow"));
        let good = br#"{"order_id": 1, "amount": 2.5, "placed_at": "2026-12-01T10:15:00Z", "items": ["a"]}"#;
        let also_good = br#"{"order_id": 2, "amount": null, "placed_at": "2026-12-01T11:00:00Z", "extra": true}"#;
        let wrong_type =
            br#"{"order_id": "three", "amount": 1, "placed_at": "2026-12-01T10:00:00Z"}"#;
        let not_json = b"order 4";
        let missing = br#"{"amount": 1.0, "placed_at": "2026-12-01T10:00:00Z"}"#;
        let all = decode(&arrow, &[good, also_good]);
        assert!(all.rejected.is_empty());
        assert_eq!(all.rows.expect("rows").num_rows(), 2);
        let mixed = decode(&arrow, &[good, wrong_type, not_json, also_good, missing]);
        assert_eq!(
            mixed.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        assert_eq!(mixed.rows.expect("rows").num_rows(), 2);
    }
}
