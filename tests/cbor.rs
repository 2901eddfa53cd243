//! The CBOR protocol (`application/x-amz-cbor-1.1`), which the AWS SDK for Java v2 and the
//! KCL use by default. The Rust SDK cannot be forced onto CBOR, so requests are encoded and
//! responses decoded with minicbor, a CBOR library independent of the broker's, against the
//! shapes of the Kinesis API model: blobs as byte strings, timestamps as tag 1 holding
//! integer epoch milliseconds.

mod support;

use std::collections::BTreeMap;

use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use support::broker::{BrokerBuilder, TempDir, raw_post};

/// A decoded CBOR item.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Map(BTreeMap<String, Item>),
    Array(Vec<Item>),
    Tagged(u64, Box<Item>),
    Bool(bool),
    Null,
    Float(f64),
}

impl Item {
    fn get(&self, key: &str) -> &Item {
        match self {
            Item::Map(map) => map
                .get(key)
                .unwrap_or_else(|| panic!("no {key} in {self:?}")),
            other => panic!("not a map: {other:?}"),
        }
    }

    fn text(&self) -> &str {
        match self {
            Item::Text(t) => t,
            other => panic!("not text: {other:?}"),
        }
    }
}

fn read(d: &mut Decoder<'_>) -> Item {
    match d.datatype().expect("a type") {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            Item::Int(i128::from(d.u64().expect("uint")))
        }
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => {
            Item::Int(i128::from(d.i64().expect("int")))
        }
        Type::Bytes => Item::Bytes(d.bytes().expect("bytes").to_vec()),
        Type::String => Item::Text(d.str().expect("text").to_owned()),
        Type::Bool => Item::Bool(d.bool().expect("bool")),
        Type::Null => {
            d.null().expect("null");
            Item::Null
        }
        Type::F64 => Item::Float(d.f64().expect("f64")),
        Type::F32 => Item::Float(f64::from(d.f32().expect("f32"))),
        Type::Tag => {
            let tag = d.tag().expect("tag");
            Item::Tagged(tag.as_u64(), Box::new(read(d)))
        }
        Type::Array => {
            let len = d.array().expect("array").expect("definite length");
            Item::Array((0..len).map(|_| read(d)).collect())
        }
        Type::Map => {
            let len = d.map().expect("map").expect("definite length");
            Item::Map(
                (0..len)
                    .map(|_| (d.str().expect("text key").to_owned(), read(d)))
                    .collect(),
            )
        }
        other => panic!("unexpected CBOR type {other:?}"),
    }
}

/// POSTs a CBOR body; returns the status, content type and decoded body.
/// Calls `operation`; an answer without a body (an operation without output) reads as `Null`.
fn call(endpoint: &str, operation: &str, body: &[u8]) -> (u16, String, Item) {
    let target = format!("Kinesis_20131202.{operation}");
    let answer = raw_post(endpoint, Some(&target), "application/x-amz-cbor-1.1", body);
    let content_type = answer
        .head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    (
        answer.status,
        content_type,
        if answer.body.is_empty() {
            Item::Null
        } else {
            read(&mut Decoder::new(&answer.body))
        },
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[test]
fn a_put_and_get_round_trip_speaks_cbor_with_aws_blobs_and_timestamps() {
    let dir = TempDir::new("cbor");
    let broker = BrokerBuilder::default().transition_ms(0).start(dir.path());
    let endpoint = &broker.endpoint;

    let mut create = Encoder::new(Vec::new());
    create
        .map(2)
        .expect("map")
        .str("StreamName")
        .expect("k")
        .str("cbor")
        .expect("v")
        .str("ShardCount")
        .expect("k")
        .u32(1)
        .expect("v");
    let (status, content_type, created) = call(endpoint, "CreateStream", create.writer());
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-amz-cbor-1.1")
    );
    assert!(matches!(created, Item::Null), "no body: {created:?}");

    let before = now_ms();
    let payload = [0u8, 159, 146, 150, 255, 10];
    let mut put = Encoder::new(Vec::new());
    put.map(3).expect("map");
    put.str("StreamName").expect("k").str("cbor").expect("v");
    put.str("PartitionKey").expect("k").str("pk").expect("v");
    put.str("Data").expect("k").bytes(&payload).expect("v");
    let (status, _, put_answer) = call(endpoint, "PutRecord", put.writer());
    assert_eq!(status, 200, "{put_answer:?}");
    assert_eq!(put_answer.get("ShardId").text(), "shardId-000000000000");
    let sequence = put_answer.get("SequenceNumber").text().to_owned();
    let after = now_ms();

    let mut iterator = Encoder::new(Vec::new());
    iterator.map(4).expect("map");
    iterator
        .str("StreamName")
        .expect("k")
        .str("cbor")
        .expect("v");
    iterator
        .str("ShardId")
        .expect("k")
        .str("shardId-000000000000")
        .expect("v");
    iterator
        .str("ShardIteratorType")
        .expect("k")
        .str("AT_TIMESTAMP")
        .expect("v");
    iterator
        .str("Timestamp")
        .expect("k")
        .tag(Tag::new(1))
        .expect("tag")
        .u64(before - 1000)
        .expect("ms");
    let (status, _, iterator_answer) = call(endpoint, "GetShardIterator", iterator.writer());
    assert_eq!(status, 200, "{iterator_answer:?}");

    let mut get = Encoder::new(Vec::new());
    get.map(1)
        .expect("map")
        .str("ShardIterator")
        .expect("k")
        .str(iterator_answer.get("ShardIterator").text())
        .expect("v");
    let (status, _, records) = call(endpoint, "GetRecords", get.writer());
    assert_eq!(status, 200, "{records:?}");
    let Item::Array(list) = records.get("Records") else {
        panic!("Records is a list")
    };
    assert_eq!(list.len(), 1);
    let record = &list[0];
    assert_eq!(
        record.get("Data"),
        &Item::Bytes(payload.to_vec()),
        "a blob travels as a byte string"
    );
    assert_eq!(record.get("SequenceNumber").text(), sequence);
    assert_eq!(record.get("PartitionKey").text(), "pk");
    match record.get("ApproximateArrivalTimestamp") {
        Item::Tagged(1, inner) => match **inner {
            Item::Int(ms) => assert!(
                (before as i128..=after as i128).contains(&ms),
                "{ms} not in {before}..={after}"
            ),
            ref other => panic!("tag 1 must hold integer milliseconds, not {other:?}"),
        },
        other => panic!("timestamps are tag 1: {other:?}"),
    }
    assert!(matches!(records.get("MillisBehindLatest"), Item::Int(_)));
    assert!(matches!(records.get("NextShardIterator"), Item::Text(_)));

    let mut missing = Encoder::new(Vec::new());
    missing
        .map(1)
        .expect("map")
        .str("StreamName")
        .expect("k")
        .str("absent")
        .expect("v");
    let (status, content_type, error) = call(endpoint, "DescribeStream", missing.writer());
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/x-amz-cbor-1.1")
    );
    assert_eq!(error.get("__type").text(), "ResourceNotFoundException");

    let (status, _, error) = call(endpoint, "ListStreams", &[0xff, 0x13, 0x37]);
    assert_eq!(status, 400);
    assert_eq!(error.get("__type").text(), "SerializationException");
}
