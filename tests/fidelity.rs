//! Wire fidelity: edge behaviour answered as Kinesis answers it, through the AWS SDK for Rust
//! (which sends these requests unchanged), and golden answers to requests no SDK would send
//! (they validate client-side), posted as raw JSON and CBOR.

mod support;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use support::broker::{
    Broker, TempDir, UNVERIFIED_AUTHORIZATION, create_active_stream, error_body, post_json,
    raw_post, raw_request_to,
};

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";

#[test]
fn fidelity_every_constraint_violation_is_answered_at_once_in_kinesis_words() {
    let dir = TempDir::new("fidelity-validation");
    let broker = Broker::start(dir.path());
    let endpoint = &broker.endpoint;
    let too_long = "a".repeat(129);
    let cases: Vec<(&str, String, String)> = vec![
        (
            "CreateStream",
            r#"{"ShardCount":0}"#.to_owned(),
            "2 validation errors detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null; Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1".to_owned(),
        ),
        (
            "CreateStream",
            format!(r#"{{"StreamName":"{too_long}","ShardCount":1,"MaxRecordSizeInKiB":99999}}"#),
            format!("2 validation errors detected: Value '{too_long}' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to 128; Value '99999' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value less than or equal to 10240"),
        ),
        (
            "DescribeStream",
            r#"{"StreamName":"bad name!","Limit":10001}"#.to_owned(),
            "2 validation errors detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '10001' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000".to_owned(),
        ),
        (
            "GetShardIterator",
            r#"{"StreamName":"s","ShardIteratorType":"OLDEST","StartingSequenceNumber":"01"}"#.to_owned(),
            "3 validation errors detected: Value null at 'shardId' failed to satisfy constraint: Member must not be null; Value 'OLDEST' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]; Value '01' at 'startingSequenceNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(0|([1-9]\\d{0,128}))$".to_owned(),
        ),
        (
            "ListStreams",
            r#"{"Limit":0,"NextToken":""}"#.to_owned(),
            "2 validation errors detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1; Value '' at 'nextToken' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
        ),
        (
            "AddTagsToStream",
            r#"{"StreamName":"s","Tags":{}}"#.to_owned(),
            "1 validation error detected: Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
        ),
        (
            "AddTagsToStream",
            format!(r#"{{"StreamName":"s","Tags":{{"":"v","k":"{}"}}}}"#, "v".repeat(257)),
            format!("2 validation errors detected: Value '{{=v, k={}}}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]; Value '{{=v, k={}}}' at 'tags' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]", "v".repeat(257), "v".repeat(257)),
        ),
        (
            "RemoveTagsFromStream",
            r#"{"StreamName":"s","TagKeys":["ok",""]}"#.to_owned(),
            "1 validation error detected: Value '[ok, ]' at 'tagKeys' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]".to_owned(),
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":[{"Data":"AA==","PartitionKey":"k"},{"PartitionKey":""},{"Data":"AA==","PartitionKey":"k","ExplicitHashKey":"-1"}]}"#.to_owned(),
            "3 validation errors detected: Value null at 'records.2.member.data' failed to satisfy constraint: Member must not be null; Value '' at 'records.2.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; Value '-1' at 'records.3.member.explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$".to_owned(),
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","PartitionKey":""}"#.to_owned(),
            "2 validation errors detected: Value null at 'data' failed to satisfy constraint: Member must not be null; Value '' at 'partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
        ),
        (
            "GetRecords",
            r#"{"ShardIterator":"","Limit":10001}"#.to_owned(),
            "2 validation errors detected: Value '' at 'shardIterator' failed to satisfy constraint: Member must have length greater than or equal to 1; Value '10001' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000".to_owned(),
        ),
        (
            "SplitShard",
            r#"{"StreamName":"s","NewStartingHashKey":"12x"}"#.to_owned(),
            "2 validation errors detected: Value null at 'shardToSplit' failed to satisfy constraint: Member must not be null; Value '12x' at 'newStartingHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$".to_owned(),
        ),
        (
            "MergeShards",
            r#"{"StreamName":"s","ShardToMerge":"shard 0"}"#.to_owned(),
            "2 validation errors detected: Value 'shard 0' at 'shardToMerge' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value null at 'adjacentShardToMerge' failed to satisfy constraint: Member must not be null".to_owned(),
        ),
        (
            "UpdateShardCount",
            r#"{"StreamName":"s","TargetShardCount":0,"ScalingType":"FAST"}"#.to_owned(),
            "2 validation errors detected: Value '0' at 'targetShardCount' failed to satisfy constraint: Member must have value greater than or equal to 1; Value 'FAST' at 'scalingType' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]".to_owned(),
        ),
        (
            "RegisterStreamConsumer",
            r#"{"StreamARN":"arn:aws:kinesis:us-east-1:12:stream/s","ConsumerName":""}"#.to_owned(),
            "3 validation errors detected: Value 'arn:aws:kinesis:us-east-1:12:stream/s' at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+; Value '' at 'consumerName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at 'consumerName' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
        ),
        (
            "EnableEnhancedMonitoring",
            r#"{"StreamName":"s","ShardLevelMetrics":[]}"#.to_owned(),
            "1 validation error detected: Value '[]' at 'shardLevelMetrics' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
        ),
        (
            "ListStreamConsumers",
            r#"{"MaxResults":10001}"#.to_owned(),
            "2 validation errors detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null; Value '10001' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10000".to_owned(),
        ),
        (
            "TagResource",
            r#"{"ResourceARN":"arn:aws:kinesis:us-east-1:123456789012:bucket/b"}"#.to_owned(),
            "2 validation errors detected: Value null at 'tags' failed to satisfy constraint: Member must not be null; Value 'arn:aws:kinesis:us-east-1:123456789012:bucket/b' at 'resourceARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:.*(stream|channel|queue)/\\S+".to_owned(),
        ),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .map(|(operation, body, message)| {
            (
                operation,
                body,
                400,
                error_body("ValidationException", &message),
            )
        })
        .collect();
    support::fidelity::assert_answers(endpoint, &cases);
}

#[test]
fn fidelity_type_mismatches_are_serialization_exceptions_in_kinesis_words() {
    let dir = TempDir::new("fidelity-types");
    let broker = Broker::start(dir.path());
    let endpoint = &broker.endpoint;
    let cases = [
        (
            "CreateStream",
            r#"{"StreamName":"s","ShardCount":"2"}"#,
            "class java.lang.String can not be converted to an Integer",
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","ShardCount":true}"#,
            "class java.lang.Boolean can not be converted to an Integer",
        ),
        (
            "CreateStream",
            r#"{"StreamName":7}"#,
            "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String",
        ),
        (
            "CreateStream",
            r#"{"StreamName":["s"]}"#,
            "Start of list found where not expected",
        ),
        (
            "CreateStream",
            r#"{"StreamName":{"a":"b"}}"#,
            "Start of structure or map found where not expected.",
        ),
        (
            "CreateStream",
            r#"{"StreamName":"s","StreamModeDetails":"ON_DEMAND"}"#,
            "Expected null",
        ),
        (
            "AddTagsToStream",
            r#"{"StreamName":"s","Tags":"k=v"}"#,
            "Expected map or null",
        ),
        (
            "RemoveTagsFromStream",
            r#"{"StreamName":"s","TagKeys":"k"}"#,
            "Expected list or null",
        ),
        (
            "RemoveTagsFromStream",
            r#"{"StreamName":"s","TagKeys":{"k":"v"}}"#,
            "Start of structure or map found where not expected.",
        ),
        (
            "PutRecords",
            r#"{"StreamName":"s","Records":[{"Data":"AA==","PartitionKey":5}]}"#,
            "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String",
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","PartitionKey":"k","Data":"abc"}"#,
            "'abc' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3",
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","PartitionKey":"k","Data":"a*c="}"#,
            "'a*c=' can not be converted to a Blob: Invalid Base64 character: '*'",
        ),
        (
            "PutRecord",
            r#"{"StreamName":"s","PartitionKey":"k","Data":true}"#,
            "class java.lang.Boolean can not be converted to a Blob",
        ),
        (
            "GetShardIterator",
            r#"{"StreamName":"s","ShardId":"shardId-0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":"yesterday"}"#,
            "class java.lang.String can not be converted to milliseconds since epoch",
        ),
        (
            "GetRecords",
            r#"{"ShardIterator":"x","Limit":"10"}"#,
            "class java.lang.String can not be converted to an Integer",
        ),
    ];
    for (operation, body, message) in cases {
        let (status, answer) = post_json(endpoint, operation, body);
        assert_eq!(
            (status, answer),
            (400, error_body("SerializationException", message)),
            "{operation} {body}"
        );
    }
}

#[test]
fn fidelity_cbor_requests_get_the_same_answers_in_cbor() {
    use minicbor::Encoder;
    let dir = TempDir::new("fidelity-cbor");
    let broker = Broker::start(dir.path());
    let mut body = Encoder::new(Vec::new());
    body.map(1)
        .and_then(|e| e.str("ShardCount"))
        .and_then(|e| e.u32(0))
        .expect("encode");
    let answer = raw_post(
        &broker.endpoint,
        Some("Kinesis_20131202.CreateStream"),
        CBOR,
        body.writer(),
    );
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .head
            .contains("content-type: application/x-amz-cbor-1.1"),
        "{}",
        answer.head
    );
    let mut decoder = minicbor::Decoder::new(&answer.body);
    let entries = decoder.map().expect("a map").expect("definite");
    let mut fields = std::collections::BTreeMap::new();
    for _ in 0..entries {
        let key = decoder.str().expect("key").to_owned();
        let value = decoder.str().expect("text value").to_owned();
        fields.insert(key, value);
    }
    assert_eq!(
        fields.get("__type").map(String::as_str),
        Some("ValidationException")
    );
    assert_eq!(
        fields.get("message").map(String::as_str),
        Some(
            "2 validation errors detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null; Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
        )
    );
}

#[test]
fn fidelity_the_embedded_model_is_the_aws_models_constraints() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = support::helm::python();
    let output = std::process::Command::new(&python)
        .arg(root.join("tests/python/kinesis_constraints.py"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): `make test` installs botocore there",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let committed = std::fs::read(root.join("src/broker/protocol/model.json")).expect("model.json");
    assert!(
        committed == output.stdout,
        "src/broker/protocol/model.json differs from the installed botocore model: run `.tools/venv/bin/python tests/python/kinesis_constraints.py > src/broker/protocol/model.json`"
    );
}

#[test]
fn fidelity_cbor_converts_every_blob_and_timestamp_member_of_the_aws_model() {
    use brook::broker::protocol::cbor::{BLOB_MEMBERS, TIMESTAMP_MEMBERS};
    // The embedded model keeps input shapes only; outputs (QueueCreationTimestamp, ...) are in
    // botocore's whole model.
    let members_of = r#"
import gzip, json, os, botocore
path = os.path.join(os.path.dirname(botocore.__file__), "data", "kinesis", "2013-12-02", "service-2.json.gz")
shapes = json.load(gzip.open(path))["shapes"]
found = {"timestamp": set(), "blob": set()}
for shape in shapes.values():
    for name, member in shape.get("members", {}).items():
        kind = shapes[member["shape"]]["type"]
        if kind in found:
            found[kind].add(name)
print(json.dumps({k: sorted(v) for k, v in found.items()}))
"#;
    let python = support::helm::python();
    let output = std::process::Command::new(&python)
        .args(["-c", members_of])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", python.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&output.stdout).expect("members");
    let sorted = |members: &[&str]| {
        let mut members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        members.sort();
        members
    };
    assert_eq!(found["timestamp"], sorted(&TIMESTAMP_MEMBERS));
    assert_eq!(found["blob"], sorted(&BLOB_MEMBERS));
}

#[tokio::test]
async fn fidelity_shard_ids_are_resolved_by_the_number_after_their_last_hyphen() {
    let dir = TempDir::new("fidelity-shard-ids");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "ids", 2).await;
    // A key that lands on shard 1 (hash keys above half the space).
    let put = client
        .put_record()
        .stream_name("ids")
        .partition_key("k")
        .explicit_hash_key("300000000000000000000000000000000000000")
        .data(Blob::new("on shard one"))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(put.shard_id(), "shardId-000000000001");

    for written in ["shardId-000000000001", "shardId-1", "whatever-01"] {
        let iterator = client
            .get_shard_iterator()
            .stream_name("ids")
            .shard_id(written)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetShardIterator with {written}: {e:?}"))
            .shard_iterator
            .expect("an iterator");
        let records = client
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .expect("GetRecords");
        assert_eq!(records.records().len(), 1, "{written} names shard 1");
        assert_eq!(records.records()[0].data().as_ref(), b"on shard one");
    }

    let after_first = client
        .list_shards()
        .stream_name("ids")
        .exclusive_start_shard_id("shardId-0")
        .send()
        .await
        .expect("ListShards");
    let ids: Vec<&str> = after_first.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(
        ids,
        ["shardId-000000000001"],
        "answers use the canonical id"
    );

    let missing = client
        .get_shard_iterator()
        .stream_name("ids")
        .shard_id("shardId-7")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("no shard 7");
    assert_eq!(
        support::broker::error_code(&missing),
        "ResourceNotFoundException"
    );

    client
        .split_shard()
        .stream_name("ids")
        .shard_to_split("shardId-0")
        .new_starting_hash_key("85070591730234615865843651857942052864")
        .send()
        .await
        .expect("SplitShard of shard 0 written short");
    support::broker::wait_for_status(&client, "ids", "ACTIVE").await;
    let shards = client
        .list_shards()
        .stream_name("ids")
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 4, "shard 0 split in two");
}

