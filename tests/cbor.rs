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

/// A JSON record of GetRecords as the CBOR answer must carry it.
fn record_item(json: &serde_json::Value) -> Item {
    use base64::Engine;
    let seconds = json["ApproximateArrivalTimestamp"]
        .as_f64()
        .expect("a time");
    let data = base64::engine::general_purpose::STANDARD
        .decode(json["Data"].as_str().expect("data"))
        .expect("base64");
    Item::Map(BTreeMap::from([
        (
            "SequenceNumber".to_owned(),
            Item::Text(json["SequenceNumber"].as_str().expect("seq").to_owned()),
        ),
        (
            "ApproximateArrivalTimestamp".to_owned(),
            Item::Tagged(1, Box::new(Item::Int((seconds * 1000.0).round() as i128))),
        ),
        ("Data".to_owned(), Item::Bytes(data)),
        (
            "PartitionKey".to_owned(),
            Item::Text(json["PartitionKey"].as_str().expect("key").to_owned()),
        ),
        ("EncryptionType".to_owned(), Item::Text("NONE".to_owned())),
    ]))
}

/// The child shards of a JSON answer as a CBOR answer carries them.
fn children_item(json: &serde_json::Value) -> Item {
    let mut encoded = Vec::new();
    ciborium::ser::into_writer(json, &mut encoded).expect("encodes");
    read(&mut Decoder::new(&encoded))
}

fn json_call(endpoint: &str, operation: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, text) = support::broker::post_json(endpoint, operation, &body.to_string());
    assert_eq!(status, 200, "{operation}: {text}");
    if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON")
    }
}

/// The body of a chunked HTTP answer, its chunks joined.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut joined = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
            return joined;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).expect("size"), 16)
            .expect("a chunk size");
        if size == 0 {
            return joined;
        }
        let start = line_end + 2;
        joined.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
}

/// Event stream messages: each one's `:event-type` and `:content-type` headers and payload.
fn events(mut stream: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let mut events = Vec::new();
    while stream.len() >= 16 {
        let total = u32::from_be_bytes(stream[0..4].try_into().expect("4")) as usize;
        let headers_len = u32::from_be_bytes(stream[4..8].try_into().expect("4")) as usize;
        let mut headers = &stream[12..12 + headers_len];
        let (mut kind, mut content_type) = (String::new(), String::new());
        while !headers.is_empty() {
            let name_len = headers[0] as usize;
            let name = String::from_utf8_lossy(&headers[1..1 + name_len]).into_owned();
            assert_eq!(headers[1 + name_len], 7, "string headers only");
            let at = 2 + name_len;
            let value_len = u16::from_be_bytes([headers[at], headers[at + 1]]) as usize;
            let value = String::from_utf8_lossy(&headers[at + 2..at + 2 + value_len]).into_owned();
            match name.as_str() {
                ":event-type" => kind = value,
                ":content-type" => content_type = value,
                _ => {}
            }
            headers = &headers[at + 2 + value_len..];
        }
        let payload = stream[12 + headers_len..total - 4].to_vec();
        events.push((kind, content_type, payload));
        stream = &stream[total..];
    }
    events
}

