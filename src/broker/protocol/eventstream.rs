//! The `application/vnd.amazon.eventstream` framing SubscribeToShard answers with: each
//! message is a prelude (total length, headers length, prelude CRC-32), string headers, a
//! payload and a CRC-32 of the whole message, all big-endian.

use super::ApiError;

/// Content type of an event stream response.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";
const STRING_HEADER: u8 = 7;

/// Encodes one message with string headers.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        encoded_headers.push(name.len() as u8);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(STRING_HEADER);
        encoded_headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + encoded_headers.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&encoded_headers);
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

/// An event of `event_type` with a JSON payload.
pub fn event(event_type: &str, json: &[u8]) -> Vec<u8> {
    event_with_type(event_type, json, "application/x-amz-json-1.1")
}

/// An event of `event_type` with a payload of `content_type`.
pub fn event_with_type(event_type: &str, payload: &[u8], content_type: &str) -> Vec<u8> {
    message(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", content_type),
        ],
        payload,
    )
}

/// An exception event, which ends a subscription.
pub fn exception(error: &ApiError) -> Vec<u8> {
    let payload = serde_json::json!({"message": error.message}).to_string();
    message(
        &[
            (":message-type", "exception"),
            (":exception-type", error.kind.type_name()),
            (":content-type", "application/x-amz-json-1.1"),
        ],
        payload.as_bytes(),
    )
}

/// Why bytes are not an event stream message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More bytes are needed.
    #[error("incomplete message")]
    Incomplete,
    /// A checksum or length does not check out.
    #[error("corrupt message")]
    Corrupt,
}

/// A decoded message: its string headers and payload.
pub type Decoded = (Vec<(String, String)>, Vec<u8>);

/// Decodes the first message of `bytes`; returns it and how many bytes it took.
pub fn decode(bytes: &[u8]) -> Result<(Decoded, usize), FrameError> {
    let word = |at: usize| -> Result<u32, FrameError> {
        let slice = bytes.get(at..at + 4).ok_or(FrameError::Incomplete)?;
        Ok(u32::from_be_bytes([slice[0], slice[1], slice[2], slice[3]]))
    };
    let total = word(0)? as usize;
    let headers_len = word(4)? as usize;
    if word(8)? != crc32fast::hash(&bytes[..8]) || total < 16 + headers_len {
        return Err(FrameError::Corrupt);
    }
    let message = bytes.get(..total).ok_or(FrameError::Incomplete)?;
    if word(total - 4)? != crc32fast::hash(&message[..total - 4]) {
        return Err(FrameError::Corrupt);
    }
    let mut headers = Vec::new();
    let mut at = 12;
    while at < 12 + headers_len {
        let name_len = usize::from(message[at]);
        let name = String::from_utf8_lossy(
            message
                .get(at + 1..at + 1 + name_len)
                .ok_or(FrameError::Corrupt)?,
        )
        .into_owned();
        at += 1 + name_len;
        if message.get(at) != Some(&STRING_HEADER) {
            return Err(FrameError::Corrupt);
        }
        let value_len = usize::from(u16::from_be_bytes([message[at + 1], message[at + 2]]));
        let value = String::from_utf8_lossy(
            message
                .get(at + 3..at + 3 + value_len)
                .ok_or(FrameError::Corrupt)?,
        )
        .into_owned();
        at += 3 + value_len;
        headers.push((name, value));
    }
    Ok((
        (headers, message[12 + headers_len..total - 4].to_vec()),
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_a_flipped_bit_is_caught() {
        let bytes = event("SubscribeToShardEvent", br#"{"Records":[]}"#);
        let ((headers, payload), used) = decode(&bytes).expect("decodes");
        assert_eq!(used, bytes.len());
        assert_eq!(payload, br#"{"Records":[]}"#);
        assert!(headers.contains(&(":event-type".into(), "SubscribeToShardEvent".into())));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert!(decode(&damaged).is_err(), "byte {i}");
        }
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).map(|_| ()),
            Err(FrameError::Incomplete)
        );
    }

    #[test]
    fn the_prelude_matches_the_documented_test_vector() {
        // AWS's event stream test suite: an empty message is 16 bytes with prelude CRC
        // 0x05c248eb and message CRC 0x7d98c8ff.
        let empty = message(&[], &[]);
        assert_eq!(
            empty,
            [
                0, 0, 0, 16, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff
            ]
        );
    }
}
