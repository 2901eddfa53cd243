//! The `application/x-amz-cbor-1.1` protocol, as a transcoder to and from the JSON shapes:
//! blobs are CBOR byte strings (base64 text in JSON) and timestamps are tag 1 holding integer
//! epoch milliseconds (AWS's convention, not RFC 8949's seconds; epoch seconds in JSON).
//! Each direction is one pass from bytes to bytes ([`to_json`], [`to_cbor`]), so a CBOR
//! client's records cost little more than a JSON client's.
//!
//! Which members are blobs and timestamps comes from the Kinesis API model.

pub mod de;
mod read;
mod to_cbor;
mod to_json;
pub mod write;

pub use read::{CborError, MAX_DEPTH};

use super::{ApiError, ErrorKind};

/// Content type of the CBOR protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";
/// Members of blob shape in the Kinesis model.
pub const BLOB_MEMBERS: [&str; 1] = ["Data"];
/// Members of timestamp shape in the Kinesis model.
pub const TIMESTAMP_MEMBERS: [&str; 10] = [
    "ApproximateArrivalTimestamp",
    "StreamCreationTimestamp",
    "ConsumerCreationTimestamp",
    "QueueCreationTimestamp",
    "ChannelCreationTimestamp",
    "FirstReceiveTimestamp",
    "Timestamp",
    "StartedAt",
    "EndedAt",
    "EarliestAllowedEndAt",
];

/// CBOR's major types: an item's first byte's top three bits.
mod major {
    pub const UNSIGNED: u8 = 0;
    pub const NEGATIVE: u8 = 1;
    pub const BYTES: u8 = 2;
    pub const TEXT: u8 = 3;
    pub const ARRAY: u8 = 4;
    pub const MAP: u8 = 5;
    pub const TAG: u8 = 6;
    pub const SIMPLE: u8 = 7;
}

fn serialization(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Serialization, message)
}

/// Decodes a CBOR request body into the JSON body the operations read.
pub fn request_to_json(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if body.is_empty() {
        return Ok(b"{}".to_vec());
    }
    to_json::transcode(body).map_err(|e| serialization(format!("Malformed CBOR: {e}")))
}

/// An error's CBOR answer. A shape error found in the JSON a CBOR request was rewritten into
/// does not end with that JSON's line and column, which the client never sent.
pub fn error_body(error: &ApiError) -> Vec<u8> {
    let message = without_json_position(&error.message);
    if error.kind != ErrorKind::Serialization || message.len() == error.message.len() {
        return json_to_cbor(&error.body());
    }
    json_to_cbor(&ApiError::new(error.kind, message).body())
}

