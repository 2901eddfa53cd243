//! Wire fidelity per operation: for each operation the AWS SDKs would refuse client-side,
//! golden answers to raw requests that break its model constraints (every constraint kind the
//! operation has), in JSON and in CBOR, and the empty body Kinesis answers for operations
//! without output.

mod support;

use serde_json::Value;
use support::broker::{BrokerBuilder, TempDir, error_body, post_json, post_json_answer, raw_post};
use support::fidelity::assert_answers;

const ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
const STREAM_ID_PATTERN: &str = "[a-z0-9]{20}-[a-z0-9]{3}";
const STREAM_ARN_PATTERN: &str = r"arn:aws.*:kinesis:.*:\d{12}:stream/\S+";
const RESOURCE_ARN_PATTERN: &str = r"arn:aws.*:kinesis:.*:\d{12}:.*(stream|channel|queue)/\S+";

/// `Value {value} at '{at}' failed to satisfy constraint: {rule}`, Kinesis's sentence.
fn broken(value: &str, at: &str, rule: &str) -> String {
    format!("Value {value} at '{at}' failed to satisfy constraint: {rule}")
}

/// Kinesis's summary of `violations` ("2 validation errors detected: ...").
fn detected(violations: &[String]) -> String {
    let count = violations.len();
    let noun = if count == 1 { "error" } else { "errors" };
    format!(
        "{count} validation {noun} detected: {}",
        violations.join("; ")
    )
}

fn not_null(at: &str) -> String {
    broken("null", at, "Member must not be null")
}

fn pattern(value: &str, at: &str, pattern: &str) -> String {
    broken(
        &format!("'{value}'"),
        at,
        &format!("Member must satisfy regular expression pattern: {pattern}"),
    )
}

fn bound(value: &str, at: &str, what: &str, relation: &str, limit: i64) -> String {
    broken(
        &format!("'{value}'"),
        at,
        &format!("Member must have {what} {relation} than or equal to {limit}"),
    )
}

fn enumeration(value: &str, at: &str, values: &str) -> String {
    broken(
        &format!("'{value}'"),
        at,
        &format!("Member must satisfy enum value set: [{values}]"),
    )
}

fn validation(
    operation: &'static str,
    body: &str,
    violations: &[String],
) -> (&'static str, String, u16, String) {
    (
        operation,
        body.to_owned(),
        400,
        error_body("ValidationException", &detected(violations)),
    )
}

fn serialization(
    operation: &'static str,
    body: &str,
    message: &str,
) -> (&'static str, String, u16, String) {
    (
        operation,
        body.to_owned(),
        400,
        error_body("SerializationException", message),
    )
}

fn start() -> (TempDir, support::broker::Broker) {
    let dir = TempDir::new("fidelity-operations");
    // Streams become ACTIVE at once, so calls follow one another without waiting.
    let broker = BrokerBuilder::default().transition_ms(0).start(dir.path());
    (dir, broker)
}

