//! A channel's configuration — pure: checking CreateChannel's and UpdateChannel's members,
//! filling in the defaults DescribeChannel shows, and translating a channel into the work of
//! its delivery worker.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::invalid;
use crate::api::delivery::{
    BufferingHints, Compression, DeliverySource, DeliveryStreamSpec, Destination, Processing,
    RecordShape, S3Destination, StartingPosition, StreamSource,
};
use crate::broker::catalog::ChannelRecord;
use crate::broker::protocol::ApiError;
use crate::delivery::channel::{
    ChannelKeys, ChannelOutput, ChannelTable, DEFAULT_TEMPLATE, DeadLetterBucket, check_template,
};
use crate::delivery::control::ChannelRun;
use crate::delivery::table::{ParquetCompression, TableTarget};

/// DataFreshnessInSeconds when the caller gives none.
const DEFAULT_FRESHNESS_S: i64 = 300;
/// The longest DataFreshnessInSeconds.
const MAX_FRESHNESS_S: i64 = 900;
/// Input bytes past which a shard's batch is delivered before its freshness is due.
const BUFFER_MIB: i32 = 64;
/// The error output prefix of a channel whose dead-letter configuration names none.
const DEFAULT_ERROR_PREFIX: &str = "errors/";

/// Checks a DataFreshnessInSeconds against `min..=900`; the default when absent.
pub fn freshness(seconds: Option<i64>, min: u32) -> Result<i64, ApiError> {
    let seconds = seconds.unwrap_or(DEFAULT_FRESHNESS_S);
    if (i64::from(min)..=MAX_FRESHNESS_S).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(invalid(format!(
            "DataFreshnessInSeconds {seconds} is not between {min} and {MAX_FRESHNESS_S}."
        )))
    }
}

/// The bucket an `arn:aws…:s3:::<bucket>` ARN names.
fn bucket_of(arn: &str) -> Result<&str, ApiError> {
    crate::delivery::s3::bucket_in_arn(arn)
        .ok_or_else(|| invalid(format!("BucketARN {arn} is not an S3 bucket ARN.")))
}

/// A channel's destination as DescribeChannel shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Described {
    /// S3DestinationConfiguration.
    S3(Value),
    /// S3TablesDestinationConfiguration.
    Tables(Value),
}

/// The destination member a CreateChannel or UpdateChannel `request` gives, and whether it is
/// the S3 Tables one; giving both is refused.
pub fn given_destination(request: &Value) -> Result<Option<(&Value, bool)>, ApiError> {
    let given = |field: &str| request.get(field).filter(|v| !v.is_null());
    match (
        given("S3DestinationConfiguration"),
        given("S3TablesDestinationConfiguration"),
    ) {
        (Some(_), Some(_)) => Err(invalid(
            "Specify S3DestinationConfiguration or S3TablesDestinationConfiguration, not both.",
        )),
        (Some(s3), None) => Ok(Some((s3, false))),
        (None, Some(tables)) => Ok(Some((tables, true))),
        (None, None) => Ok(None),
    }
}

/// The destination DescribeChannel shows for a CreateChannel `request`: checked, with the
/// defaults filled in.
pub fn destination(request: &Value, min_freshness: u32) -> Result<Described, ApiError> {
    match given_destination(request)? {
        Some((tables, true)) => tables_destination(tables, min_freshness).map(Described::Tables),
        Some((s3, false)) => s3_destination(s3, min_freshness).map(Described::S3),
        None => Err(invalid(
            "Specify S3DestinationConfiguration or S3TablesDestinationConfiguration.",
        )),
    }
}

/// A DeadLetterQueueS3Configuration with its default error prefix.
fn dead_letters(mut dead_letters: Value) -> Result<Value, ApiError> {
    bucket_of(dead_letters["BucketARN"].as_str().unwrap_or_default())?;
    if dead_letters["ErrorOutputPrefix"].is_null() {
        dead_letters["ErrorOutputPrefix"] = json!(DEFAULT_ERROR_PREFIX);
    }
    Ok(dead_letters)
}

