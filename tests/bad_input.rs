//! Bad input gets a Kinesis-style error and nothing else: malformed JSON, wrong types,
//! unknown operations, missing targets, oversized bodies, invalid base64, forged iterators and
//! 10,000 random bodies. The broker keeps serving and the data written before is intact.
//!
//! The SDK cannot send malformed requests, so these go over plain HTTP.

mod support;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use brook::bench::client::{ClientError, Connection};
use bytes::Bytes;
use serde_json::Value;
use support::broker::{BrokerBuilder, TempDir, create_active_stream, raw_post};

const OPERATIONS: [&str; 16] = [
    "CreateStream",
    "DeleteStream",
    "DescribeStream",
    "DescribeStreamSummary",
    "ListStreams",
    "ListShards",
    "PutRecord",
    "PutRecords",
    "GetShardIterator",
    "GetRecords",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "AddTagsToStream",
    "RemoveTagsFromStream",
    "ListTagsForStream",
    "DescribeLimits",
];

/// Sends raw bytes with raw headers; returns (status, parsed JSON body).
fn raw(endpoint: &str, target: Option<&str>, body: &[u8]) -> (u16, Value) {
    let answer = raw_post(endpoint, target, "application/x-amz-json-1.1", body);
    (
        answer.status,
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    )
}

