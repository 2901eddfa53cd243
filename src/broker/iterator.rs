//! Shard iterators: opaque tokens naming a stream, a shard and an offset, signed with the
//! broker's key so a client can neither forge one nor turn one towards another stream, and
//! stamped so they expire after five minutes as Kinesis's do.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::shard::ShardKey;

/// How long an iterator stays valid.
pub const ITERATOR_TTL_MS: u64 = 5 * 60 * 1000;
const VERSION: u8 = 1;
const MAC_LEN: usize = 16;

/// What an iterator points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorPosition {
    /// The stream's name.
    pub stream_name: String,
    /// The shard.
    pub shard: ShardKey,
    /// The next offset to read.
    pub offset: u64,
    /// When the iterator was issued, epoch milliseconds.
    pub issued_ms: u64,
}

/// Why an iterator was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IteratorError {
    /// Not an iterator this broker issued.
    #[error("invalid shard iterator")]
    Invalid,
    /// Issued more than five minutes ago.
    #[error("expired shard iterator")]
    Expired,
}

/// Signs and checks iterators with one secret key.
#[derive(Clone)]
pub struct IteratorCodec {
    key: [u8; 32],
}

impl IteratorCodec {
    /// A codec signing with `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Encodes a position as an iterator.
    pub fn encode(&self, position: &IteratorPosition) -> String {
        let name = position.stream_name.as_bytes();
        let mut payload = Vec::with_capacity(26 + name.len() + MAC_LEN);
        payload.push(VERSION);
        payload.extend_from_slice(&position.shard.stream_key.to_be_bytes());
        payload.extend_from_slice(&position.shard.shard_index.to_be_bytes());
        payload.extend_from_slice(&position.offset.to_be_bytes());
        payload.extend_from_slice(&position.issued_ms.to_be_bytes());
        payload.push(name.len() as u8);
        payload.extend_from_slice(name);
        let mac = self.mac(&payload);
        payload.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The stream name and shard an iterator names, read without checking its signature: a
    /// broker of a cluster uses it only to pick the pod that owns the shard, which then
    /// checks the iterator in full.
    pub fn peek(token: &str) -> Option<(String, ShardKey)> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() < 26 + MAC_LEN || bytes[0] != VERSION {
            return None;
        }
        let payload = &bytes[..bytes.len() - MAC_LEN];
        let word4 = |at: usize| {
            Some(u32::from_be_bytes(
                payload.get(at..at + 4)?.try_into().ok()?,
            ))
        };
        let name_len = usize::from(*payload.get(25)?);
        let name = std::str::from_utf8(payload.get(26..26 + name_len)?).ok()?;
        Some((
            name.to_owned(),
            ShardKey {
                stream_key: word4(1)?,
                shard_index: word4(5)?,
            },
        ))
    }

    /// Decodes and checks an iterator at time `now_ms`.
    pub fn decode(&self, token: &str, now_ms: u64) -> Result<IteratorPosition, IteratorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| IteratorError::Invalid)?;
        if bytes.len() < 26 + MAC_LEN {
            return Err(IteratorError::Invalid);
        }
        let (payload, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        // Constant-time comparison through the MAC implementation.
        let mut check =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        check.update(payload);
        check
            .verify_truncated_left(mac)
            .map_err(|_| IteratorError::Invalid)?;
        if payload[0] != VERSION {
            return Err(IteratorError::Invalid);
        }
        let word4 = |at: usize| {
            u32::from_be_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ])
        };
        let word8 = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&payload[at..at + 8]);
            u64::from_be_bytes(w)
        };
        let name_len = usize::from(payload[25]);
        let name = payload
            .get(26..26 + name_len)
            .ok_or(IteratorError::Invalid)?;
        let position = IteratorPosition {
            shard: ShardKey {
                stream_key: word4(1),
                shard_index: word4(5),
            },
            offset: word8(9),
            issued_ms: word8(17),
            stream_name: String::from_utf8(name.to_vec()).map_err(|_| IteratorError::Invalid)?,
        };
        if now_ms.saturating_sub(position.issued_ms) > ITERATOR_TTL_MS {
            return Err(IteratorError::Expired);
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> IteratorPosition {
        IteratorPosition {
            stream_name: "clicks".into(),
            shard: ShardKey {
                stream_key: 4,
                shard_index: 2,
            },
            offset: 1234,
            issued_ms: 1_000_000,
        }
    }

    #[test]
    fn an_iterator_round_trips_within_five_minutes() {
        let codec = IteratorCodec::new([7; 32]);
        let token = codec.encode(&position());
        assert!(token.len() <= 512);
        assert_eq!(
            codec.decode(&token, 1_000_000 + ITERATOR_TTL_MS),
            Ok(position())
        );
        assert_eq!(
            codec.decode(&token, 1_000_001 + ITERATOR_TTL_MS),
            Err(IteratorError::Expired)
        );
    }

    #[test]
    fn a_tampered_or_foreign_iterator_is_invalid() {
        let codec = IteratorCodec::new([7; 32]);
        let token = codec.encode(&position());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        bytes[6] ^= 1;
        assert_eq!(
            codec.decode(&URL_SAFE_NO_PAD.encode(&bytes), 1_000_000),
            Err(IteratorError::Invalid)
        );
        let other = IteratorCodec::new([8; 32]);
        assert_eq!(other.decode(&token, 1_000_000), Err(IteratorError::Invalid));
        assert_eq!(
            codec.decode("not an iterator", 1_000_000),
            Err(IteratorError::Invalid)
        );
        assert_eq!(codec.decode("", 1_000_000), Err(IteratorError::Invalid));
    }
}