#[test]
fn records_read_in_cbor_are_the_json_records_and_subscriptions_speak_cbor() {
    let dir = TempDir::new("cbor-reads");
    let broker = BrokerBuilder::default().transition_ms(0).start(dir.path());
    let endpoint = &broker.endpoint;
    json_call(
        endpoint,
        "CreateStream",
        serde_json::json!({"StreamName": "r", "ShardCount": 1}),
    );
    // 300 records: more than a one-byte array head holds, data from empty to 299 bytes of
    // every byte value, keys that JSON escapes.
    use base64::Engine;
    let records: Vec<serde_json::Value> = (0..300usize)
        .map(|i| {
            let data: Vec<u8> = (0..i).map(|j| ((i * 7 + j) % 256) as u8).collect();
            serde_json::json!({
                "Data": base64::engine::general_purpose::STANDARD.encode(data),
                "PartitionKey": format!("k\"é\n{i}"),
            })
        })
        .collect();
    let put = json_call(
        endpoint,
        "PutRecords",
        serde_json::json!({"StreamName": "r", "Records": records}),
    );
    assert_eq!(put["FailedRecordCount"], 0);
    let iterator = json_call(
        endpoint,
        "GetShardIterator",
        serde_json::json!({"StreamName": "r", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
    )["ShardIterator"]
        .as_str()
        .expect("an iterator")
        .to_owned();
    let get_cbor = |iterator: &str| {
        let mut get = Encoder::new(Vec::new());
        get.map(1).expect("map");
        get.str("ShardIterator")
            .expect("k")
            .str(iterator)
            .expect("v");
        let (status, content_type, answer) = call(endpoint, "GetRecords", get.writer());
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/x-amz-cbor-1.1"),
            "{answer:?}"
        );
        answer
    };

    let json = json_call(
        endpoint,
        "GetRecords",
        serde_json::json!({"ShardIterator": iterator}),
    );
    let expected: Vec<Item> = json["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(record_item)
        .collect();
    assert_eq!(expected.len(), 300);
    let cbor = get_cbor(&iterator);
    assert_eq!(cbor.get("Records"), &Item::Array(expected.clone()));
    assert_eq!(cbor.get("MillisBehindLatest"), &Item::Int(0));
    assert!(matches!(cbor.get("NextShardIterator"), Item::Text(t) if !t.is_empty()));

    // Once the shard is split, a read to its end carries its children and no next iterator.
    json_call(
        endpoint,
        "SplitShard",
        serde_json::json!({"StreamName": "r", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "170141183460469231731687303715884105728"}),
    );
    let json = json_call(
        endpoint,
        "GetRecords",
        serde_json::json!({"ShardIterator": iterator}),
    );
    assert!(json.get("NextShardIterator").is_none(), "{json}");
    let Item::Map(end) = get_cbor(&iterator) else {
        panic!("a map")
    };
    assert_eq!(
        end.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ChildShards", "MillisBehindLatest", "Records"]
    );
    assert_eq!(end["ChildShards"], children_item(&json["ChildShards"]));
    assert_eq!(end["Records"], Item::Array(expected.clone()));

    // A subscription in CBOR: every event's payload is CBOR, and the closed shard's records
    // arrive whole, then its children.
    let consumer = json_call(
        endpoint,
        "RegisterStreamConsumer",
        serde_json::json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/r", "ConsumerName": "c"}),
    )["Consumer"]["ConsumerARN"]
        .as_str()
        .expect("an ARN")
        .to_owned();
    let mut subscribe = Encoder::new(Vec::new());
    subscribe.map(3).expect("map");
    subscribe
        .str("ConsumerARN")
        .expect("k")
        .str(&consumer)
        .expect("v");
    subscribe
        .str("ShardId")
        .expect("k")
        .str("shardId-000000000000")
        .expect("v");
    subscribe
        .str("StartingPosition")
        .expect("k")
        .map(1)
        .expect("map");
    subscribe
        .str("Type")
        .expect("k")
        .str("TRIM_HORIZON")
        .expect("v");
    let answer = raw_post(
        endpoint,
        Some("Kinesis_20131202.SubscribeToShard"),
        "application/x-amz-cbor-1.1",
        subscribe.writer(),
    );
    assert_eq!(answer.status, 200, "{}", answer.head);
    let events = events(&dechunk(&answer.body));
    assert_eq!(events[0].0, "initial-response");
    let mut delivered = Vec::new();
    let mut children = None;
    for (kind, content_type, payload) in &events {
        assert_eq!(content_type, "application/x-amz-cbor-1.1", "{kind}");
        let item = read(&mut Decoder::new(payload));
        if kind == "initial-response" {
            assert_eq!(item, Item::Map(BTreeMap::new()));
            continue;
        }
        assert_eq!(kind, "SubscribeToShardEvent");
        assert!(matches!(
            item.get("ContinuationSequenceNumber"),
            Item::Text(_)
        ));
        assert!(matches!(item.get("MillisBehindLatest"), Item::Int(_)));
        let Item::Array(records) = item.get("Records") else {
            panic!("Records is a list")
        };
        delivered.extend(records.iter().cloned());
        if let Item::Map(map) = &item {
            children = map.get("ChildShards").cloned().or(children);
        }
    }
    assert_eq!(delivered, expected);
    assert_eq!(children, Some(end["ChildShards"].clone()));
}

/// `json` as a CBOR client sends it: `Data` members as byte strings (their base64 decoded;
/// text when it is not base64), everything else as it is.
fn cbor_of(json: &serde_json::Value) -> Vec<u8> {
    fn write(e: &mut Encoder<Vec<u8>>, json: &serde_json::Value, blob: bool) {
        use base64::Engine;
        use serde_json::Value as J;
        match json {
            J::Null => drop(e.null().expect("null")),
            J::Bool(b) => drop(e.bool(*b).expect("bool")),
            J::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => drop(e.u64(u).expect("u64")),
                (None, Some(i)) => drop(e.i64(i).expect("i64")),
                _ => drop(e.f64(n.as_f64().expect("f64")).expect("f64")),
            },
            J::String(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(bytes) if blob => drop(e.bytes(&bytes).expect("bytes")),
                _ => drop(e.str(s).expect("str")),
            },
            J::Array(items) => {
                e.array(items.len() as u64).expect("array");
                for item in items {
                    write(e, item, false);
                }
            }
            J::Object(members) => {
                e.map(members.len() as u64).expect("map");
                for (name, value) in members {
                    e.str(name).expect("key");
                    write(e, value, name == "Data");
                }
            }
        }
    }
    let mut encoder = Encoder::new(Vec::new());
    write(&mut encoder, json, false);
    encoder.into_writer()
}

/// A message without the position serde_json gives a JSON error (" at line 1 column 9").
fn without_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

#[test]
fn records_put_in_cbor_are_stored_as_sent_and_refused_as_the_same_json_puts_are() {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let dir = TempDir::new("cbor-puts");
    let broker = BrokerBuilder::default().transition_ms(0).start(dir.path());
    let endpoint = &broker.endpoint;
    json_call(
        endpoint,
        "CreateStream",
        serde_json::json!({"StreamName": "w", "ShardCount": 1}),
    );

    // Data of every byte value and of every length up to 300, keys JSON would escape; one
    // record's data in indefinite-length chunks, one sent as base64 text.
    let datas: Vec<Vec<u8>> = (0..300usize)
        .map(|i| (0..i).map(|j| ((i * 13 + j) % 256) as u8).collect())
        .collect();
    let records: Vec<serde_json::Value> = datas
        .iter()
        .enumerate()
        .map(|(i, data)| serde_json::json!({"Data": b64(data), "PartitionKey": format!("k\"é{i}")}))
        .collect();
    let put = cbor_of(&serde_json::json!({"StreamName": "w", "Records": records}));
    let (status, _, answer) = call(endpoint, "PutRecords", &put);
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(answer.get("FailedRecordCount"), &Item::Int(0));
    let mut single = Encoder::new(Vec::new());
    single.begin_map().expect("map");
    single.str("StreamName").expect("k").str("w").expect("v");
    single
        .str("Data")
        .expect("k")
        .begin_bytes()
        .expect("chunks");
    single
        .bytes(&[1, 2])
        .expect("chunk")
        .bytes(&[3])
        .expect("chunk");
    single.end().expect("end").str("PartitionKey").expect("k");
    single.str("chunked").expect("v").end().expect("end");
    let (status, _, answer) = call(endpoint, "PutRecord", single.writer());
    assert_eq!(status, 200, "{answer:?}");
    let mut text = Encoder::new(Vec::new());
    text.map(3).expect("map");
    text.str("StreamName").expect("k").str("w").expect("v");
    text.str("Data").expect("k").str("BAUG").expect("v");
    text.str("PartitionKey").expect("k").str("text").expect("v");
    let (status, _, answer) = call(endpoint, "PutRecord", text.writer());
    assert_eq!(status, 200, "{answer:?}");

    let iterator = json_call(
        endpoint,
        "GetShardIterator",
        serde_json::json!({"StreamName": "w", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
    )["ShardIterator"]
        .clone();
    let read = json_call(
        endpoint,
        "GetRecords",
        serde_json::json!({"ShardIterator": iterator, "Limit": 10000}),
    );
    let read: Vec<(String, Vec<u8>)> = read["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(r["Data"].as_str().expect("data"))
                .expect("base64");
            (r["PartitionKey"].as_str().expect("key").to_owned(), data)
        })
        .collect();
    let mut expected: Vec<(String, Vec<u8>)> = datas
        .into_iter()
        .enumerate()
        .map(|(i, data)| (format!("k\"é{i}"), data))
        .collect();
    expected.push(("chunked".to_owned(), vec![1, 2, 3]));
    expected.push(("text".to_owned(), vec![4, 5, 6]));
    assert_eq!(read, expected);

    // Each refusal of a CBOR write is the refusal of the same write in JSON.
    let big = b64(&vec![7u8; 1024 * 1024 + 1]);
    let many: Vec<serde_json::Value> = (0..501)
        .map(|i| serde_json::json!({"Data": "AA==", "PartitionKey": format!("{i}")}))
        .collect();
    let refused = [
        (
            "PutRecords",
            serde_json::json!({"StreamName": "w", "Records": [{"Data": 5, "PartitionKey": "k"}]}),
        ),
        (
            "PutRecords",
            serde_json::json!({"StreamName": "w", "Records": [{"Data": "AA=="}]}),
        ),
        (
            "PutRecords",
            serde_json::json!({"StreamName": "w", "Records": [{"Data": "AA==", "PartitionKey": ""}]}),
        ),
        (
            "PutRecords",
            serde_json::json!({"StreamName": "w", "Records": [{"Data": big, "PartitionKey": "k"}]}),
        ),
        (
            "PutRecords",
            serde_json::json!({"StreamName": "w", "Records": many}),
        ),
        (
            "PutRecords",
            serde_json::json!({"StreamName": "w", "Records": [{"Data": "AA==", "PartitionKey": "k", "ExplicitHashKey": "x"}]}),
        ),
        (
            "PutRecords",
            serde_json::json!({"StreamName": "absent", "Records": [{"Data": "AA==", "PartitionKey": "k"}]}),
        ),
        (
            "PutRecords",
            serde_json::json!({"StreamName": "w", "Records": {"Data": "AA=="}}),
        ),
        (
            "PutRecord",
            serde_json::json!({"StreamName": "w", "Data": "AA==", "PartitionKey": 7}),
        ),
        (
            "PutRecord",
            serde_json::json!({"StreamName": "w", "PartitionKey": "k"}),
        ),
        (
            "PutRecord",
            serde_json::json!({"Data": "AA==", "PartitionKey": "k"}),
        ),
    ];
    for (operation, json) in refused {
        let (json_status, json_text) =
            support::broker::post_json(endpoint, operation, &json.to_string());
        let json_error: serde_json::Value = serde_json::from_str(&json_text).expect("JSON");
        let (status, content_type, error) = call(endpoint, operation, &cbor_of(&json));
        assert_eq!(
            (status, content_type.as_str()),
            (json_status, "application/x-amz-cbor-1.1"),
            "{json}"
        );
        assert!(json_status >= 400, "{json}: {json_text}");
        assert_eq!(
            error.get("__type").text(),
            json_error["__type"].as_str().expect("a type"),
            "{json}"
        );
        let Item::Map(members) = &error else {
            panic!("an error is a map: {error:?}")
        };
        let message = members
            .get("message")
            .or(members.get("Message"))
            .map(Item::text);
        let json_message = json_error["message"]
            .as_str()
            .or(json_error["Message"].as_str())
            .map(without_position);
        assert_eq!(message, json_message, "{json}");
    }

    // A member given twice in another operation's request (read through its JSON shape) is
    // refused without a line and column of JSON the client never sent.
    let mut twice = Encoder::new(Vec::new());
    twice.map(2).expect("map");
    twice.str("StreamName").expect("k").str("w").expect("v");
    twice.str("StreamName").expect("k").str("w").expect("v");
    let (status, _, error) = call(endpoint, "DescribeStreamSummary", twice.writer());
    assert_eq!(status, 400);
    assert_eq!(error.get("__type").text(), "SerializationException");
    let message = error.get("Message").text();
    assert!(
        message.contains("duplicate field `StreamName`") && !message.contains(" at line "),
        "{message}"
    );
}