/// Sends `method` with exactly `headers` and `body`; returns the status, the lowercased head
/// and the body.
fn raw_request(
    endpoint: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let answer = support::broker::raw_request(endpoint, method, headers, body);
    (answer.status, answer.head, answer.body)
}

#[test]
fn fidelity_browsers_get_cors_preflight_answers_and_exposed_headers() {
    let dir = TempDir::new("fidelity-cors");
    let broker = Broker::start(dir.path());
    let endpoint = &broker.endpoint;
    let (status, head, body) = raw_request(
        endpoint,
        "OPTIONS",
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,x-amz-target,x-amz-date,authorization",
            ),
        ],
        b"",
    );
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty());
    for expected in [
        "access-control-allow-origin: *",
        "access-control-allow-methods: post",
        "access-control-allow-headers: content-type,x-amz-target,x-amz-date,authorization",
        "access-control-max-age: 172800",
    ] {
        assert!(head.contains(expected), "no {expected:?} in {head}");
    }
    // A browser's call itself: the answer exposes the headers the SDK reads.
    let (status, head, body) = raw_request(
        endpoint,
        "POST",
        &[
            ("Origin", "http://app.example"),
            ("Content-Type", JSON),
            ("X-Amz-Target", "Kinesis_20131202.ListStreams"),
            ("Authorization", UNVERIFIED_AUTHORIZATION),
            ("X-Amz-Date", "20261130T000000Z"),
        ],
        b"{}",
    );
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("StreamNames"));
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(
        head.contains("access-control-expose-headers: x-amzn-requestid,x-amzn-errortype,x-amz-request-id,x-amz-id-2,x-amzn-errormessage,date"),
        "{head}"
    );
    // Without an Origin, no CORS headers.
    let (_, head, _) = raw_request(
        endpoint,
        "POST",
        &[
            ("Content-Type", JSON),
            ("X-Amz-Target", "Kinesis_20131202.ListStreams"),
            ("Authorization", UNVERIFIED_AUTHORIZATION),
            ("X-Amz-Date", "20261130T000000Z"),
        ],
        b"{}",
    );
    assert!(!head.contains("access-control-"), "{head}");
}

