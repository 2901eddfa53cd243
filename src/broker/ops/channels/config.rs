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
    ChannelKeys, ChannelOutput, DEFAULT_TEMPLATE, DeadLetterBucket, check_template,
};
use crate::delivery::control::ChannelRun;

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

/// The S3DestinationConfiguration DescribeChannel shows for a CreateChannel `request`:
/// checked, with the defaults filled in.
pub fn destination(request: &Value, channel: &str, min_freshness: u32) -> Result<Value, ApiError> {
    let given = |field: &str| request.get(field).filter(|v| !v.is_null());
    let s3 = match (
        given("S3DestinationConfiguration"),
        given("S3TablesDestinationConfiguration"),
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "Specify S3DestinationConfiguration or S3TablesDestinationConfiguration, not both.",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(format!(
                "Channel {channel}: Brook does not deliver to S3 Tables (Apache Iceberg) yet; use S3DestinationConfiguration to deliver to an S3-compatible bucket."
            )));
        }
        (None, None) => {
            return Err(invalid(
                "Specify S3DestinationConfiguration or S3TablesDestinationConfiguration.",
            ));
        }
        (Some(s3), None) => s3,
    };
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
    let dead_letters = &mut described["DeadLetterQueueS3Configuration"];
    if dead_letters.is_null() {
        *dead_letters = json!({"BucketARN": bucket_arn, "ExpectedBucketOwner": owner});
    }
    bucket_of(dead_letters["BucketARN"].as_str().unwrap_or_default())?;
    if dead_letters["ErrorOutputPrefix"].is_null() {
        dead_letters["ErrorOutputPrefix"] = json!(DEFAULT_ERROR_PREFIX);
    }
    Ok(described)
}

/// The RecordConfiguration of a stream configuration, checked for an S3 destination.
pub fn record_configuration(stream_configuration: &Value) -> Result<Value, ApiError> {
    let record = &stream_configuration["RecordConfiguration"];
    match record["RecordFormatType"].as_str() {
        Some("JSON" | "STRING" | "BYTE_ARRAY") => Ok(record.clone()),
        Some("GSR_JSON") => Err(invalid(
            "RecordFormatType GSR_JSON is supported only for S3 Tables destinations; use JSON, STRING or BYTE_ARRAY for an S3 bucket.",
        )),
        other => Err(invalid(format!(
            "RecordFormatType {} is not JSON, STRING or BYTE_ARRAY.",
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
/// region are the broker's, filled in by the worker's runner.
pub fn channel_run(stream: &str, channel: &ChannelRecord) -> Result<ChannelRun, ApiError> {
    let s3 = &channel.s3_destination;
    let storage = &s3["StorageConfiguration"];
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let bucket = bucket_of(storage["BucketARN"].as_str().unwrap_or_default())?.to_owned();
    let compression = match storage["CompressionType"].as_str() {
        Some("GZIP") => Compression::Gzip,
        Some("ZSTD") => Compression::Zstd,
        _ => Compression::Uncompressed,
    };
    let (require, append_newline) = match channel.record_configuration["RecordFormatType"].as_str()
    {
        Some("JSON") => (RecordShape::Json, true),
        Some("STRING") => (RecordShape::Utf8, true),
        _ => (RecordShape::Any, false),
    };
    let dead_letters = &s3["DeadLetterQueueS3Configuration"];
    let dead_letter_bucket = bucket_of(dead_letters["BucketARN"].as_str().unwrap_or_default())?;
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
            interval_seconds: s3["DataFreshnessInSeconds"]
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
        expected_owner: text(&storage["ExpectedBucketOwner"]),
        dead_letter_bucket: (dead_letter_bucket != bucket).then(|| DeadLetterBucket {
            name: dead_letter_bucket.to_owned(),
            expected_owner: text(&dead_letters["ExpectedBucketOwner"]),
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
            encryption: None,
            logging: logging(None),
            tags: Default::default(),
            policy: None,
        }
    }

    #[test]
    fn channel_destination_defaults_are_filled_in() {
        let described = destination(
            &request(json!({"StorageConfiguration": storage()})),
            "c",
            300,
        )
        .expect("valid");
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
            destination(&request(s3), "c", 300)
        };
        assert!(s3(json!({"DataFreshnessInSeconds": 60})).is_err());
        assert!(s3(json!({"DataFreshnessInSeconds": 901})).is_err());
        assert!(s3(json!({"DataFreshnessInSeconds": 900})).is_ok());
        let mut bad_template = json!({"StorageConfiguration": storage()});
        bad_template["StorageConfiguration"]["OutputKeyTemplate"] = json!("x/!{nope}");
        assert!(destination(&request(bad_template), "c", 300).is_err());
        let tables = json!({"ChannelName": "c", "S3TablesDestinationConfiguration": {}});
        let refused = destination(&tables, "c", 300).expect_err("S3 Tables");
        assert!(refused.message.contains("S3 Tables"), "{}", refused.message);
        assert!(destination(&json!({}), "c", 300).is_err());
        assert_eq!(freshness(Some(1), 1).expect("floor lowered"), 1);
    }

    #[test]
    fn channel_record_formats_choose_the_record_check_and_delimiter() {
        let described = destination(
            &request(json!({"StorageConfiguration": storage()})),
            "c",
            300,
        )
        .expect("valid");
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
        assert!(
            record_configuration(&json!({"RecordConfiguration": {"RecordFormatType": "GSR_JSON"}}))
                .is_err()
        );
    }

    #[test]
    fn channel_run_reads_from_the_channel_creation_into_its_buckets() {
        let mut s3 = json!({"StorageConfiguration": storage(), "DataFreshnessInSeconds": 600});
        s3["DeadLetterQueueS3Configuration"] =
            json!({"BucketARN": "arn:aws:s3:::dead", "ExpectedBucketOwner": "111111111111"});
        s3["StorageConfiguration"]["StorageClass"] = json!("GLACIER_IR");
        let described = destination(&request(s3), "c", 300).expect("valid");
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
}