/// `message` without the " at line L column C" serde_json ends its errors with.
fn without_json_position(message: &str) -> &str {
    let Some(at) = message.rfind(" at line ") else {
        return message;
    };
    let position = &message[at + " at line ".len()..];
    let is_position = position
        .split_once(" column ")
        .is_some_and(|(line, column)| {
            [line, column]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    if is_position { &message[..at] } else { message }
}

/// Encodes a JSON response body as CBOR; an empty body (an operation without output) stays
/// empty, and one that is not JSON (never, from the operations) becomes an empty map.
pub fn json_to_cbor(json: &[u8]) -> Vec<u8> {
    if json.is_empty() {
        return Vec::new();
    }
    to_cbor::transcode(json).unwrap_or_else(|| vec![0xa0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::value::Value as Cbor;
    use serde_json::Value as Json;

    #[test]
    fn blobs_and_timestamps_cross_between_the_protocols() {
        let mut request = Vec::new();
        let value = Cbor::Map(vec![
            (Cbor::Text("Data".into()), Cbor::Bytes(vec![0, 1, 255])),
            (
                Cbor::Text("Timestamp".into()),
                Cbor::Tag(1, Box::new(Cbor::Integer(1_700_000_000_123i64.into()))),
            ),
        ]);
        ciborium::ser::into_writer(&value, &mut request).expect("encodes");
        let json: Json =
            serde_json::from_slice(&request_to_json(&request).expect("decodes")).expect("json");
        assert_eq!(json["Data"], "AAH/");
        assert_eq!(json["Timestamp"].as_f64(), Some(1_700_000_000.123));

        let response = json_to_cbor(br#"{"Records":[{"Data":"AAH/","ApproximateArrivalTimestamp":1700000000.123,"SequenceNumber":"49"}],"MillisBehindLatest":0}"#);
        let decoded: Cbor = ciborium::de::from_reader(response.as_slice()).expect("cbor");
        let field = |value: &Cbor, key: &str| -> Cbor {
            value
                .as_map()
                .expect("a map")
                .iter()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v.clone())
                .expect("the member")
        };
        let records = field(&decoded, "Records");
        let record = &records.as_array().expect("array")[0];
        assert_eq!(field(record, "Data"), Cbor::Bytes(vec![0, 1, 255]));
        assert_eq!(
            field(record, "ApproximateArrivalTimestamp"),
            Cbor::Tag(1, Box::new(Cbor::Integer(1_700_000_000_123i64.into())))
        );
        assert_eq!(field(record, "SequenceNumber"), Cbor::Text("49".into()));
        assert_eq!(
            field(&decoded, "MillisBehindLatest"),
            Cbor::Integer(0.into())
        );
    }

    #[test]
    fn malformed_cbor_is_a_serialization_error() {
        assert_eq!(
            request_to_json(&[0xff, 0x00]).map_err(|e| e.kind),
            Err(ErrorKind::Serialization)
        );
    }

    #[test]
    fn a_cbor_client_is_not_told_a_json_position() {
        let error = ApiError::new(
            ErrorKind::Serialization,
            "Invalid request shape: duplicate field `StreamName` at line 1 column 40",
        );
        let answer: Json = ciborium::de::from_reader(error_body(&error).as_slice()).expect("cbor");
        assert_eq!(
            answer["Message"],
            "Invalid request shape: duplicate field `StreamName`"
        );
        // Anything else is told as it is.
        for message in [
            "Stream at line 1 column x under account 1 not found.",
            "at line 1 column 2",
            "Malformed CBOR: the body ends inside an item",
        ] {
            assert_eq!(without_json_position(message), message);
        }
        let other = ApiError::new(ErrorKind::ResourceNotFound, "x at line 1 column 2");
        let answer: Json = ciborium::de::from_reader(error_body(&other).as_slice()).expect("cbor");
        assert_eq!(answer["message"], "x at line 1 column 2");
    }

    fn json_of(cbor: &[u8]) -> Result<Json, CborError> {
        to_json::transcode(cbor)
            .map(|text| serde_json::from_slice(&text).expect("the transcoder writes JSON"))
    }

    #[test]
    fn indefinite_lengths_floats_negatives_and_other_tags_read_as_json() {
        // {_ "a": [_ 1, -500, 1.5 (half), 0.25 (single)], "b": (_ h'0001', h'ff'),
        //  "c": (_ "x\"", "é"), "d": 32(undefined), "e": null, "f": false}
        let cbor = [
            0xbf, 0x61, b'a', 0x9f, 0x01, 0x39, 0x01, 0xf3, 0xf9, 0x3e, 0x00, 0xfa, 0x3e, 0x80,
            0x00, 0x00, 0xff, 0x61, b'b', 0x5f, 0x42, 0x00, 0x01, 0x41, 0xff, 0xff, 0x61, b'c',
            0x7f, 0x62, b'x', b'"', 0x62, 0xc3, 0xa9, 0xff, 0x61, b'd', 0xd8, 0x20, 0xf7, 0x61,
            b'e', 0xf6, 0x61, b'f', 0xf4, 0xff,
        ];
        assert_eq!(
            json_of(&cbor),
            Ok(serde_json::json!({
                "a": [1, -500, 1.5, 0.25],
                "b": "AAH/",
                "c": "x\"é",
                "d": null,
                "e": null,
                "f": false,
            }))
        );
        // Tag 1 holding float seconds, and negative milliseconds.
        assert_eq!(
            json_of(&[
                0xa2, 0x61, b't', 0xc1, 0xf9, 0x3c, 0x00, 0x61, b'n', 0xc1, 0x38, 0xf9
            ]),
            Ok(serde_json::json!({"t": 1.0, "n": -0.25}))
        );
    }

    #[test]
    fn every_malformed_body_has_its_reason() {
        let cases: [(&[u8], CborError); 12] = [
            (&[0xa1, 0x61], CborError::Truncated),
            (&[0xa1, 0x61, b'a', 0x1c], CborError::Reserved(28)),
            (&[0xa1, 0x61, b'a', 0xff], CborError::MisplacedIndefinite),
            (&[0xa1, 0x61, b'a', 0x1f], CborError::MisplacedIndefinite),
            (&[0x5f, 0x61, b'a', 0xff], CborError::BadChunk),
            (&[0xa1, 0x61, 0xff, 0x00], CborError::NotUtf8),
            (&[0xa1, 0x01, 0x01], CborError::KeyNotText),
            (
                &[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0],
                CborError::IntegerOutOfRange,
            ),
            (&[0xf9, 0x7c, 0x00], CborError::NonFinite),
            (&[0xc1, 0x61, b'1'], CborError::BadTimestamp),
            (&[0xf8, 0x10], CborError::UnsupportedSimple(24)),
            (&[0xa0, 0x00], CborError::Trailing(1)),
        ];
        for (cbor, reason) in cases {
            assert_eq!(to_json::transcode(cbor), Err(reason.clone()), "{cbor:x?}");
            // The serde reader names the same reason, also in a member it does not read.
            assert_eq!(
                de::from_slice::<Json>(cbor),
                Err(de::DecodeError::Malformed(reason.clone())),
                "{cbor:x?}"
            );
            if !matches!(reason, CborError::Trailing(_)) {
                let mut unread = vec![0xa1, 0x61, b'x'];
                unread.extend_from_slice(cbor);
                assert_eq!(
                    de::from_slice::<Unread>(&unread),
                    Err(de::DecodeError::Malformed(reason)),
                    "{unread:x?}"
                );
            }
        }
        // Deep nesting is refused, not a stack overflow, also where the serde reader skips
        // a member it does not read.
        let deep = vec![0x81u8; 100_000];
        assert_eq!(to_json::transcode(&deep), Err(CborError::TooDeep));
        assert_eq!(
            de::from_slice::<Json>(&deep),
            Err(de::DecodeError::Malformed(CborError::TooDeep))
        );
        let mut skipped = vec![0xa1, 0x61, b'x'];
        skipped.extend_from_slice(&deep);
        assert_eq!(
            de::from_slice::<Unread>(&skipped),
            Err(de::DecodeError::Malformed(CborError::TooDeep))
        );
        // A length larger than the body is truncation, not an allocation.
        assert_eq!(
            to_json::transcode(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated)
        );
        assert_eq!(
            request_to_json(&[0xa1, 0x61]).map_err(|e| e.message),
            Err("Malformed CBOR: the body ends inside an item".to_owned())
        );
    }

    #[test]
    fn answers_get_definite_lengths_however_many_items() {
        for count in [0usize, 23, 24, 255, 256, 70_000] {
            let items: Vec<Json> = (0..count).map(|i| Json::from(i as u64)).collect();
            let json =
                serde_json::to_vec(&serde_json::json!({"Shards": items, "N": -3})).expect("json");
            let cbor = json_to_cbor(&json);
            let decoded: Cbor = ciborium::de::from_reader(cbor.as_slice()).expect("CBOR");
            let map = decoded.as_map().expect("a map");
            assert_eq!(map.len(), 2);
            // serde_json's maps are sorted: "N" comes first.
            assert_eq!(map[0], (Cbor::Text("N".into()), Cbor::Integer((-3).into())));
            let shards = map[1].1.as_array().expect("an array");
            assert_eq!(shards.len(), count);
            assert!(
                shards
                    .iter()
                    .enumerate()
                    .all(|(i, v)| v == &Cbor::Integer((i as u64).into()))
            );
        }
        // The heads are the shortest ones, of definite length: a map of one, "Records", an
        // array of one, a map of two, "Data", a byte string of one.
        let small = json_to_cbor(br#"{"Records":[{"Data":"AA==","SequenceNumber":"1"}]}"#);
        assert_eq!(small[0], 0xa1);
        assert_eq!(
            &small[9..17],
            &[0x81, 0xa2, 0x64, b'D', b'a', b't', b'a', 0x41]
        );
        // A blob member that is not base64 stays text; floats and escapes come through.
        let decoded: Cbor = ciborium::de::from_reader(
            json_to_cbor(br#"{"Data":"not base64!","F":0.5,"S":"a\"\u00e9","B":[true,null]}"#)
                .as_slice(),
        )
        .expect("CBOR");
        assert_eq!(
            decoded,
            Cbor::Map(vec![
                (Cbor::Text("Data".into()), Cbor::Text("not base64!".into())),
                (Cbor::Text("F".into()), Cbor::Float(0.5)),
                (Cbor::Text("S".into()), Cbor::Text("a\"é".into())),
                (
                    Cbor::Text("B".into()),
                    Cbor::Array(vec![Cbor::Bool(true), Cbor::Null])
                ),
            ])
        );
        assert_eq!(json_to_cbor(b"not json"), vec![0xa0]);
        assert_eq!(json_to_cbor(b""), Vec::<u8>::new());
    }

    /// A document of every JSON kind, nested, from `seed`.
    fn document(seed: &mut u64, depth: usize) -> Json {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let pick = *seed % if depth > 3 { 6 } else { 8 };
        match pick {
            0 => Json::Null,
            1 => Json::Bool(seed.is_multiple_of(2)),
            2 => Json::from((*seed % 100_000) as i64 - 50_000),
            3 => Json::from(*seed),
            4 => Json::from((*seed % 1_000_000) as f64 / 64.0 + 0.5),
            5 => Json::String(format!("t\"{}\n\u{e9}", *seed % 1000)),
            6 => Json::Array((0..*seed % 30).map(|_| document(seed, depth + 1)).collect()),
            _ => Json::Object(
                (0..*seed % 30)
                    .map(|i| (format!("m{i}"), document(seed, depth + 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn documents_without_blobs_or_timestamps_cross_both_ways_unchanged() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            let original = serde_json::json!({ "Doc": document(&mut seed, 0) });
            let cbor = json_to_cbor(&serde_json::to_vec(&original).expect("json"));
            let back: Json =
                serde_json::from_slice(&request_to_json(&cbor).expect("CBOR reads")).expect("json");
            assert_eq!(back, original);
            // The serde reader reads what the transcoder writes.
            assert_eq!(de::from_slice::<Json>(&cbor), Ok(original));
        }
    }

    /// A type that reads none of a map's members.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Unread {}

    #[test]
    fn the_serde_reader_reads_what_the_transcoder_does() {
        // {_ "a": [_ 1, -500, 1.5 (half), 0.25 (single)], "c": (_ "x\"", "é"),
        //  "d": 32(undefined), "e": null, "f": false, "t": 1(1500)}
        let cbor = [
            0xbf, 0x61, b'a', 0x9f, 0x01, 0x39, 0x01, 0xf3, 0xf9, 0x3e, 0x00, 0xfa, 0x3e, 0x80,
            0x00, 0x00, 0xff, 0x61, b'c', 0x7f, 0x62, b'x', b'"', 0x62, 0xc3, 0xa9, 0xff, 0x61,
            b'd', 0xd8, 0x20, 0xf7, 0x61, b'e', 0xf6, 0x61, b'f', 0xf4, 0x61, b't', 0xc1, 0x19,
            0x05, 0xdc, 0xff,
        ];
        let expected = serde_json::json!({
            "a": [1, -500, 1.5, 0.25], "c": "x\"é", "d": null, "e": null, "f": false, "t": 1.5,
        });
        assert_eq!(json_of(&cbor), Ok(expected.clone()));
        assert_eq!(de::from_slice::<Json>(&cbor), Ok(expected));
        // Members a type does not read are skipped whole, indefinite lengths and tags too.
        assert_eq!(de::from_slice::<Unread>(&cbor), Ok(Unread {}));
        // Null inside a tag other than 1 is an absent member, as the transcoder makes it.
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Named {
            name: Option<String>,
        }
        let tagged_null = [0xa1, 0x64, b'n', b'a', b'm', b'e', 0xd9, 0xd9, 0xf7, 0xf6];
        assert_eq!(json_of(&tagged_null), Ok(serde_json::json!({"name": null})));
        assert_eq!(
            de::from_slice::<Named>(&tagged_null),
            Ok(Named { name: None })
        );
        let tagged_text = [0xa1, 0x64, b'n', b'a', b'm', b'e', 0xd8, 0x20, 0x61, b'x'];
        assert_eq!(
            de::from_slice::<Named>(&tagged_text),
            Ok(Named {
                name: Some("x".to_owned())
            })
        );
        // A byte string for a text member is its text when it is UTF-8.
        let bytes_name = [0xa1, 0x64, b'n', b'a', b'm', b'e', 0x42, b'h', b'i'];
        assert_eq!(
            de::from_slice::<Named>(&bytes_name),
            Ok(Named {
                name: Some("hi".to_owned())
            })
        );
        assert!(
            de::from_slice::<Named>(&[0xa1, 0x64, b'n', b'a', b'm', b'e', 0x41, 0x8e]).is_err()
        );
        // Enumerations are text.
        #[derive(Debug, PartialEq, serde::Deserialize)]
        enum Mode {
            Provisioned,
            OnDemand,
        }
        let mut on_demand = vec![0x68];
        on_demand.extend_from_slice(b"OnDemand");
        assert_eq!(de::from_slice::<Mode>(&on_demand), Ok(Mode::OnDemand));
        assert!(matches!(
            de::from_slice::<Mode>(&[0x01]),
            Err(de::DecodeError::Shape(_))
        ));
        assert!(de::from_slice::<Mode>(&[0x61, b'x']).is_err());
        assert_ne!(Mode::Provisioned, Mode::OnDemand);
    }

    #[test]
    fn put_records_read_from_cbor_borrow_their_blobs_and_keys() {
        use crate::broker::protocol::json::{Blob, PutRecordInput, PutRecordsInput};
        use std::borrow::Cow;
        // {"StreamName": "s", "Records": [_ {"Data": h'00ff', "PartitionKey": "k"},
        //  {"Data": (_ h'01', h'02'), "PartitionKey": "é", "ExplicitHashKey": "7"},
        //  {"Data": "AAE=", "PartitionKey": "t", "Other": [_ {"x": 1}]}], "Extra": 5}
        let cbor = [
            0xa3, 0x6a, b'S', b't', b'r', b'e', b'a', b'm', b'N', b'a', b'm', b'e', 0x61, b's',
            0x67, b'R', b'e', b'c', b'o', b'r', b'd', b's', 0x9f, 0xa2, 0x64, b'D', b'a', b't',
            b'a', 0x42, 0x00, 0xff, 0x6c, b'P', b'a', b'r', b't', b'i', b't', b'i', b'o', b'n',
            b'K', b'e', b'y', 0x61, b'k', 0xa3, 0x64, b'D', b'a', b't', b'a', 0x5f, 0x41, 0x01,
            0x41, 0x02, 0xff, 0x6c, b'P', b'a', b'r', b't', b'i', b't', b'i', b'o', b'n', b'K',
            b'e', b'y', 0x62, 0xc3, 0xa9, 0x6f, b'E', b'x', b'p', b'l', b'i', b'c', b'i', b't',
            b'H', b'a', b's', b'h', b'K', b'e', b'y', 0x61, b'7', 0xa3, 0x64, b'D', b'a', b't',
            b'a', 0x64, b'A', b'A', b'E', b'=', 0x6c, b'P', b'a', b'r', b't', b'i', b't', b'i',
            b'o', b'n', b'K', b'e', b'y', 0x61, b't', 0x65, b'O', b't', b'h', b'e', b'r', 0x9f,
            0xa1, 0x61, b'x', 0x01, 0xff, 0xff, 0x65, b'E', b'x', b't', b'r', b'a', 0x05,
        ];
        let input: PutRecordsInput = de::from_slice(&cbor).expect("decodes");
        assert_eq!(input.stream_name.as_deref(), Some("s"));
        let records = input.records.expect("records");
        assert_eq!(records.len(), 3);
        assert!(matches!(
            records[0].data,
            Some(Blob::Bytes(Cow::Borrowed([0x00, 0xff])))
        ));
        assert!(matches!(records[0].partition_key, Some(Cow::Borrowed("k"))));
        // Chunks are joined; text data stays base64 text, as a JSON client's is.
        assert_eq!(records[1].data, Some(Blob::Bytes(Cow::Owned(vec![1, 2]))));
        assert_eq!(records[1].partition_key.as_deref(), Some("é"));
        assert_eq!(records[1].explicit_hash_key.as_deref(), Some("7"));
        assert_eq!(records[2].data, Some(Blob::Base64("AAE=".into())));

        // A key sent as a UTF-8 byte string is that text.
        let mut bytes_key = vec![0xa1, 0x6c];
        bytes_key.extend_from_slice(b"PartitionKey");
        bytes_key.extend_from_slice(&[0x42, b'p', b'k']);
        let entry: crate::broker::protocol::json::PutRecordsEntry =
            de::from_slice(&bytes_key).expect("decodes");
        assert!(matches!(entry.partition_key, Some(Cow::Borrowed("pk"))));

        // PutRecord's record members sit beside the stream's (a flattened shape).
        let single = json_to_cbor(br#"{"StreamName":"s","Data":"AAH/","PartitionKey":"p"}"#);
        let single: PutRecordInput = de::from_slice(&single).expect("decodes");
        assert_eq!(
            (single.record.data, single.record.partition_key.as_deref()),
            (Some(Blob::Bytes(vec![0, 1, 255].into())), Some("p"))
        );

        // A member of the wrong type, and one given twice, are shape errors worded as serde
        // words them for JSON, without a JSON line and column a CBOR client never sent.
        let wrong = json_to_cbor(br#"{"Records":[{"PartitionKey":5}]}"#);
        assert_eq!(
            de::from_slice::<PutRecordsInput>(&wrong).map(drop),
            Err(de::DecodeError::Shape(
                "invalid type: integer `5`, expected a string".to_owned()
            ))
        );
        // A null where a record belongs is named null, as serde_json names it.
        let null_record = json_to_cbor(br#"{"Records":[null]}"#);
        let json_error =
            crate::broker::protocol::json::decode::<PutRecordsInput>(br#"{"Records":[null]}"#)
                .map(drop)
                .expect_err("no record");
        assert_eq!(
            de::from_slice::<PutRecordsInput>(&null_record)
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(json_error.message.replace(" at line 1 column 16", ""))
        );
        let twice = [0xa2, 0x61, b'x', 0x01, 0x61, b'x', 0x02];
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct X {
            x: u8,
        }
        assert_eq!(
            de::from_slice::<X>(&twice).map(drop),
            Err(de::DecodeError::Shape("duplicate field `x`".to_owned()))
        );
        // Items a type does not take are refused, not read as what follows.
        assert_eq!(
            de::from_slice::<(u8,)>(&[0x82, 0x01, 0x02]).map(drop),
            Err(de::DecodeError::Shape(
                "an array or map holds more items than expected".to_owned()
            ))
        );
    }
}
