//! What the load generator reads from CBOR answers, found by scanning their bytes for a
//! member's name (the way it reads JSON answers): a count, an iterator, how many records. A
//! name is matched with its CBOR text head, so data bytes rarely match, and the workloads'
//! data (`x` repeated) never does.

/// Where the value of member `name` begins in a CBOR document: just after the first
/// occurrence of the name as CBOR text.
fn after_member<'a>(document: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let key = member_key(name);
    let at = memchr::memmem::find(document, &key)?;
    Some(&document[at + key.len()..])
}

/// `name` as CBOR text, head and bytes.
fn member_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    crate::broker::protocol::cbor::write::text(&mut key, name);
    key
}

/// The argument of the head at the front of `item` when its major type is `major`, and the
/// bytes after the head.
fn head(item: &[u8], major: u8) -> Option<(u64, &[u8])> {
    let (&first, rest) = item.split_first()?;
    if first >> 5 != major {
        return None;
    }
    let width = match first & 0x1f {
        n @ 0..=23 => return Some((u64::from(n), rest)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let bytes = rest.get(..width)?;
    let value = bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
    Some((value, &rest[width..]))
}

/// The unsigned integer value of member `name`.
pub fn unsigned(document: &[u8], name: &str) -> Option<u64> {
    head(after_member(document, name)?, 0).map(|(value, _)| value)
}

/// The text value of member `name`.
pub fn text<'a>(document: &'a [u8], name: &str) -> Option<&'a str> {
    let (length, rest) = head(after_member(document, name)?, 3)?;
    std::str::from_utf8(rest.get(..usize::try_from(length).ok()?)?).ok()
}

/// How many times member `name` occurs (one per record for a record's member).
pub fn count_member(document: &[u8], name: &str) -> usize {
    memchr::memmem::find_iter(document, &member_key(name)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_found_in_a_cbor_answer() {
        let json = br#"{"FailedRecordCount":300,"Records":[{"SequenceNumber":"1"},{"SequenceNumber":"2"}],"NextShardIterator":"AAAA-it"}"#;
        let cbor = crate::broker::protocol::cbor::json_to_cbor(json);
        assert_eq!(unsigned(&cbor, "FailedRecordCount"), Some(300));
        assert_eq!(count_member(&cbor, "SequenceNumber"), 2);
        assert_eq!(text(&cbor, "NextShardIterator"), Some("AAAA-it"));
        assert_eq!(text(&cbor, "Missing"), None);
        assert_eq!(unsigned(&cbor, "NextShardIterator"), None);
    }
}
