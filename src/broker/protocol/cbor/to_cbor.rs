//! A JSON answer rewritten as CBOR in one pass over its text, without a tree of values: the
//! Kinesis model's blob members become byte strings and its timestamp members tag 1 around
//! integer epoch milliseconds (AWS's convention). Arrays and maps get definite lengths, which
//! the AWS SDKs read: a container's head is written once its items are counted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::major::{BYTES, UNSIGNED};
use super::write::{Container, epoch_ms, head, integer, text};
use super::{BLOB_MEMBERS, TIMESTAMP_MEMBERS};

const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;
const FLOAT64: u8 = 0xfb;

/// Rewrites the JSON document `json` as CBOR; `None` when it is not JSON.
pub fn transcode(json: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len());
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    Item {
        out: &mut out,
        member: Member::Other,
    }
    .deserialize(&mut deserializer)
    .ok()?;
    deserializer.end().ok()?;
    Some(out)
}

/// What the model says of the member a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Blob,
    Timestamp,
    Other,
}

impl Member {
    fn of(name: &str) -> Self {
        if BLOB_MEMBERS.contains(&name) {
            Self::Blob
        } else if TIMESTAMP_MEMBERS.contains(&name) {
            Self::Timestamp
        } else {
            Self::Other
        }
    }
}

/// Appends the bytes base64 `encoded` holds as a byte string, decoded in place; false, with
/// nothing appended, when it is not base64 (the operations always write base64 there; any
/// other text stays text).
fn blob(out: &mut Vec<u8>, encoded: &str) -> bool {
    let padding = encoded.bytes().rev().take(2).filter(|&b| b == b'=').count();
    if !encoded.len().is_multiple_of(4) {
        return false;
    }
    let length = encoded.len() / 4 * 3 - padding;
    let before = out.len();
    head(out, BYTES, length as u64);
    let start = out.len();
    out.resize(start + length, 0);
    match STANDARD.decode_slice(encoded, &mut out[start..]) {
        Ok(written) if written == length => true,
        _ => {
            out.truncate(before);
            false
        }
    }
}

/// Writes one JSON value, of `member`, as CBOR.
struct Item<'o> {
    out: &'o mut Vec<u8>,
    member: Member,
}

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<(), E> {
        self.out.push(if value { TRUE } else { FALSE });
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<(), E> {
        if self.member == Member::Timestamp {
            return self.visit_f64(value as f64);
        }
        integer(self.out, value);
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<(), E> {
        if self.member == Member::Timestamp {
            return self.visit_f64(value as f64);
        }
        head(self.out, UNSIGNED, value);
        Ok(())
    }

    fn visit_f64<E>(self, value: f64) -> Result<(), E> {
        if self.member == Member::Timestamp {
            epoch_ms(self.out, (value * 1000.0).round() as i64);
        } else {
            self.out.push(FLOAT64);
            self.out.extend_from_slice(&value.to_bits().to_be_bytes());
        }
        Ok(())
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        if self.member == Member::Blob && blob(self.out, value) {
            return Ok(());
        }
        text(self.out, value);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push(NULL);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let array = Container::array(self.out);
        let mut count = 0u64;
        while items
            .next_element_seed(Item {
                out: &mut *self.out,
                member: self.member,
            })?
            .is_some()
        {
            count += 1;
        }
        array.close(self.out, count);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        let map = Container::map(self.out);
        let mut count = 0u64;
        while let Some(member) = members.next_key_seed(Key {
            out: &mut *self.out,
        })? {
            members.next_value_seed(Item {
                out: &mut *self.out,
                member,
            })?;
            count += 1;
        }
        map.close(self.out, count);
        Ok(())
    }
}

/// Writes a member's name as CBOR text and says what the model makes of it.
struct Key<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Member;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Member, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Member;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Member, E> {
        text(self.out, name);
        Ok(Member::of(name))
    }
}