#[test]
fn fidelity_each_operation_answers_its_constraint_violations_in_kinesis_words() {
    let (_dir, broker) = start();
    let long_name = "c".repeat(129);
    let metrics = "IncomingBytes, IncomingRecords, OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, IteratorAgeMilliseconds, ALL";
    let cases = vec![
        validation(
            "DeleteStream",
            r#"{"StreamName":"","StreamId":"x"}"#,
            &[
                pattern("", "streamName", "[a-zA-Z0-9_.-]+"),
                bound("", "streamName", "length", "greater", 1),
                pattern("x", "streamId", STREAM_ID_PATTERN),
            ],
        ),
        validation(
            "DescribeStreamSummary",
            r#"{"StreamARN":"arn:aws:kinesis:us-east-1:123456789012:table/t"}"#,
            &[pattern(
                "arn:aws:kinesis:us-east-1:123456789012:table/t",
                "streamARN",
                STREAM_ARN_PATTERN,
            )],
        ),
        validation(
            "ListShards",
            r#"{"StreamName":"s","ExclusiveStartShardId":"shard 1","MaxResults":0,"ShardFilter":{}}"#,
            &[
                pattern("shard 1", "exclusiveStartShardId", "[a-zA-Z0-9_.-]+"),
                bound("0", "maxResults", "value", "greater", 1),
                not_null("shardFilter.type"),
            ],
        ),
        validation(
            "IncreaseStreamRetentionPeriod",
            r#"{"StreamName":"s"}"#,
            &[not_null("retentionPeriodHours")],
        ),
        validation(
            "DecreaseStreamRetentionPeriod",
            r#"{"StreamName":"s","RetentionPeriodHours":24,"StreamARN":""}"#,
            &[
                pattern("", "streamARN", STREAM_ARN_PATTERN),
                bound("", "streamARN", "length", "greater", 1),
            ],
        ),
        validation(
            "ListTagsForStream",
            r#"{"StreamName":"s","ExclusiveStartTagKey":"","Limit":51}"#,
            &[
                bound("", "exclusiveStartTagKey", "length", "greater", 1),
                bound("51", "limit", "value", "less", 50),
            ],
        ),
        validation(
            "DescribeStreamConsumer",
            r#"{"ConsumerName":"c!","ConsumerARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c"}"#,
            &[
                pattern("c!", "consumerName", "[a-zA-Z0-9_.-]+"),
                pattern(
                    "arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c",
                    "consumerARN",
                    r"^(arn):aws.*:kinesis:.*:\d{12}:.*stream\/[a-zA-Z0-9_.-]+\/consumer\/[a-zA-Z0-9_.-]+:[0-9]+",
                ),
            ],
        ),
        validation(
            "DeregisterStreamConsumer",
            &format!(r#"{{"StreamARN":"{ARN}","ConsumerName":"{long_name}"}}"#),
            &[bound(&long_name, "consumerName", "length", "less", 128)],
        ),
        validation(
            "DisableEnhancedMonitoring",
            r#"{"StreamName":"s","ShardLevelMetrics":["ALL","Everything"]}"#,
            &[broken(
                "'[ALL, Everything]'",
                "shardLevelMetrics",
                &format!(
                    "Member must satisfy constraint: [Member must satisfy enum value set: [{metrics}]]"
                ),
            )],
        ),
        validation(
            "StartStreamEncryption",
            r#"{"StreamName":"s","EncryptionType":"AES"}"#,
            &[
                enumeration("AES", "encryptionType", "NONE, KMS"),
                not_null("keyId"),
            ],
        ),
        validation(
            "StopStreamEncryption",
            r#"{"StreamName":"s","EncryptionType":"KMS","KeyId":""}"#,
            &[bound("", "keyId", "length", "greater", 1)],
        ),
        validation(
            "UntagResource",
            &format!(r#"{{"ResourceARN":"{ARN}","TagKeys":[]}}"#),
            &[bound("[]", "tagKeys", "length", "greater", 1)],
        ),
        validation("ListTagsForResource", "{}", &[not_null("resourceARN")]),
        validation(
            "UpdateMaxRecordSize",
            &format!(r#"{{"StreamARN":"{ARN}","MaxRecordSizeInKiB":1000}}"#),
            &[bound(
                "1000",
                "maxRecordSizeInKiB",
                "value",
                "greater",
                1024,
            )],
        ),
        validation(
            "UpdateStreamWarmThroughput",
            r#"{"StreamName":"s","WarmThroughputMiBps":-1}"#,
            &[bound("-1", "warmThroughputMiBps", "value", "greater", 0)],
        ),
        validation(
            "UpdateAccountSettings",
            r#"{"MinimumThroughputBillingCommitment":{"Status":"ON"}}"#,
            &[enumeration(
                "ON",
                "minimumThroughputBillingCommitment.status",
                "ENABLED, DISABLED",
            )],
        ),
        validation(
            "UpdateStreamMode",
            r#"{"StreamModeDetails":{}}"#,
            &[
                not_null("streamARN"),
                not_null("streamModeDetails.streamMode"),
            ],
        ),
        validation(
            "PutResourcePolicy",
            &format!(r#"{{"ResourceARN":"{ARN}"}}"#),
            &[not_null("policy")],
        ),
        validation(
            "GetResourcePolicy",
            r#"{"ResourceARN":"x"}"#,
            &[pattern("x", "resourceARN", RESOURCE_ARN_PATTERN)],
        ),
        validation(
            "DeleteResourcePolicy",
            r#"{"ResourceARN":"","StreamId":"abcdefghijabcdefghij-abcd"}"#,
            &[
                pattern("", "resourceARN", RESOURCE_ARN_PATTERN),
                bound("", "resourceARN", "length", "greater", 1),
                pattern("abcdefghijabcdefghij-abcd", "streamId", STREAM_ID_PATTERN),
                bound(
                    "abcdefghijabcdefghij-abcd",
                    "streamId",
                    "length",
                    "less",
                    24,
                ),
            ],
        ),
        validation(
            "UpdateStreamRecordDistributionStrategy",
            &format!(r#"{{"StreamARN":"{ARN}","RecordDistributionStrategy":"RANDOM"}}"#),
            &[enumeration(
                "RANDOM",
                "recordDistributionStrategy",
                "AUTO, USER_PARTITION_KEY",
            )],
        ),
        validation(
            "SubscribeToShard",
            r#"{"ConsumerARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c:1","ShardId":"shardId-0","StartingPosition":{"Type":"AT_SEQUENCE_NUMBER","SequenceNumber":"x"}}"#,
            &[pattern(
                "x",
                "startingPosition.sequenceNumber",
                r"^(0|([1-9]\d{0,128}))$",
            )],
        ),
        // Operations without members still take only a JSON object; anything else is not
        // a document, answered without a message.
        (
            "DescribeLimits",
            "[]".to_owned(),
            400,
            r#"{"__type":"SerializationException"}"#.to_owned(),
        ),
        (
            "DescribeAccountSettings",
            "[1]".to_owned(),
            400,
            r#"{"__type":"SerializationException"}"#.to_owned(),
        ),
        serialization(
            "DeleteStream",
            r#"{"StreamName":"s","EnforceConsumerDeletion":"yes"}"#,
            "'YES' can not be converted to an Boolean",
        ),
        serialization(
            "ListShards",
            r#"{"StreamName":"s","ShardFilter":"AT_LATEST"}"#,
            "Expected null",
        ),
        serialization(
            "UntagResource",
            &format!(r#"{{"ResourceARN":"{ARN}","TagKeys":[1]}}"#),
            "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String",
        ),
    ];
    assert_answers(&broker.endpoint, &cases);
}

#[test]
fn fidelity_data_path_members_are_checked_against_the_model_on_an_existing_stream() {
    let (_dir, broker) = start();
    let endpoint = &broker.endpoint;
    assert_eq!(
        post_json(
            endpoint,
            "CreateStream",
            r#"{"StreamName":"s","ShardCount":1}"#
        ),
        (200, String::new())
    );
    let (status, answer) = post_json(
        endpoint,
        "GetShardIterator",
        r#"{"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"TRIM_HORIZON"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let iterator: Value = serde_json::from_str(&answer).expect("JSON");
    let iterator = iterator["ShardIterator"].as_str().expect("an iterator");
    let long_key = "k".repeat(257);
    let cases = vec![
        validation(
            "PutRecord",
            r#"{"StreamName":"s","Data":"AA==","PartitionKey":"k","SequenceNumberForOrdering":"007"}"#,
            &[pattern(
                "007",
                "sequenceNumberForOrdering",
                r"^(0|([1-9]\d{0,128}))$",
            )],
        ),
        validation(
            "PutRecord",
            &format!(r#"{{"StreamName":"s","Data":"AA==","PartitionKey":"{long_key}"}}"#),
            &[bound(&long_key, "partitionKey", "length", "less", 256)],
        ),
        serialization(
            "PutRecord",
            r#"{"StreamName":"s","Data":"AA==","PartitionKey":"k","DryRun":"yes"}"#,
            "'YES' can not be converted to an Boolean",
        ),
        validation(
            "PutRecords",
            r#"{"StreamName":"s","StreamId":"nope","Records":[{"Data":"AA==","PartitionKey":"k"}]}"#,
            &[pattern("nope", "streamId", STREAM_ID_PATTERN)],
        ),
        validation(
            "PutRecords",
            r#"{"StreamName":"s","Records":[{"Data":"AA==","PartitionKey":"k"},{"Data":"AA==","PartitionKey":"k","ExplicitHashKey":"01"}]}"#,
            &[pattern(
                "01",
                "records.2.member.explicitHashKey",
                r"^(0|([1-9]\d{0,38}))$",
            )],
        ),
        validation(
            "GetRecords",
            &format!(r#"{{"ShardIterator":"{iterator}","StreamId":"nope"}}"#),
            &[pattern("nope", "streamId", STREAM_ID_PATTERN)],
        ),
    ];
    assert_answers(endpoint, &cases);
    // Nothing refused was stored.
    let (status, answer) = post_json(
        endpoint,
        "GetRecords",
        &format!(r#"{{"ShardIterator":"{iterator}"}}"#),
    );
    assert_eq!(status, 200, "{answer}");
    let records: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(records["Records"], Value::Array(Vec::new()), "{answer}");
}

#[test]
fn fidelity_operations_without_output_answer_an_empty_body() {
    let (_dir, broker) = start();
    let endpoint = &broker.endpoint;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/e";
    let policy = serde_json::to_string(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Resource":"*"}]}"#,
    )
    .expect("a JSON string");
    let calls: Vec<(&str, String)> = vec![
        ("CreateStream", r#"{"StreamName":"e","ShardCount":2}"#.into()),
        ("AddTagsToStream", r#"{"StreamName":"e","Tags":{"k":"v"}}"#.into()),
        ("RemoveTagsFromStream", r#"{"StreamName":"e","TagKeys":["k"]}"#.into()),
        (
            "IncreaseStreamRetentionPeriod",
            r#"{"StreamName":"e","RetentionPeriodHours":48}"#.into(),
        ),
        (
            "DecreaseStreamRetentionPeriod",
            r#"{"StreamName":"e","RetentionPeriodHours":24}"#.into(),
        ),
        (
            "StartStreamEncryption",
            r#"{"StreamName":"e","EncryptionType":"KMS","KeyId":"alias/aws/kinesis"}"#.into(),
        ),
        (
            "StopStreamEncryption",
            r#"{"StreamName":"e","EncryptionType":"KMS","KeyId":"alias/aws/kinesis"}"#.into(),
        ),
        ("TagResource", format!(r#"{{"ResourceARN":"{arn}","Tags":{{"a":"b"}}}}"#)),
        ("UntagResource", format!(r#"{{"ResourceARN":"{arn}","TagKeys":["a"]}}"#)),
        (
            "PutResourcePolicy",
            format!(r#"{{"ResourceARN":"{arn}","Policy":{policy}}}"#),
        ),
        ("DeleteResourcePolicy", format!(r#"{{"ResourceARN":"{arn}"}}"#)),
        (
            "UpdateMaxRecordSize",
            format!(r#"{{"StreamARN":"{arn}","MaxRecordSizeInKiB":2048}}"#),
        ),
        (
            "SplitShard",
            r#"{"StreamName":"e","ShardToSplit":"shardId-000000000000","NewStartingHashKey":"1000"}"#.into(),
        ),
        (
            "MergeShards",
            r#"{"StreamName":"e","ShardToMerge":"shardId-000000000002","AdjacentShardToMerge":"shardId-000000000003"}"#.into(),
        ),
        (
            "UpdateStreamMode",
            format!(r#"{{"StreamARN":"{arn}","StreamModeDetails":{{"StreamMode":"ON_DEMAND"}}}}"#),
        ),
        (
            "UpdateStreamRecordDistributionStrategy",
            format!(r#"{{"StreamARN":"{arn}","RecordDistributionStrategy":"AUTO"}}"#),
        ),
    ];
    for (operation, body) in &calls {
        let answer = post_json_answer(endpoint, operation, body);
        assert_eq!(
            (
                answer.status,
                String::from_utf8_lossy(&answer.body).into_owned()
            ),
            (200, String::new()),
            "{operation} {body}"
        );
        assert!(answer.head.contains("content-length: 0"), "{}", answer.head);
        assert!(
            answer
                .head
                .contains("content-type: application/x-amz-json-1.1"),
            "{}",
            answer.head
        );
    }
    let (status, answer) = post_json(
        endpoint,
        "RegisterStreamConsumer",
        &format!(r#"{{"StreamARN":"{arn}","ConsumerName":"c"}}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""ConsumerName":"c""#), "{answer}");

    // The same in CBOR: no body at all, not an empty CBOR map.
    let mut body = minicbor::Encoder::new(Vec::new());
    body.map(2)
        .and_then(|e| e.str("StreamARN"))
        .and_then(|e| e.str(arn))
        .and_then(|e| e.str("ConsumerName"))
        .and_then(|e| e.str("c"))
        .expect("encode");
    let answer = raw_post(
        endpoint,
        Some("Kinesis_20131202.DeregisterStreamConsumer"),
        "application/x-amz-cbor-1.1",
        body.writer(),
    );
    assert_eq!(
        (answer.status, answer.body.len()),
        (200, 0),
        "{}",
        answer.head
    );
    assert!(
        answer
            .head
            .contains("content-type: application/x-amz-cbor-1.1"),
        "{}",
        answer.head
    );
    assert_eq!(
        post_json(
            endpoint,
            "DeleteStream",
            r#"{"StreamName":"e","EnforceConsumerDeletion":true}"#
        ),
        (200, String::new())
    );
}