/// A request (method, headers, body) and Kinesis's answer (status, content type, body).
type FrontCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    &'a [u8],
    u16,
    &'a str,
    &'a str,
);

#[test]
fn fidelity_requests_outside_the_protocol_get_kinesis_answers() {
    let dir = TempDir::new("fidelity-front");
    let broker = Broker::start(dir.path());
    let endpoint = &broker.endpoint;
    let list = "Kinesis_20131202.ListStreams";
    let cases: Vec<FrontCase> = vec![
        (
            "GET",
            vec![],
            b"",
            403,
            "",
            "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n",
        ),
        (
            "POST",
            vec![("Content-Type", JSON), ("X-Amz-Target", list)],
            b"",
            400,
            JSON,
            r#"{"__type":"SerializationException"}"#,
        ),
        (
            "POST",
            vec![
                ("Content-Type", JSON),
                ("X-Amz-Target", "Kinesis_20131202.NoSuchThing"),
            ],
            b"{}",
            400,
            JSON,
            r#"{"__type":"UnknownOperationException"}"#,
        ),
        (
            "POST",
            vec![
                ("Content-Type", JSON),
                ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
            ],
            b"{}",
            400,
            JSON,
            r#"{"__type":"UnknownOperationException"}"#,
        ),
        (
            "POST",
            vec![("Content-Type", JSON), ("X-Amz-Target", list)],
            b"[1, 2]",
            400,
            JSON,
            r#"{"__type":"SerializationException"}"#,
        ),
        (
            "POST",
            vec![("Content-Type", "text/plain"), ("X-Amz-Target", list)],
            b"{}",
            404,
            "",
            "<UnknownOperationException/>\n",
        ),
        (
            "POST",
            vec![("Content-Type", "text/plain")],
            b"{}",
            403,
            "",
            "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n",
        ),
        (
            "POST",
            vec![("Content-Type", "application/json"), ("X-Amz-Target", list)],
            b"{}",
            404,
            "application/json",
            r#"{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"},"Version":"1.0"}"#,
        ),
        (
            "POST",
            vec![("Content-Type", "application/json"), ("X-Amz-Target", list)],
            b"nope",
            400,
            "application/json",
            r#"{"Output":{"__type":"com.amazon.coral.service#SerializationException"},"Version":"1.0"}"#,
        ),
    ];
    for (method, headers, body, status, content_type, expected) in cases {
        let (got, head, answer) = raw_request(endpoint, method, &headers, body);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(
            (got, answer.as_str()),
            (status, expected),
            "{method} {headers:?} {body:?}"
        );
        if !content_type.is_empty() {
            assert!(
                head.contains(&format!("content-type: {content_type}")),
                "{method} {headers:?}: {head}"
            );
        }
    }
    // An empty CBOR body is answered in CBOR.
    let (status, head, answer) = raw_request(
        endpoint,
        "POST",
        &[("Content-Type", CBOR), ("X-Amz-Target", list)],
        b"",
    );
    assert_eq!(status, 400);
    assert!(
        head.contains("content-type: application/x-amz-cbor-1.1"),
        "{head}"
    );
    let mut decoder = minicbor::Decoder::new(&answer);
    assert_eq!(decoder.map().expect("a map"), Some(1));
    assert_eq!(decoder.str().expect("key"), "__type");
    assert_eq!(decoder.str().expect("value"), "SerializationException");
}

