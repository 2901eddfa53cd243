//! The `application/x-amz-cbor-1.1` protocol, as a transcoder to and from the JSON shapes:
//! blobs are CBOR byte strings (base64 text in JSON) and timestamps are tag 1 holding integer
//! epoch milliseconds (AWS's convention, not RFC 8949's seconds; epoch seconds in JSON).
//!
//! Which members are blobs and timestamps comes from the Kinesis API model.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value as Json};

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
const EPOCH_TAG: u64 = 1;

fn serialization(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Serialization, message)
}

/// Decodes a CBOR request body into the JSON body the operations read.
pub fn request_to_json(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if body.is_empty() {
        return Ok(b"{}".to_vec());
    }
    let value: Cbor = ciborium::de::from_reader(body)
        .map_err(|e| serialization(format!("Malformed CBOR: {e}")))?;
    let json = to_json(value)?;
    serde_json::to_vec(&json).map_err(|e| serialization(e.to_string()))
}

fn to_json(value: Cbor) -> Result<Json, ApiError> {
    Ok(match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Text(t) => Json::String(t),
        Cbor::Bytes(b) => Json::String(STANDARD.encode(b)),
        Cbor::Integer(i) => integer_json(i)?,
        Cbor::Float(f) => Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| serialization("non-finite number"))?,
        Cbor::Tag(EPOCH_TAG, inner) => match *inner {
            // AWS writes epoch milliseconds as an integer under tag 1.
            Cbor::Integer(ms) => {
                let ms = i128::from(ms);
                Number::from_f64(ms as f64 / 1000.0)
                    .map(Json::Number)
                    .ok_or_else(|| serialization("bad timestamp"))?
            }
            Cbor::Float(seconds) => Number::from_f64(seconds)
                .map(Json::Number)
                .ok_or_else(|| serialization("bad timestamp"))?,
            _ => return Err(serialization("tag 1 must hold a number")),
        },
        Cbor::Tag(_, inner) => to_json(*inner)?,
        Cbor::Array(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Cbor::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let Cbor::Text(key) = key else {
                    return Err(serialization("map keys must be text"));
                };
                map.insert(key, to_json(value)?);
            }
            Json::Object(map)
        }
        _ => return Err(serialization("unsupported CBOR value")),
    })
}

fn integer_json(i: Integer) -> Result<Json, ApiError> {
    let wide = i128::from(i);
    if let Ok(n) = i64::try_from(wide) {
        Ok(Json::Number(n.into()))
    } else if let Ok(n) = u64::try_from(wide) {
        Ok(Json::Number(n.into()))
    } else {
        Err(serialization("integer out of range"))
    }
}

/// Encodes a JSON response body as CBOR; an empty body (an operation without output) stays
/// empty.
pub fn json_to_cbor(json: &[u8]) -> Vec<u8> {
    if json.is_empty() {
        return Vec::new();
    }
    let value: Json = serde_json::from_slice(json).unwrap_or(Json::Object(Map::new()));
    let mut out = Vec::with_capacity(json.len());
    let _ = ciborium::ser::into_writer(&to_cbor(value, None), &mut out);
    out
}

fn to_cbor(value: Json, member: Option<&str>) -> Cbor {
    match value {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(b),
        Json::String(s) if member.is_some_and(|m| BLOB_MEMBERS.contains(&m)) => {
            match STANDARD.decode(&s) {
                Ok(bytes) => Cbor::Bytes(bytes),
                Err(_) => Cbor::Text(s),
            }
        }
        Json::String(s) => Cbor::Text(s),
        Json::Number(n) if member.is_some_and(|m| TIMESTAMP_MEMBERS.contains(&m)) => {
            let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            Cbor::Tag(EPOCH_TAG, Box::new(Cbor::Integer(ms.into())))
        }
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(i.into()),
            (None, Some(u)) => Cbor::Integer(u.into()),
            _ => Cbor::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::Array(items) => Cbor::Array(items.into_iter().map(|v| to_cbor(v, member)).collect()),
        Json::Object(map) => Cbor::Map(
            map.into_iter()
                .map(|(k, v)| {
                    let child = to_cbor(v, Some(&k));
                    (Cbor::Text(k), child)
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
