//! Writing CBOR items into a buffer, as the answers need them: heads in the fewest bytes,
//! text, byte strings, integers, AWS timestamps, and containers whose item count is known
//! only once their items are written.

use super::major::{ARRAY, BYTES, MAP, NEGATIVE, TEXT, UNSIGNED};

/// Tag 1 (an epoch time), as its head byte.
const EPOCH_TAG_HEAD: u8 = 0xc1;

/// Appends a head: `major` type with argument `n`, in the fewest bytes.
pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    if n < 24 {
        out.push(major | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[major | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends an integer.
pub fn integer(out: &mut Vec<u8>, value: i64) {
    match u64::try_from(value) {
        Ok(n) => head(out, UNSIGNED, n),
        // -1 - value is at least 0 for a negative value and cannot overflow in i128.
        Err(_) => head(out, NEGATIVE, (-1 - i128::from(value)) as u64),
    }
}

/// Appends text.
pub fn text(out: &mut Vec<u8>, value: &str) {
    head(out, TEXT, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// Appends a byte string.
pub fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    head(out, BYTES, value.len() as u64);
    out.extend_from_slice(value);
}

/// Appends a timestamp as AWS writes it: tag 1 around integer epoch milliseconds.
pub fn epoch_ms(out: &mut Vec<u8>, ms: i64) {
    out.push(EPOCH_TAG_HEAD);
    integer(out, ms);
}

/// Appends the head of a map of `members` members.
pub fn map(out: &mut Vec<u8>, members: u64) {
    head(out, MAP, members);
}

/// An array or map being written whose item count is not known yet: a one-byte placeholder
/// holds its head's place until [`Container::close`].
#[must_use = "a container's head is written by close"]
pub struct Container {
    at: usize,
    major: u8,
}

impl Container {
    /// Opens an array.
    pub fn array(out: &mut Vec<u8>) -> Self {
        Self::open(out, ARRAY)
    }

    /// Opens a map (its count is of members, not of keys and values).
    pub fn map(out: &mut Vec<u8>) -> Self {
        Self::open(out, MAP)
    }

    fn open(out: &mut Vec<u8>, major: u8) -> Self {
        let at = out.len();
        out.push(0);
        Self { at, major }
    }

    /// Writes the head of a container of `count` items in the placeholder's place, moving
    /// its items along when the head needs more than one byte.
    pub fn close(self, out: &mut Vec<u8>, count: u64) {
        let mut container_head = Vec::with_capacity(9);
        head(&mut container_head, self.major, count);
        out[self.at] = container_head[0];
        if container_head.len() > 1 {
            out.splice(
                self.at + 1..self.at + 1,
                container_head[1..].iter().copied(),
            );
        }
    }
}