#[tokio::test]
async fn fidelity_tags_with_characters_kinesis_refuses_are_refused() {
    let dir = TempDir::new("fidelity-tags");
    let broker = Broker::start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "tagged", 1).await;
    let invalid = "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.";
    for (key, value) in [
        ("team;a", "x"),
        ("team", "a,b"),
        ("team", "tab\there"),
        ("team", "line\nbreak"),
    ] {
        let refused = client
            .add_tags_to_stream()
            .stream_name("tagged")
            .tags(key, value)
            .send()
            .await
            .expect_err("refused");
        assert_eq!(
            support::broker::error_code(&refused),
            "InvalidArgumentException"
        );
        assert_eq!(
            refused.as_service_error().and_then(|e| e.meta().message()),
            Some(invalid),
            "{key:?}={value:?}"
        );
    }
    let percent = client
        .add_tags_to_stream()
        .stream_name("tagged")
        .tags("discount", "10%")
        .send()
        .await
        .expect_err("refused");
    assert!(
        percent
            .as_service_error()
            .and_then(|e| e.meta().message())
            .is_some_and(|m| m.starts_with("Failed to add tags to stream tagged under account ")
                && m.ends_with("because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'.")),
        "{percent:?}"
    );
    client
        .add_tags_to_stream()
        .stream_name("tagged")
        .tags("Team Name_1", "Überwachung/a=b+c-d@e.f")
        .send()
        .await
        .expect("letters, digits, space and _ . / = + - @ are taken");
    let listed = client
        .list_tags_for_stream()
        .stream_name("tagged")
        .send()
        .await
        .expect("ListTagsForStream");
    assert_eq!(listed.tags().len(), 1, "only the valid tag was added");
}