fn s3_destination(s3: &Value, min_freshness: u32) -> Result<Value, ApiError> {
    let mut described = s3.clone();
    let seconds = freshness(s3["DataFreshnessInSeconds"].as_i64(), min_freshness)?;
    described["DataFreshnessInSeconds"] = json!(seconds);
    let storage = &mut described["StorageConfiguration"];
    let bucket_arn = storage["BucketARN"].as_str().unwrap_or_default().to_owned();
    bucket_of(&bucket_arn)?;
    match storage["OutputKeyTemplate"].as_str() {
        Some(template) => check_template(template).map_err(|e| invalid(e.to_string()))?,
        None => storage["OutputKeyTemplate"] = json!(DEFAULT_TEMPLATE),
    }
    if storage["StorageClass"].is_null() {
        storage["StorageClass"] = json!("STANDARD");
    }
    let owner = storage["ExpectedBucketOwner"].clone();
    let given = described["DeadLetterQueueS3Configuration"].take();
    described["DeadLetterQueueS3Configuration"] = dead_letters(if given.is_null() {
        json!({"BucketARN": bucket_arn, "ExpectedBucketOwner": owner})
    } else {
        given
    })?;
    Ok(described)
}

fn tables_destination(tables: &Value, min_freshness: u32) -> Result<Value, ApiError> {
    let mut described = tables.clone();
    let seconds = freshness(tables["DataFreshnessInSeconds"].as_i64(), min_freshness)?;
    described["DataFreshnessInSeconds"] = json!(seconds);
    let given = described["DeadLetterQueueS3Configuration"].take();
    if given.is_null() {
        return Err(invalid(
            "DeadLetterQueueS3Configuration is required for a streaming table destination.",
        ));
    }
    described["DeadLetterQueueS3Configuration"] = dead_letters(given)?;
    let configurations = described["S3TablesConfigurationList"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let [table] = configurations else {
        return Err(invalid(
            "S3TablesConfigurationList must contain exactly one table: one table is supported per channel.",
        ));
    };
    target(table)?;
    Ok(described)
}

/// The table an S3TablesConfiguration names, checked.
fn target(table: &Value) -> Result<TableTarget, ApiError> {
    let text = |field: &str| table[field].as_str().unwrap_or_default().to_owned();
    let arn = text("TableBucketARN");
    let bucket_arn = arn
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":s3tables:"));
    if !bucket_arn
        .is_some_and(|(partition, rest)| partition.starts_with("aws") && rest.contains(":bucket/"))
    {
        return Err(invalid(format!(
            "TableBucketARN {arn} is not an S3 table bucket ARN."
        )));
    }
    let compression =
        ParquetCompression::from_type(table["CompressionType"].as_str().unwrap_or_default())
            .ok_or_else(|| invalid("CompressionType must be NONE, ZSTD or SNAPPY."))?;
    let mut hour_sources = Vec::new();
    let fields = table["PartitionSpec"]["PartitionFields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for field in fields {
        match field["Transform"].as_str() {
            Some("TIME_HOUR") => {}
            other => {
                return Err(invalid(format!(
                    "Partition transform {} is not supported; the only transform is TIME_HOUR.",
                    other.unwrap_or("null")
                )));
            }
        }
        let source = field["SourceName"].as_str().unwrap_or_default().to_owned();
        if source.is_empty() || hour_sources.contains(&source) {
            return Err(invalid(format!(
                "PartitionField SourceName {source:?} is empty or repeated."
            )));
        }
        hour_sources.push(source);
    }
    Ok(TableTarget {
        table_bucket_arn: arn,
        namespace: text("Namespace"),
        table: text("TableName"),
        compression,
        hour_sources,
        schema_arn: String::new(),
    })
}

/// The RecordConfiguration of a stream configuration, checked for the channel's destination
/// (`to_table`: an S3 Tables one).
pub fn record_configuration(
    stream_configuration: &Value,
    to_table: bool,
) -> Result<Value, ApiError> {
    let record = &stream_configuration["RecordConfiguration"];
    let format = record["RecordFormatType"].as_str();
    match (format, to_table) {
        (Some("JSON" | "STRING" | "BYTE_ARRAY"), false) => Ok(record.clone()),
        (Some("GSR_JSON"), false) => Err(invalid(
            "RecordFormatType GSR_JSON is supported only for S3 Tables destinations; use JSON, STRING or BYTE_ARRAY for an S3 bucket.",
        )),
        (Some("GSR_JSON" | "JSON"), true) => {
            if record["GSRSchemaARN"].as_str().is_none_or(str::is_empty) {
                return Err(invalid(
                    "GSRSchemaARN is required when the channel destination is a streaming table: the table's columns come from the schema.",
                ));
            }
            Ok(record.clone())
        }
        (Some("STRING" | "BYTE_ARRAY"), true) => Err(invalid(format!(
            "RecordFormatType {} is supported only for general purpose S3 destinations; use JSON or GSR_JSON for a streaming table.",
            format.unwrap_or_default()
        ))),
        (other, _) => Err(invalid(format!(
            "RecordFormatType {} is not GSR_JSON, JSON, STRING or BYTE_ARRAY.",
            other.unwrap_or("null")
        ))),
    }
}

