//! Golden answers checked in JSON and in CBOR.

use serde_json::Value;

use super::broker::{post_json, raw_post};

/// Posts `json_body` encoded as CBOR (JSON 1.1's CBOR twin, which the Java and other SDKs
/// speak); returns the status and the answer decoded back into a JSON value.
pub fn post_cbor(endpoint: &str, operation: &str, json_body: &str) -> (u16, Value) {
    let value: Value = serde_json::from_str(json_body).expect("a JSON case body");
    let mut body = Vec::new();
    ciborium::ser::into_writer(&value, &mut body).expect("CBOR encodes");
    let target = format!("Kinesis_20131202.{operation}");
    let answer = raw_post(endpoint, Some(&target), "application/x-amz-cbor-1.1", &body);
    assert!(
        answer
            .head
            .contains("content-type: application/x-amz-cbor-1.1"),
        "{operation}: {}",
        answer.head
    );
    let decoded = ciborium::de::from_reader(answer.body.as_slice()).expect("a CBOR answer");
    (answer.status, decoded)
}

/// Each case's exact JSON answer, and the same answer in CBOR for the request in CBOR.
pub fn assert_answers(endpoint: &str, cases: &[(&str, String, u16, String)]) {
    for (operation, body, status, expected) in cases {
        let (got_status, got) = post_json(endpoint, operation, body);
        assert_eq!(
            (got_status, &got),
            (*status, expected),
            "{operation} {body}"
        );
        if serde_json::from_str::<Value>(body).is_ok_and(|v| v.is_object()) {
            let expected: Value = serde_json::from_str(expected).expect("a JSON answer");
            assert_eq!(
                post_cbor(endpoint, operation, body),
                (*status, expected),
                "{operation} {body} in CBOR"
            );
        }
    }
}
