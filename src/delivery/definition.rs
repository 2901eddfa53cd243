//! A delivery stream as the Firehose control API defines it (CreateDeliveryStream,
//! UpdateDestination) and describes it (DescribeDeliveryStream), and its translation into the
//! worker's `DeliveryStreamSpec` — pure, for the standalone broker's Firehose API.
//!
//! The destination configuration is kept as the caller sent it (with updates merged in), so
//! DescribeDeliveryStream answers with the caller's own fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::firehose::FirehoseError;
use crate::api::delivery::{
    BufferingHints, Compression, ContentEncoding, DeliverySource, DeliveryStreamSpec, Destination,
    DirectPut, HttpDestination, Processing, S3Destination, StartingPosition, StreamSource,
};

/// The destination id of a delivery stream's one destination.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// Which destination a definition has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DestinationKind {
    /// `ExtendedS3DestinationConfiguration`.
    ExtendedS3,
    /// `HttpEndpointDestinationConfiguration`.
    HttpEndpoint,
}

/// A delivery stream as the control API keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    /// Its name.
    pub name: String,
    /// The source stream's name, for `KinesisStreamAsSource`; direct put when absent.
    pub source_stream: Option<String>,
    /// The destination's kind.
    pub kind: DestinationKind,
    /// The destination configuration, as sent and updated.
    pub destination: Value,
    /// The version id, incremented by every UpdateDestination.
    pub version: i64,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Last update, Unix milliseconds.
    pub updated_ms: u64,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn invalid(message: impl Into<String>) -> FirehoseError {
    FirehoseError::invalid(message)
}

/// Checks a delivery stream name against Firehose's rule.
pub fn check_name(name: &str) -> Result<(), FirehoseError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 64"
        )))
    }
}

/// The bucket of an `arn:aws:s3:::bucket` ARN.
pub fn bucket_of(arn: &str) -> Result<String, FirehoseError> {
    super::s3::bucket_in_arn(arn)
        .map(str::to_owned)
        .ok_or_else(|| {
            invalid(format!(
                "BucketARN {arn:?} is not an S3 bucket ARN (arn:aws:s3:::<bucket>)"
            ))
        })
}

/// The stream name of a Kinesis stream ARN.
pub fn stream_of(arn: &str) -> Result<String, FirehoseError> {
    arn.split_once(":stream/")
        .map(|(_, name)| name.to_owned())
        .filter(|name| !name.is_empty() && arn.starts_with("arn:"))
        .ok_or_else(|| {
            invalid(format!(
                "KinesisStreamARN {arn:?} is not a Kinesis stream ARN"
            ))
        })
}

fn buffering(config: &Value) -> Result<BufferingHints, FirehoseError> {
    let hints = &config["BufferingHints"];
    let defaults = BufferingHints::default();
    let size = hints["SizeInMBs"]
        .as_i64()
        .unwrap_or(i64::from(defaults.size_mib));
    let interval = hints["IntervalInSeconds"]
        .as_i64()
        .unwrap_or(i64::from(defaults.interval_seconds));
    if !(1..=128).contains(&size) {
        return Err(invalid(format!(
            "BufferingHints.SizeInMBs {size} is not between 1 and 128"
        )));
    }
    if !(0..=900).contains(&interval) {
        return Err(invalid(format!(
            "BufferingHints.IntervalInSeconds {interval} is not between 0 and 900"
        )));
    }
    Ok(BufferingHints {
        size_mib: size as i32,
        interval_seconds: interval as i32,
    })
}

fn compression(config: &Value) -> Result<Compression, FirehoseError> {
    match config["CompressionFormat"]
        .as_str()
        .unwrap_or("UNCOMPRESSED")
    {
        "UNCOMPRESSED" => Ok(Compression::Uncompressed),
        "GZIP" => Ok(Compression::Gzip),
        "ZIP" => Ok(Compression::Zip),
        "Snappy" => Ok(Compression::Snappy),
        "HADOOP_SNAPPY" => Ok(Compression::HadoopSnappy),
        other => Err(invalid(format!(
            "CompressionFormat {other:?} is not one of UNCOMPRESSED, GZIP, ZIP, Snappy, HADOOP_SNAPPY"
        ))),
    }
}