/// A LoggingConfiguration as described: CloudWatch Logs off when not given.
pub fn logging(given: Option<&Value>) -> Value {
    match given {
        Some(logging) if !logging.is_null() => logging.clone(),
        _ => json!({"CloudWatchLogs": {"Enabled": false}}),
    }
}

/// The work of `channel`'s delivery worker, reading stream `stream`. The S3 endpoint and
/// region are the broker's, filled in by the worker's runner. A channel to a table writes
/// objects only to its dead-letter bucket.
pub fn channel_run(stream: &str, channel: &ChannelRecord) -> Result<ChannelRun, ApiError> {
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let (destination, table) = match &channel.tables_destination {
        Some(tables) => {
            let mut target = target(&tables["S3TablesConfigurationList"][0])?;
            target.schema_arn =
                text(&channel.record_configuration["GSRSchemaARN"]).unwrap_or_default();
            (tables, Some(target))
        }
        None => (&channel.s3_destination, None),
    };
    let storage = &destination["StorageConfiguration"];
    let dead_letters = &destination["DeadLetterQueueS3Configuration"];
    let dead_letter_bucket = bucket_of(dead_letters["BucketARN"].as_str().unwrap_or_default())?;
    let bucket = match &table {
        Some(_) => dead_letter_bucket.to_owned(),
        None => bucket_of(storage["BucketARN"].as_str().unwrap_or_default())?.to_owned(),
    };
    let compression = match storage["CompressionType"].as_str() {
        Some("GZIP") => Compression::Gzip,
        Some("ZSTD") => Compression::Zstd,
        _ => Compression::Uncompressed,
    };
    let (require, append_newline) = match channel.record_configuration["RecordFormatType"].as_str()
    {
        Some("JSON" | "GSR_JSON") => (RecordShape::Json, table.is_none()),
        Some("STRING") => (RecordShape::Utf8, true),
        _ => (RecordShape::Any, false),
    };
    let created = Timestamp::from_millisecond(channel.created_ms as i64)
        .map_err(|e| invalid(format!("channel creation time: {e}")))?;
    let spec = DeliveryStreamSpec {
        source: DeliverySource {
            stream: Some(StreamSource {
                name: stream.to_owned(),
                starting_position: StartingPosition::AtTimestamp,
                timestamp: Some(Time(created)),
            }),
            direct_put: None,
        },
        buffering: BufferingHints {
            size_mib: BUFFER_MIB,
            interval_seconds: destination["DataFreshnessInSeconds"]
                .as_i64()
                .unwrap_or(DEFAULT_FRESHNESS_S) as i32,
        },
        processing: Processing {
            deaggregate: false,
            append_newline,
            require,
        },
        destination: Destination {
            s3: Some(S3Destination {
                endpoint: None,
                bucket: bucket.clone(),
                region: "us-east-1".to_owned(),
                prefix: String::new(),
                error_output_prefix: text(&dead_letters["ErrorOutputPrefix"]),
                compression,
                force_path_style: None,
                credentials_secret_ref: None,
            }),
            http: None,
        },
        worker: None,
    };
    let output = ChannelOutput {
        keys: ChannelKeys {
            template: text(&storage["OutputKeyTemplate"])
                .unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned()),
            channel_name: channel.name.clone(),
            channel_id: channel.id.clone(),
            stream_name: stream.to_owned(),
        },
        storage_class: text(&storage["StorageClass"]).filter(|c| c != "STANDARD"),
        expected_owner: text(&storage["ExpectedBucketOwner"]).or_else(|| {
            table
                .as_ref()
                .and_then(|_| text(&dead_letters["ExpectedBucketOwner"]))
        }),
        dead_letter_bucket: (dead_letter_bucket != bucket).then(|| DeadLetterBucket {
            name: dead_letter_bucket.to_owned(),
            expected_owner: text(&dead_letters["ExpectedBucketOwner"]),
        }),
        table: table.map(|target| ChannelTable {
            target,
            tables_endpoint: None,
            glue_endpoint: None,
            crash_after_commit: false,
        }),
    };
    Ok(ChannelRun {
        id: channel.id.clone(),
        generation: channel.generation,
        name: channel.name.clone(),
        spec,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(s3: Value) -> Value {
        json!({"ChannelName": "c", "S3DestinationConfiguration": s3})
    }

    fn storage() -> Value {
        json!({"BucketARN": "arn:aws:s3:::lake", "ExpectedBucketOwner": "000000000000", "CompressionType": "GZIP"})
    }

    /// The S3 destination a valid `request` describes.
    fn s3_described(request: &Value) -> Value {
        match destination(request, 300).expect("valid") {
            Described::S3(s3) => s3,
            other => panic!("not an S3 destination: {other:?}"),
        }
    }

    fn record(destination: Value, format: &str) -> ChannelRecord {
        ChannelRecord {
            id: "abc".into(),
            name: "c".into(),
            created_ms: 1_700_000_000_000,
            deleting_since_ms: None,
            updating_until_ms: None,
            generation: 2,
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            record_configuration: json!({"RecordFormatType": format}),
            s3_destination: destination,
            tables_destination: None,
            encryption: None,
            logging: logging(None),
            tags: Default::default(),
            policy: None,
        }
    }

    #[test]
    fn channel_destination_defaults_are_filled_in() {
        let described = s3_described(&request(json!({"StorageConfiguration": storage()})));
        assert_eq!(described["DataFreshnessInSeconds"], 300);
        assert_eq!(
            described["StorageConfiguration"]["OutputKeyTemplate"],
            DEFAULT_TEMPLATE
        );
        assert_eq!(
            described["StorageConfiguration"]["StorageClass"],
            "STANDARD"
        );
        assert_eq!(
            described["DeadLetterQueueS3Configuration"],
            json!({"BucketARN": "arn:aws:s3:::lake", "ExpectedBucketOwner": "000000000000", "ErrorOutputPrefix": "errors/"})
        );
    }

    #[test]
    fn channel_destinations_are_checked() {
        let s3 = |extra: Value| {
            let mut s3 = json!({"StorageConfiguration": storage()});
            for (k, v) in extra.as_object().expect("object") {
                s3[k] = v.clone();
            }
            destination(&request(s3), 300)
        };
        assert!(s3(json!({"DataFreshnessInSeconds": 60})).is_err());
        assert!(s3(json!({"DataFreshnessInSeconds": 901})).is_err());
        assert!(s3(json!({"DataFreshnessInSeconds": 900})).is_ok());
        let mut bad_template = json!({"StorageConfiguration": storage()});
        bad_template["StorageConfiguration"]["OutputKeyTemplate"] = json!("x/!{nope}");
        assert!(destination(&request(bad_template), 300).is_err());
        let both = json!({"S3DestinationConfiguration": {"StorageConfiguration": storage()}, "S3TablesDestinationConfiguration": tables()});
        assert!(destination(&both, 300).is_err());
        assert!(destination(&json!({}), 300).is_err());
        assert_eq!(freshness(Some(1), 1).expect("floor lowered"), 1);
    }

    #[test]
    fn channel_record_formats_choose_the_record_check_and_delimiter() {
        let described = s3_described(&request(json!({"StorageConfiguration": storage()})));
        let run = |format| {
            let run = channel_run("clicks", &record(described.clone(), format)).expect("run");
            (
                run.spec.processing.require,
                run.spec.processing.append_newline,
            )
        };
        assert_eq!(run("JSON"), (RecordShape::Json, true));
        assert_eq!(run("STRING"), (RecordShape::Utf8, true));
        assert_eq!(run("BYTE_ARRAY"), (RecordShape::Any, false));
        let format = |format: &str, schema: Option<&str>, to_table| {
            let mut record = json!({"RecordFormatType": format});
            if let Some(schema) = schema {
                record["GSRSchemaARN"] = json!(schema);
            }
            record_configuration(&json!({"RecordConfiguration": record}), to_table).is_ok()
        };
        let schema = Some("arn:aws:glue:us-east-1:000000000000:schema/registry/orders");
        assert!(!format("GSR_JSON", schema, false));
        assert!(format("JSON", None, false));
        assert!(format("GSR_JSON", schema, true));
        assert!(format("JSON", schema, true));
        assert!(
            !format("JSON", None, true),
            "a table's columns come from a schema"
        );
        assert!(!format("STRING", schema, true));
        assert!(!format("BYTE_ARRAY", schema, true));
    }

    #[test]
    fn channel_run_reads_from_the_channel_creation_into_its_buckets() {
        let mut s3 = json!({"StorageConfiguration": storage(), "DataFreshnessInSeconds": 600});
        s3["DeadLetterQueueS3Configuration"] =
            json!({"BucketARN": "arn:aws:s3:::dead", "ExpectedBucketOwner": "111111111111"});
        s3["StorageConfiguration"]["StorageClass"] = json!("GLACIER_IR");
        let described = s3_described(&request(s3));
        let run = channel_run("clicks", &record(described, "JSON")).expect("run");
        let source = run.spec.source.stream.expect("a stream source");
        assert_eq!(source.starting_position, StartingPosition::AtTimestamp);
        assert_eq!(
            source.timestamp.map(|t| t.0.as_millisecond()),
            Some(1_700_000_000_000)
        );
        assert_eq!(run.spec.buffering.interval_seconds, 600);
        let s3 = run.spec.destination.s3.expect("s3");
        assert_eq!(
            (s3.bucket.as_str(), s3.compression),
            ("lake", Compression::Gzip)
        );
        assert_eq!(s3.error_output_prefix.as_deref(), Some("errors/"));
        assert_eq!(run.output.storage_class.as_deref(), Some("GLACIER_IR"));
        assert_eq!(
            run.output.dead_letter_bucket,
            Some(DeadLetterBucket {
                name: "dead".into(),
                expected_owner: Some("111111111111".into())
            })
        );
        assert_eq!(run.generation, 2);
    }

    fn tables() -> Value {
        json!({
            "DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::dead", "ExpectedBucketOwner": "111111111111"},
            "S3TablesConfigurationList": [{
                "TableBucketARN": "arn:aws:s3tables:us-east-1:000000000000:bucket/lakehouse",
                "Namespace": "sales",
                "TableName": "orders",
                "CompressionType": "ZSTD",
                "PartitionSpec": {"PartitionFields": [{"Transform": "TIME_HOUR", "SourceName": "placed_at"}]}
            }]
        })
    }

    fn tables_request(tables: Value) -> Value {
        json!({"ChannelName": "c", "S3TablesDestinationConfiguration": tables})
    }

    #[test]
    fn a_table_channel_writes_its_table_and_only_dead_letters_to_s3() {
        let Described::Tables(described) =
            destination(&tables_request(tables()), 300).expect("valid")
        else {
            panic!("not a table destination")
        };
        assert_eq!(described["DataFreshnessInSeconds"], 300);
        assert_eq!(
            described["DeadLetterQueueS3Configuration"]["ErrorOutputPrefix"],
            "errors/"
        );
        let mut channel = record(Value::Null, "GSR_JSON");
        channel.record_configuration["GSRSchemaARN"] =
            json!("arn:aws:glue:us-east-1:000000000000:schema/registry/orders");
        channel.tables_destination = Some(described);
        let run = channel_run("clicks", &channel).expect("run");
        assert_eq!(
            (
                run.spec.processing.require,
                run.spec.processing.append_newline
            ),
            (RecordShape::Json, false)
        );
        let s3 = run.spec.destination.s3.expect("the dead-letter bucket");
        assert_eq!(s3.bucket, "dead");
        assert_eq!(run.output.dead_letter_bucket, None);
        assert_eq!(run.output.expected_owner.as_deref(), Some("111111111111"));
        let table = run.output.table.expect("a table");
        assert_eq!(
            table.target,
            TableTarget {
                table_bucket_arn: "arn:aws:s3tables:us-east-1:000000000000:bucket/lakehouse".into(),
                namespace: "sales".into(),
                table: "orders".into(),
                compression: ParquetCompression::Zstd,
                hour_sources: vec!["placed_at".into()],
                schema_arn: "arn:aws:glue:us-east-1:000000000000:schema/registry/orders".into(),
            }
        );
    }

    #[test]
    fn table_destinations_are_checked() {
        let refused = |change: &dyn Fn(&mut Value)| {
            let mut tables = tables();
            change(&mut tables);
            destination(&tables_request(tables), 300)
                .expect_err("refused")
                .message
        };
        assert!(
            refused(&|t| t["DeadLetterQueueS3Configuration"] = Value::Null)
                .contains("DeadLetterQueueS3Configuration")
        );
        assert!(
            refused(&|t| {
                let table = t["S3TablesConfigurationList"][0].clone();
                t["S3TablesConfigurationList"] = json!([table.clone(), table]);
            })
            .contains("one table")
        );
        assert!(refused(&|t| t["S3TablesConfigurationList"] = json!([])).contains("one table"));
        assert!(
            refused(&|t| t["S3TablesConfigurationList"][0]["TableBucketARN"] =
                json!("arn:aws:s3:::lake"))
            .contains("table bucket")
        );
        assert!(
            refused(&|t| t["S3TablesConfigurationList"][0]["CompressionType"] = json!("GZIP"))
                .contains("CompressionType")
        );
        assert!(refused(&|t| t["S3TablesConfigurationList"][0]["PartitionSpec"]["PartitionFields"][0]["Transform"] = json!("TIME_DAY")).contains("TIME_HOUR"));
        assert!(
            refused(&|t| t["DataFreshnessInSeconds"] = json!(10))
                .contains("DataFreshnessInSeconds")
        );
    }
}
