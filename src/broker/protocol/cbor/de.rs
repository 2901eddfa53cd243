//! A CBOR request body read straight into an operation's input type with serde, borrowing
//! text and byte strings from the body: for PutRecord and PutRecords, whose blobs are most
//! of a body, no JSON text and no base64 stand between a CBOR client and its records.
//!
//! It reads what the JSON transcoder reads, the same way: tag 1 as epoch seconds (from AWS's
//! integer milliseconds or float seconds), other tags by their content, `null` and
//! `undefined` as JSON's null, map keys as text only, nesting up to [`MAX_DEPTH`] levels.

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, Visitor};

use super::major::{ARRAY, BYTES, MAP, NEGATIVE, SIMPLE, TAG, TEXT, UNSIGNED};
use super::read::{CborError, EPOCH_TAG, Head, MAX_DEPTH, Reader, finite, float, negative};

/// Why a CBOR body does not decode into an input type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not one well-formed CBOR document.
    #[error("Malformed CBOR: {0}")]
    Malformed(#[from] CborError),
    /// A well-formed document of the wrong shape: a member of the wrong type, twice, ...
    #[error("Invalid request shape: {0}")]
    Shape(String),
}

impl de::Error for DecodeError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Self::Shape(message.to_string())
    }

    // CBOR's null is JSON's: named as serde_json names it, so both protocols word a misplaced
    // null alike.
    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "invalid type: {}, expected {expected}",
            NamedAsJson(unexpected)
        ))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "invalid value: {}, expected {expected}",
            NamedAsJson(unexpected)
        ))
    }
}

/// An unexpected value named as serde_json names it: the unit value is `null`.
struct NamedAsJson<'a>(de::Unexpected<'a>);

impl std::fmt::Display for NamedAsJson<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            de::Unexpected::Unit => formatter.write_str("null"),
            other => other.fmt(formatter),
        }
    }
}

/// Decodes the CBOR document `body` into `T`.
pub fn from_slice<'de, T: de::Deserialize<'de>>(body: &'de [u8]) -> Result<T, DecodeError> {
    let mut deserializer = Deserializer {
        reader: Reader { rest: body },
        depth: 0,
    };
    let value = T::deserialize(&mut deserializer)?;
    match deserializer.reader.rest.len() {
        0 => Ok(value),
        trailing => Err(CborError::Trailing(trailing).into()),
    }
}

struct Deserializer<'de> {
    reader: Reader<'de>,
    /// Arrays, maps and tags open around the next item.
    depth: usize,
}