#[test]
fn fidelity_requests_must_look_signed_even_when_the_broker_has_no_keys() {
    let dir = TempDir::new("fidelity-auth-form");
    let broker = Broker::start(dir.path());
    let endpoint = &broker.endpoint;
    let list = [
        ("Content-Type", JSON),
        ("X-Amz-Target", "Kinesis_20131202.ListStreams"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut headers = list.to_vec();
        headers.extend_from_slice(extra);
        let (status, _, body) = raw_request(endpoint, "POST", &headers, b"{}");
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        with(&[]),
        (
            400,
            error_body(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token"
            )
        )
    );
    let no_signature = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date";
    assert_eq!(
        with(&[
            ("Authorization", no_signature),
            ("X-Amz-Date", "20261130T000000Z")
        ]),
        (
            400,
            error_body(
                "IncompleteSignatureException",
                &format!(
                    "Authorization header requires 'Signature' parameter. Authorization={no_signature}"
                )
            )
        )
    );
    assert_eq!(
        with(&[("Authorization", UNVERIFIED_AUTHORIZATION)]),
        (
            400,
            error_body(
                "IncompleteSignatureException",
                &format!(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={UNVERIFIED_AUTHORIZATION}"
                )
            )
        )
    );
    let (status, body) = with(&[
        ("Authorization", UNVERIFIED_AUTHORIZATION),
        ("X-Amz-Date", "20261130T000000Z"),
    ]);
    assert_eq!(
        status, 200,
        "a well-formed signature is not verified without keys: {body}"
    );

    // A presigned request carries its signature in the query string instead.
    let presigned = |query: &str, extra: &[(&'static str, &'static str)]| {
        let mut headers = list.to_vec();
        headers.extend_from_slice(extra);
        let answer = raw_request_to(endpoint, "POST", &format!("/?{query}"), &headers, b"{}");
        (
            answer.status,
            String::from_utf8_lossy(&answer.body).into_owned(),
        )
    };
    let complete = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261130%2Fus-east-1%2Fkinesis%2Faws4_request&X-Amz-Date=20261130T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=0000";
    let (status, body) = presigned(complete, &[]);
    assert_eq!(status, 200, "a well-formed presigned request: {body}");
    assert_eq!(
        presigned(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261130%2Fus-east-1%2Fkinesis%2Faws4_request",
            &[]
        ),
        (
            400,
            error_body(
                "IncompleteSignatureException",
                "AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. AWS query-string parameters must include 'X-Amz-Date'. Re-examine the query-string parameters."
            )
        )
    );
    assert_eq!(
        presigned(
            complete,
            &[
                ("Authorization", UNVERIFIED_AUTHORIZATION),
                ("X-Amz-Date", "20261130T000000Z")
            ]
        ),
        (
            400,
            error_body(
                "InvalidSignatureException",
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
            )
        )
    );
}
