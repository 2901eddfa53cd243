//! Reading CBOR items off a request body: heads, strings (definite or in chunks), the
//! epoch-time tag and the numbers, with every way a body can be malformed named. Both
//! readers of a request, the JSON transcoder ([`super::to_json`]) and the serde deserializer
//! ([`super::de`]), take their items from here.

use std::borrow::Cow;

use super::major::{NEGATIVE, SIMPLE, TEXT, UNSIGNED};

/// How deep arrays, maps and tags may nest in a request.
pub const MAX_DEPTH: usize = 128;
/// The tag of an epoch time.
pub(super) const EPOCH_TAG: u64 = 1;

/// Why a CBOR request body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The body ends inside an item.
    #[error("the body ends inside an item")]
    Truncated,
    /// An item's additional information is one CBOR reserves (28 to 30).
    #[error("additional information {0} is reserved")]
    Reserved(u8),
    /// A break code where no indefinite-length item is open, or an indefinite length on a
    /// type that cannot have one.
    #[error("a break or an indefinite length where none may be")]
    MisplacedIndefinite,
    /// A chunk of an indefinite-length string is not a definite string of the same type.
    #[error("an indefinite-length string holds a chunk of another kind")]
    BadChunk,
    /// Text that is not UTF-8.
    #[error("text is not UTF-8")]
    NotUtf8,
    /// A map key that is not text.
    #[error("map keys must be text")]
    KeyNotText,
    /// A negative integer below the 64-bit range.
    #[error("integer out of range")]
    IntegerOutOfRange,
    /// An infinite or NaN float.
    #[error("non-finite number")]
    NonFinite,
    /// Tag 1 around something other than a number.
    #[error("tag 1 must hold a number")]
    BadTimestamp,
    /// A simple value JSON has no counterpart for.
    #[error("unsupported simple value {0}")]
    UnsupportedSimple(u8),
    /// Arrays, maps and tags nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes after the document.
    #[error("{0} bytes follow the document")]
    Trailing(usize),
}

/// An item's head: its major type and its argument (`None`: indefinite length, or a break
/// under the simple type).
pub(super) struct Head {
    pub(super) major: u8,
    pub(super) info: u8,
    pub(super) argument: Option<u64>,
}

/// Reads items off the front of a body.
pub(super) struct Reader<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        if self.rest.len() < n {
            return Err(CborError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    pub(super) fn head(&mut self) -> Result<Head, CborError> {
        let first = self.take(1)?[0];
        let (major, info) = (first >> 5, first & 0x1f);
        let argument = match info {
            0..=23 => Some(u64::from(info)),
            24 => Some(u64::from(self.take(1)?[0])),
            25 => Some(u64::from(u16::from_be_bytes(self.array()?))),
            26 => Some(u64::from(u32::from_be_bytes(self.array()?))),
            27 => Some(u64::from_be_bytes(self.array()?)),
            31 => None,
            reserved => return Err(CborError::Reserved(reserved)),
        };
        Ok(Head {
            major,
            info,
            argument,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// Takes a definite length's bytes.
    pub(super) fn definite(&mut self, length: u64) -> Result<&'a [u8], CborError> {
        let length = usize::try_from(length).map_err(|_| CborError::Truncated)?;
        self.take(length)
    }

    /// Whether the next byte is a break code, which it then takes.
    pub(super) fn at_break(&mut self) -> Result<bool, CborError> {
        match self.rest.first() {
            None => Err(CborError::Truncated),
            Some(0xff) => {
                self.rest = &self.rest[1..];
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// A string's bytes of `major` type (bytes or text): borrowed when its length is
    /// definite, its chunks joined when it is not.
    pub(super) fn string(
        &mut self,
        major: u8,
        length: Option<u64>,
    ) -> Result<Cow<'a, [u8]>, CborError> {
        if let Some(length) = length {
            return self.definite(length).map(Cow::Borrowed);
        }
        let mut joined = Vec::new();
        while !self.at_break()? {
            let chunk = self.head()?;
            let (true, Some(length)) = (chunk.major == major, chunk.argument) else {
                return Err(CborError::BadChunk);
            };
            joined.extend_from_slice(self.definite(length)?);
        }
        Ok(Cow::Owned(joined))
    }

    /// Text, definite or in chunks: borrowed when its length is definite.
    pub(super) fn read_text(&mut self, length: Option<u64>) -> Result<Cow<'a, str>, CborError> {
        match self.string(TEXT, length)? {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| CborError::NotUtf8),
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|_| CborError::NotUtf8),
        }
    }

    /// Whether an array or map of `length` items (`None`: up to a break) has another after
    /// `index` of them.
    pub(super) fn more(&mut self, length: Option<u64>, index: u64) -> Result<bool, CborError> {
        match length {
            Some(length) => Ok(index < length),
            None => Ok(!self.at_break()?),
        }
    }

    /// Tag 1's content as epoch seconds: integer milliseconds (AWS's convention) or float
    /// seconds.
    pub(super) fn epoch_seconds(&mut self) -> Result<f64, CborError> {
        let head = self.head()?;
        let seconds = match (head.major, head.argument) {
            (UNSIGNED, Some(ms)) => ms as f64 / 1000.0,
            (NEGATIVE, Some(n)) => negative(n)? as f64 / 1000.0,
            (SIMPLE, _) if (25..=27).contains(&head.info) => float(&head),
            _ => return Err(CborError::BadTimestamp),
        };
        finite(seconds)
    }
}

/// The value of a negative integer's argument `n`: -1 - n.
pub(super) fn negative(n: u64) -> Result<i64, CborError> {
    i64::try_from(n)
        .map(|n| -1 - n)
        .map_err(|_| CborError::IntegerOutOfRange)
}

/// A float head's value (half, single or double precision).
pub(super) fn float(head: &Head) -> f64 {
    let bits = head.argument.unwrap_or(0);
    match head.info {
        25 => half(bits as u16),
        26 => f64::from(f32::from_bits(bits as u32)),
        _ => f64::from_bits(bits),
    }
}

/// An IEEE 754 half-precision float's value.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + fraction / 1024.0) * 2f64.powi(exponent - 15),
    }
}

pub(super) fn finite(value: f64) -> Result<f64, CborError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(CborError::NonFinite)
    }
}
