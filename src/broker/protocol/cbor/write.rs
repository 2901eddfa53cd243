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

/// An array or map being written whose item count may differ from the one its head was
/// written with: [`Container::close`] rewrites the head when it does.
#[must_use = "a container's head is corrected by close"]
pub struct Container {
    at: usize,
    major: u8,
    announced: u64,
    head_len: usize,
}

impl Container {
    /// Opens an array whose count is not known yet.
    pub fn array(out: &mut Vec<u8>) -> Self {
        Self::open(out, ARRAY, 0)
    }

    /// Opens an array expected to hold `count` items: its head is written for them, so
    /// nothing moves at [`Container::close`] when it does.
    pub fn array_of(out: &mut Vec<u8>, count: u64) -> Self {
        Self::open(out, ARRAY, count)
    }

    /// Opens a map whose count (of members, not of keys and values) is not known yet.
    pub fn map(out: &mut Vec<u8>) -> Self {
        Self::open(out, MAP, 0)
    }

    fn open(out: &mut Vec<u8>, major: u8, announced: u64) -> Self {
        let at = out.len();
        head(out, major, announced);
        Self {
            at,
            major,
            announced,
            head_len: out.len() - at,
        }
    }

    /// Ends the container at `count` items: when that is not the count its head was written
    /// with, the head is rewritten, and the items move when its length changes.
    pub fn close(self, out: &mut Vec<u8>, count: u64) {
        if count == self.announced {
            return;
        }
        let mut container_head = Vec::with_capacity(9);
        head(&mut container_head, self.major, count);
        if container_head.len() == self.head_len {
            out[self.at..self.at + self.head_len].copy_from_slice(&container_head);
        } else {
            out.splice(self.at..self.at + self.head_len, container_head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array_of(announced: Option<u64>, items: u64) -> Vec<u8> {
        let mut out = vec![0xee];
        let array = match announced {
            Some(count) => Container::array_of(&mut out, count),
            None => Container::array(&mut out),
        };
        out.extend(std::iter::repeat_n(0xf6, items as usize));
        array.close(&mut out, items);
        out
    }

    #[test]
    fn a_container_ends_with_the_head_of_its_item_count() {
        for (announced, items) in [
            (None, 0),
            (None, 23),
            (None, 24),
            (None, 300),
            (Some(300), 300),
            (Some(300), 299),
            (Some(300), 20),
            (Some(20), 300),
            (Some(70_000), 70_000),
        ] {
            let mut expected = vec![0xee];
            head(&mut expected, ARRAY, items);
            expected.extend(std::iter::repeat_n(0xf6, items as usize));
            assert_eq!(
                array_of(announced, items),
                expected,
                "{announced:?} announced, {items} written"
            );
        }
    }
}
