//! CBOR writes on a stream spread over pods: the pod a CBOR PutRecords reaches reads it as
//! it came, stores its own records and sends the others to their pods; a CBOR PutRecord for
//! another pod's shard is relayed as the client sent it.

use ciborium::value::Value;

use super::support::broker::{client_for, raw_post};
use super::{incoming_records, numbers_by_key, read_all, start_cluster};

const CBOR: &str = "application/x-amz-cbor-1.1";

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn encode(value: &Value) -> Vec<u8> {
    let mut body = Vec::new();
    ciborium::ser::into_writer(value, &mut body).expect("encodes");
    body
}

/// POSTs a CBOR body to `operation`; returns the status and the decoded answer.
fn call(endpoint: &str, operation: &str, body: &[u8]) -> (u16, Value) {
    let target = format!("Kinesis_20131202.{operation}");
    let answer = raw_post(endpoint, Some(&target), CBOR, body);
    assert!(
        answer.head.to_ascii_lowercase().contains(CBOR),
        "a CBOR request is answered in CBOR: {}",
        answer.head
    );
    let value = ciborium::de::from_reader(answer.body.as_slice()).expect("a CBOR answer");
    (answer.status, value)
}

fn member<'v>(value: &'v Value, name: &str) -> &'v Value {
    value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(name)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {value:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_cbor_writes_are_split_over_pods_and_read_back_as_sent() {
    let (_dirs, _internal, pods) = start_cluster("cluster-cbor").await;
    let keys = 60;
    let records: Vec<Value> = (0..keys)
        .map(|key| {
            Value::Map(vec![
                (text("PartitionKey"), text(&format!("key-{key}"))),
                (
                    text("Data"),
                    Value::Bytes(format!("key-{key}:0").into_bytes()),
                ),
            ])
        })
        .collect();
    let put = Value::Map(vec![
        (text("StreamName"), text(super::STREAM)),
        (text("Records"), Value::Array(records)),
    ]);
    let (status, answer) = call(&pods[1].endpoint, "PutRecords", &encode(&put));
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(member(&answer, "FailedRecordCount"), &Value::from(0));
    let Value::Array(results) = member(&answer, "Records") else {
        panic!("Records is an array")
    };
    assert_eq!(results.len(), keys);

    // One record per key again, each its own PutRecord through pod 2, most of them for
    // shards another pod owns.
    for key in 0..keys {
        let single = Value::Map(vec![
            (text("StreamName"), text(super::STREAM)),
            (text("PartitionKey"), text(&format!("key-{key}"))),
            (
                text("Data"),
                Value::Bytes(format!("key-{key}:1").into_bytes()),
            ),
        ]);
        let (status, answer) = call(&pods[2].endpoint, "PutRecord", &encode(&single));
        assert_eq!(status, 200, "{answer:?}");
        assert!(matches!(member(&answer, "SequenceNumber"), Value::Text(_)));
    }

    // Every pod stored some of them, and every record reads back once, in order per key.
    for (ordinal, pod) in pods.iter().enumerate() {
        let stored: f64 = incoming_records(pod).values().sum();
        assert!(stored > 0.0, "pod {ordinal} stored none of the records");
    }
    let read = read_all(&client_for(&pods[0].endpoint)).await;
    let numbers = numbers_by_key(&read);
    assert_eq!(numbers.len(), keys);
    for key in 0..keys {
        assert_eq!(numbers[&format!("key-{key}")], vec![0, 1], "key-{key}");
    }

    // A CBOR write the pod cannot read is refused there, in CBOR, and stores nothing.
    let wrong = Value::Map(vec![
        (text("StreamName"), text(super::STREAM)),
        (
            text("Records"),
            Value::Array(vec![Value::Map(vec![
                (text("PartitionKey"), text("k")),
                (text("Data"), Value::from(5)),
            ])]),
        ),
    ]);
    let (status, error) = call(&pods[1].endpoint, "PutRecords", &encode(&wrong));
    assert_eq!(status, 400);
    assert_eq!(member(&error, "__type"), &text("SerializationException"));
    let (status, error) = call(&pods[1].endpoint, "PutRecords", &[0xa1, 0x61]);
    assert_eq!(status, 400);
    assert_eq!(member(&error, "__type"), &text("SerializationException"));
    let read_again = read_all(&client_for(&pods[0].endpoint)).await;
    assert_eq!(read_again, read);
}