fn kinesis(operation: &str) -> String {
    format!("Kinesis_20131202.{operation}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_kinesis_errors_and_the_broker_keeps_serving() {
    let dir = TempDir::new("bad-input");
    let broker = BrokerBuilder::default()
        .arg("--no-quotas")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "kept", 2).await;
    let mut written = Vec::new();
    for i in 0..20 {
        let data = format!("record-{i}");
        client
            .put_record()
            .stream_name("kept")
            .partition_key(format!("k{i}"))
            .data(Blob::new(data.clone()))
            .send()
            .await
            .expect("PutRecord");
        written.push(data);
    }
    let endpoint = broker.endpoint.clone();
    let cases: Vec<(Option<String>, Vec<u8>, u16, &str)> = vec![
        (
            Some(kinesis("ListStreams")),
            b"{\"Limit\":".to_vec(),
            400,
            "SerializationException",
        ),
        (
            Some(kinesis("DescribeStream")),
            br#"{"StreamName": 5}"#.to_vec(),
            400,
            "SerializationException",
        ),
        (
            Some(kinesis("ListStreams")),
            br#"{"Limit": "ten"}"#.to_vec(),
            400,
            "SerializationException",
        ),
        (
            Some(kinesis("ListStreams")),
            br#"[1, 2, 3]"#.to_vec(),
            400,
            "SerializationException",
        ),
        (
            Some(kinesis("Teleport")),
            b"{}".to_vec(),
            400,
            "UnknownOperationException",
        ),
        (
            Some("Kinesis_20131202".into()),
            b"{}".to_vec(),
            400,
            "UnknownOperationException",
        ),
        (None, b"{}".to_vec(), 400, "UnknownOperationException"),
        (
            Some(kinesis("PutRecord")),
            br#"{"StreamName":"kept","PartitionKey":"k","Data":"not base64!"}"#.to_vec(),
            400,
            "SerializationException",
        ),
        (
            Some(kinesis("PutRecords")),
            br#"{"StreamName":"kept","Records":[{"PartitionKey":"k","Data":"%%%"}]}"#.to_vec(),
            400,
            "SerializationException",
        ),
        (
            Some(kinesis("PutRecords")),
            br#"{"StreamName":"kept","Records":[]}"#.to_vec(),
            400,
            "ValidationException",
        ),
        (
            Some(kinesis("PutRecord")),
            br#"{"StreamName":"kept","Data":"eA=="}"#.to_vec(),
            400,
            "ValidationException",
        ),
        (
            Some(kinesis("GetRecords")),
            br#"{"ShardIterator":"forged-iterator"}"#.to_vec(),
            400,
            "InvalidArgumentException",
        ),
        (
            Some(kinesis("GetRecords")),
            br#"{}"#.to_vec(),
            400,
            "ValidationException",
        ),
        (
            Some(kinesis("CreateStream")),
            br#"{"StreamName":"x","ShardCount":1.5}"#.to_vec(),
            400,
            "SerializationException",
        ),
        (
            Some(kinesis("DescribeStream")),
            br#"{"StreamName":""}"#.to_vec(),
            400,
            "ValidationException",
        ),
        (
            Some(kinesis("PutRecord")),
            vec![b'x'; 17 * 1024 * 1024],
            413,
            "RequestEntityTooLargeException",
        ),
    ];
    for (target, body, status, error) in cases {
        let endpoint = endpoint.clone();
        let label = format!(
            "{target:?} {}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        let (got_status, got) =
            tokio::task::spawn_blocking(move || raw(&endpoint, target.as_deref(), &body))
                .await
                .expect("request");
        assert_eq!(got_status, status, "{label}: {got}");
        assert_eq!(got["__type"], error, "{label}: {got}");
    }

    // 10,000 random bodies, half raw bytes and half JSON objects with the real member names
    // holding values of random types.
    let address = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let mut connection = Connection::open(address).await.expect("connection");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let members = [
        "StreamName",
        "ShardCount",
        "Records",
        "Data",
        "PartitionKey",
        "ShardIterator",
        "Limit",
        "ShardId",
        "ShardIteratorType",
        "Tags",
        "TagKeys",
        "NextToken",
        "StreamARN",
        "ExplicitHashKey",
        "Timestamp",
        "RetentionPeriodHours",
        "ShardFilter",
        "MaxResults",
        "StartingSequenceNumber",
        "ExclusiveStartShardId",
    ];
    let values = [
        "null",
        "true",
        "-1",
        "0",
        "1e400",
        "\"\"",
        "\"kept\"",
        "\"shardId-000000000000\"",
        "[]",
        "{}",
        "[{}]",
        "[{\"Data\":\"eA==\",\"PartitionKey\":\"k\"}]",
        "\"TRIM_HORIZON\"",
        "\"\\u0000\"",
        "99999999999999999999999",
        "{\"Type\":\"AT_TIMESTAMP\"}",
        "\"49000000000000000000000000000000000000000000000000000000\"",
        "3.5",
    ];
    let mut server_errors = 0;
    for i in 0..10_000 {
        let operation = OPERATIONS[(next() % 16) as usize];
        let body: Vec<u8> = if i % 2 == 0 {
            (0..next() % 300).map(|_| next() as u8).collect()
        } else {
            let fields: Vec<String> = (0..next() % 5)
                .map(|_| {
                    format!(
                        "\"{}\":{}",
                        members[(next() % 20) as usize],
                        values[(next() % 18) as usize]
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(",")).into_bytes()
        };
        // Random bodies must never delete the stream under test or fill the broker.
        if matches!(
            operation,
            "DeleteStream" | "CreateStream" | "DecreaseStreamRetentionPeriod"
        ) && body.windows(4).any(|w| w == b"kept")
        {
            continue;
        }
        match connection.call(operation, Bytes::from(body.clone())).await {
            Ok(_) => {}
            Err(ClientError::Status {
                status,
                body: answer,
            }) => {
                let parsed: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
                assert!(
                    parsed["__type"].is_string(),
                    "no error type for {operation} {:?}: {answer}",
                    String::from_utf8_lossy(&body)
                );
                if status >= 500 {
                    server_errors += 1;
                }
            }
            Err(other) => panic!(
                "{operation} {:?} broke the connection: {other}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    assert_eq!(server_errors, 0, "random input caused internal failures");

    let (status, _) = broker.observe("/healthz");
    assert_eq!(status, 200);
    let mut read = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let iterator = client
            .get_shard_iterator()
            .stream_name("kept")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator");
        let page = client
            .get_records()
            .shard_iterator(iterator.shard_iterator().expect("iterator"))
            .send()
            .await
            .expect("GetRecords");
        read.extend(
            page.records()
                .iter()
                .map(|r| String::from_utf8(r.data().as_ref().to_vec()).expect("utf-8")),
        );
    }
    let extra: Vec<&String> = read.iter().filter(|r| !written.contains(r)).collect();
    assert!(
        read.len() >= written.len(),
        "records written before were lost"
    );
    for data in &written {
        assert_eq!(
            read.iter().filter(|r| *r == data).count(),
            1,
            "{data} is not there exactly once"
        );
    }
    // Random PutRecord bodies may legitimately add records with data "x"; nothing else changed.
    assert!(
        extra.iter().all(|r| r.as_str() == "x"),
        "unexpected records: {extra:?}"
    );
}