/// Whether the processing configuration appends a delimiter to each record.
fn appends_newline(config: &Value) -> bool {
    let processing = &config["ProcessingConfiguration"];
    processing["Enabled"].as_bool().unwrap_or(false)
        && processing["Processors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["Type"] == "AppendDelimiterToRecord")
}

fn s3_destination(config: &Value, endpoint: Option<&str>) -> Result<S3Destination, FirehoseError> {
    let bucket = bucket_of(
        config["BucketARN"]
            .as_str()
            .ok_or_else(|| invalid("BucketARN is required"))?,
    )?;
    let destination = S3Destination {
        endpoint: endpoint.map(str::to_owned),
        bucket,
        region: "us-east-1".to_owned(),
        prefix: config["Prefix"].as_str().unwrap_or_default().to_owned(),
        error_output_prefix: config["ErrorOutputPrefix"].as_str().map(str::to_owned),
        compression: compression(config)?,
        force_path_style: None,
        credentials_secret_ref: None,
    };
    super::naming::check_prefix(&destination.prefix, false).map_err(|e| invalid(e.to_string()))?;
    if let Some(errors) = &destination.error_output_prefix {
        super::naming::check_prefix(errors, true).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(destination)
}

/// The worker spec of `definition`; `s3_endpoint` is the S3-compatible server objects go to.
/// Also returns the HTTP endpoint's access key, which the spec holds only by reference.
pub fn worker_spec(
    definition: &Definition,
    s3_endpoint: Option<&str>,
) -> Result<(DeliveryStreamSpec, Option<String>), FirehoseError> {
    let config = &definition.destination;
    let source = match &definition.source_stream {
        Some(name) => DeliverySource {
            stream: Some(StreamSource {
                name: name.clone(),
                starting_position: StartingPosition::TrimHorizon,
                timestamp: None,
            }),
            direct_put: None,
        },
        None => DeliverySource {
            stream: None,
            direct_put: Some(DirectPut {}),
        },
    };
    let (destination, access_key) = match definition.kind {
        DestinationKind::ExtendedS3 => (
            Destination {
                s3: Some(s3_destination(config, s3_endpoint)?),
                http: None,
            },
            None,
        ),
        DestinationKind::HttpEndpoint => {
            let endpoint = &config["EndpointConfiguration"];
            let url = endpoint["Url"]
                .as_str()
                .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                .ok_or_else(|| invalid("EndpointConfiguration.Url must be an http(s) URL"))?;
            let request = &config["RequestConfiguration"];
            let content_encoding = match request["ContentEncoding"].as_str().unwrap_or("NONE") {
                "NONE" => ContentEncoding::None,
                "GZIP" => ContentEncoding::Gzip,
                other => {
                    return Err(invalid(format!(
                        "ContentEncoding {other:?} is not NONE or GZIP"
                    )));
                }
            };
            let common_attributes = request["CommonAttributes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    Some((
                        a["AttributeName"].as_str()?.to_owned(),
                        a["AttributeValue"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            let backup = match config.get("S3Configuration") {
                Some(s3) if !s3.is_null() => Some(s3_destination(s3, s3_endpoint)?),
                _ => None,
            };
            let retry = config["RetryOptions"]["DurationInSeconds"]
                .as_i64()
                .unwrap_or(300);
            if !(0..=7200).contains(&retry) {
                return Err(invalid(format!(
                    "RetryOptions.DurationInSeconds {retry} is not between 0 and 7200"
                )));
            }
            (
                Destination {
                    s3: None,
                    http: Some(HttpDestination {
                        url: url.to_owned(),
                        access_key_secret_ref: None,
                        content_encoding,
                        retry_duration_seconds: retry as i32,
                        common_attributes,
                        s3_backup: backup,
                    }),
                },
                endpoint["AccessKey"].as_str().map(str::to_owned),
            )
        }
    };
    let spec = DeliveryStreamSpec {
        source,
        buffering: buffering(config)?,
        processing: Processing {
            // Firehose de-aggregates KPL records read from a Kinesis stream by itself.
            deaggregate: definition.source_stream.is_some(),
            append_newline: appends_newline(config),
            ..Processing::default()
        },
        destination,
        worker: None,
    };
    Ok((spec, access_key))
}

/// Merges an update into a configuration: fields of `update` replace those of `base`,
/// objects merge field by field.
pub fn merge(base: &mut Value, update: &Value) {
    match (base, update) {
        (Value::Object(base), Value::Object(update)) => {
            for (key, value) in update {
                match base.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, update) => *base = update.clone(),
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The `DeliveryStreamDescription` of DescribeDeliveryStream.
pub fn describe(definition: &Definition, region: &str, account: &str) -> Value {
    let arn = format!(
        "arn:aws:firehose:{region}:{account}:deliverystream/{}",
        definition.name
    );
    let mut destination = definition.destination.clone();
    // The access key is never described back.
    if let Some(endpoint) = destination
        .get_mut("EndpointConfiguration")
        .and_then(Value::as_object_mut)
    {
        endpoint.remove("AccessKey");
    }
    // Members the model marks required, filled with what the worker uses when absent.
    if let Some(fields) = destination.as_object_mut() {
        let hints = buffering(&definition.destination).unwrap_or_default();
        fields.entry("BufferingHints").or_insert(json!({
            "SizeInMBs": hints.size_mib, "IntervalInSeconds": hints.interval_seconds,
        }));
        if definition.kind == DestinationKind::ExtendedS3 {
            fields.entry("RoleARN").or_insert(json!(""));
            fields
                .entry("CompressionFormat")
                .or_insert(json!("UNCOMPRESSED"));
            fields
                .entry("EncryptionConfiguration")
                .or_insert(json!({"NoEncryptionConfig": "NoEncryption"}));
        } else {
            fields
                .entry("S3BackupMode")
                .or_insert(json!("FailedDataOnly"));
            fields
                .entry("RetryOptions")
                .or_insert(json!({"DurationInSeconds": 300}));
        }
    }
    let destination_key = match definition.kind {
        DestinationKind::ExtendedS3 => "ExtendedS3DestinationDescription",
        DestinationKind::HttpEndpoint => "HttpEndpointDestinationDescription",
    };
    let mut description = json!({
        "DeliveryStreamName": definition.name,
        "DeliveryStreamARN": arn,
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": if definition.source_stream.is_some() { "KinesisStreamAsSource" } else { "DirectPut" },
        "VersionId": definition.version.to_string(),
        "CreateTimestamp": seconds(definition.created_ms),
        "LastUpdateTimestamp": seconds(definition.updated_ms),
        "Destinations": [{"DestinationId": DESTINATION_ID, destination_key: destination}],
        "HasMoreDestinations": false,
    });
    if let Some(stream) = &definition.source_stream {
        description["Source"] = json!({"KinesisStreamSourceDescription": {
            "KinesisStreamARN": format!("arn:aws:kinesis:{region}:{account}:stream/{stream}"),
            "DeliveryStartTimestamp": seconds(definition.created_ms),
        }});
    }
    description
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(kind: DestinationKind, destination: Value, source: Option<&str>) -> Definition {
        Definition {
            name: "clicks-to-s3".into(),
            source_stream: source.map(str::to_owned),
            kind,
            destination,
            version: 1,
            created_ms: 1_000,
            updated_ms: 2_000,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn delivery_extended_s3_configuration_becomes_a_worker_spec() {
        let config = json!({
            "BucketARN": "arn:aws:s3:::archive", "Prefix": "clicks/",
            "CompressionFormat": "GZIP",
            "BufferingHints": {"SizeInMBs": 8, "IntervalInSeconds": 60},
            "ProcessingConfiguration": {"Enabled": true,
                "Processors": [{"Type": "AppendDelimiterToRecord"}]},
        });
        let (spec, key) = worker_spec(
            &definition(DestinationKind::ExtendedS3, config, Some("clicks")),
            Some("http://127.0.0.1:9000"),
        )
        .expect("a spec");
        assert_eq!(key, None);
        let s3 = spec.destination.s3.expect("s3");
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("archive", "clicks/")
        );
        assert_eq!(s3.compression, Compression::Gzip);
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (spec.buffering.size_mib, spec.buffering.interval_seconds),
            (8, 60)
        );
        assert!(spec.processing.append_newline && spec.processing.deaggregate);
        assert_eq!(spec.source.stream.expect("stream").name, "clicks");
    }

    #[test]
    fn delivery_bad_configurations_are_invalid_arguments() {
        let bad = [
            json!({"BucketARN": "archive"}),
            json!({"BucketARN": "arn:aws:s3:::archive", "CompressionFormat": "LZ4"}),
            json!({"BucketARN": "arn:aws:s3:::archive", "BufferingHints": {"SizeInMBs": 500}}),
            json!({"BucketARN": "arn:aws:s3:::archive", "Prefix": "!{nope}"}),
        ];
        for config in bad {
            let error = worker_spec(
                &definition(DestinationKind::ExtendedS3, config.clone(), None),
                None,
            )
            .expect_err("invalid");
            assert_eq!(error.code, "InvalidArgumentException", "{config}");
        }
        assert!(check_name("ok_name-1.x").is_ok());
        assert!(check_name("bad name").is_err());
        assert_eq!(
            stream_of("arn:aws:kinesis:us-east-1:000000000000:stream/clicks")
                .ok()
                .as_deref(),
            Some("clicks")
        );
        assert!(stream_of("clicks").is_err());
    }

    #[test]
    fn delivery_http_configuration_and_description_keep_the_access_key_private() {
        let config = json!({
            "EndpointConfiguration": {"Url": "https://collector/in", "AccessKey": "token"},
            "RequestConfiguration": {"ContentEncoding": "GZIP",
                "CommonAttributes": [{"AttributeName": "team", "AttributeValue": "platform"}]},
            "RetryOptions": {"DurationInSeconds": 60},
            "S3Configuration": {"BucketARN": "arn:aws:s3:::backup"},
        });
        let definition = definition(DestinationKind::HttpEndpoint, config, None);
        let (spec, key) = worker_spec(&definition, None).expect("a spec");
        assert_eq!(key.as_deref(), Some("token"));
        let http = spec.destination.http.expect("http");
        assert_eq!(http.content_encoding, ContentEncoding::Gzip);
        assert_eq!(http.common_attributes["team"], "platform");
        assert_eq!(http.s3_backup.expect("backup").bucket, "backup");
        assert!(spec.source.direct_put.is_some());
        let description = describe(&definition, "us-east-1", "000000000000");
        assert_eq!(description["DeliveryStreamType"], "DirectPut");
        let http = &description["Destinations"][0]["HttpEndpointDestinationDescription"];
        assert_eq!(
            http["BufferingHints"],
            json!({"SizeInMBs": 5, "IntervalInSeconds": 300})
        );
        assert_eq!(http["RetryOptions"]["DurationInSeconds"], 60);
        let endpoint = &description["Destinations"][0]["HttpEndpointDestinationDescription"]["EndpointConfiguration"];
        assert_eq!(endpoint["Url"], "https://collector/in");
        assert!(endpoint.get("AccessKey").is_none());
    }

    #[test]
    fn delivery_updates_merge_field_by_field() {
        let mut base =
            json!({"Prefix": "a/", "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300}});
        merge(
            &mut base,
            &json!({"Prefix": "b/", "BufferingHints": {"IntervalInSeconds": 60}}),
        );
        assert_eq!(
            base,
            json!({"Prefix": "b/", "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}})
        );
    }
}