impl<'de> Deserializer<'de> {
    /// Enters an array, map or tag.
    fn nest(&mut self) -> Result<(), CborError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        Ok(())
    }

    /// Hands the item that starts with `head` to `visitor`.
    fn item<V: Visitor<'de>>(&mut self, head: Head, visitor: V) -> Result<V::Value, DecodeError> {
        match (head.major, head.argument) {
            (UNSIGNED, Some(n)) => visitor.visit_u64(n),
            (NEGATIVE, Some(n)) => visitor.visit_i64(negative(n)?),
            (BYTES, length) => match self.reader.string(BYTES, length)? {
                Cow::Borrowed(bytes) => visitor.visit_borrowed_bytes(bytes),
                Cow::Owned(bytes) => visitor.visit_byte_buf(bytes),
            },
            (TEXT, length) => match self.reader.read_text(length)? {
                Cow::Borrowed(text) => visitor.visit_borrowed_str(text),
                Cow::Owned(text) => visitor.visit_string(text),
            },
            (ARRAY | MAP, length) => {
                self.nest()?;
                let mut items = Items::new(self, length);
                let value = if head.major == ARRAY {
                    visitor.visit_seq(&mut items)?
                } else {
                    visitor.visit_map(&mut items)?
                };
                items.finish()?;
                self.depth -= 1;
                Ok(value)
            }
            (TAG, Some(EPOCH_TAG)) => visitor.visit_f64(self.reader.epoch_seconds()?),
            (TAG, Some(_)) => {
                self.nest()?;
                let head = self.reader.head()?;
                let value = self.item(head, visitor)?;
                self.depth -= 1;
                Ok(value)
            }
            (SIMPLE, _) => match head.info {
                20 => visitor.visit_bool(false),
                21 => visitor.visit_bool(true),
                22 | 23 => visitor.visit_unit(),
                25..=27 => visitor.visit_f64(finite(float(&head))?),
                31 => Err(CborError::MisplacedIndefinite.into()),
                other => Err(CborError::UnsupportedSimple(other).into()),
            },
            _ => Err(CborError::MisplacedIndefinite.into()),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let head = self.reader.head()?;
        self.item(head, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        // `null` and `undefined` are an absent value, as JSON's null is, also inside tags
        // other than 1 (which are their content).
        let depth = self.depth;
        let value = loop {
            let before = self.reader.rest;
            let head = self.reader.head()?;
            match (head.major, head.argument) {
                (TAG, Some(tag)) if tag != EPOCH_TAG => self.nest()?,
                (SIMPLE, _) if matches!(head.info, 22 | 23) => break visitor.visit_none(),
                _ => {
                    self.reader.rest = before;
                    break visitor.visit_some(&mut *self);
                }
            }
        };
        self.depth = depth;
        value
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        // Enumerations of the Kinesis model are text.
        let head = self.reader.head()?;
        if head.major != TEXT {
            return Err(de::Error::custom("expected an enumeration's text"));
        }
        let text = self.reader.read_text(head.argument)?;
        visitor.visit_enum(de::value::StrDeserializer::<DecodeError>::new(&text))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        // Read through, not jumped over: a member no operation reads is refused for what the
        // transcoder refuses (text not UTF-8, tag 1 around text, a non-text key, ...).
        de::Deserializer::deserialize_any(&mut *self, de::IgnoredAny)?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The items of an array, or the members of a map, being read.
struct Items<'a, 'de> {
    deserializer: &'a mut Deserializer<'de>,
    /// `None`: up to a break.
    length: Option<u64>,
    /// Items (or members) begun.
    index: u64,
    /// The last one was read past.
    ended: bool,
}

impl<'a, 'de> Items<'a, 'de> {
    fn new(deserializer: &'a mut Deserializer<'de>, length: Option<u64>) -> Self {
        Self {
            deserializer,
            length,
            index: 0,
            ended: false,
        }
    }

    /// Whether another item follows (taking the break that ends an indefinite length).
    fn more(&mut self) -> Result<bool, CborError> {
        let more = self.deserializer.reader.more(self.length, self.index)?;
        if more {
            self.index += 1;
        } else {
            self.ended = true;
        }
        Ok(more)
    }

    /// Refuses items the type did not read: they would be taken for what follows.
    fn finish(&self) -> Result<(), DecodeError> {
        if self.ended || self.length == Some(self.index) {
            return Ok(());
        }
        Err(de::Error::custom(
            "an array or map holds more items than expected",
        ))
    }
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.deserializer).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Bounded: a claimed length is not trusted to size an allocation.
        self.length.map(|n| {
            usize::try_from(n.saturating_sub(self.index))
                .unwrap_or(0)
                .min(4096)
        })
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        if !self.more()? {
            return Ok(None);
        }
        let reader = &mut self.deserializer.reader;
        let head = reader.head()?;
        if head.major != TEXT {
            return Err(CborError::KeyNotText.into());
        }
        let key = match reader.read_text(head.argument)? {
            Cow::Borrowed(text) => {
                seed.deserialize(de::value::BorrowedStrDeserializer::<DecodeError>::new(text))?
            }
            Cow::Owned(text) => {
                seed.deserialize(de::value::StringDeserializer::<DecodeError>::new(text))?
            }
        };
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        seed.deserialize(&mut *self.deserializer)
    }
}
