//! Kinesis's addressing, as pure functions: shard ids, the 128-bit hash key space and how
//! CreateStream divides it, MD5 partition-key routing, sequence numbers and ARNs.
//!
//! Sequence numbers are formatted from (stream key, shard index, ordinal) and never stored:
//! `49` followed by the 54-digit decimal of `stream_key << 96 | shard_index << 64 | ordinal`,
//! so they are 56 digits long like Kinesis's and compare the same as strings and as numbers.
//! A record's ordinal is its offset plus one; ordinal 0 is the shard's starting sequence
//! number, below every record's, as in Kinesis.

use md5::{Digest, Md5};

/// Kinesis's shard id for a shard index: `shardId-000000000007`.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// The shard index a shard id names. As Kinesis resolves them, the id is the number after its
/// last hyphen, padded or not, whatever precedes it: `shardId-000000000007`, `shardId-7` and
/// `anything-7` all name shard 7 (the canonical form is what Brook answers with).
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let (_, digits) = id.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros beyond a u32's digits are still the same number.
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    significant.parse().ok()
}

/// An inclusive range of the 128-bit hash key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashRange {
    /// First hash key of the range.
    pub start: u128,
    /// Last hash key of the range, inclusive.
    pub end: u128,
}

impl HashRange {
    /// Whether `key` falls in the range.
    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }
}

/// Splits the whole hash key space into `count` contiguous ranges the way CreateStream does:
/// range `i` starts at `floor(2^128 * i / count)`.
pub fn even_hash_ranges(count: u32) -> Vec<HashRange> {
    assert!(count > 0, "a stream has at least one shard");
    if count == 1 {
        return vec![HashRange {
            start: 0,
            end: u128::MAX,
        }];
    }
    let n = u128::from(count);
    // 2^128 = n * quotient + remainder, computed without overflowing u128 (n > 1).
    let mut quotient = u128::MAX / n;
    let mut remainder = u128::MAX % n + 1;
    if remainder == n {
        quotient += 1;
        remainder = 0;
    }
    let start = |i: u128| i * quotient + (i * remainder) / n;
    (0..n)
        .map(|i| HashRange {
            start: start(i),
            end: if i + 1 == n {
                u128::MAX
            } else {
                start(i + 1) - 1
            },
        })
        .collect()
}

/// The hash key of a partition key: its MD5 digest read as a big-endian 128-bit integer.
pub fn partition_hash(partition_key: &str) -> u128 {
    let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
    u128::from_be_bytes(digest)
}

/// Parses an `ExplicitHashKey`: a decimal integer in `0..2^128`.
pub fn parse_hash_key(text: &str) -> Option<u128> {
    if text.is_empty() || text.len() > 39 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

const SEQUENCE_PREFIX: &str = "49";
const SEQUENCE_DIGITS: usize = 54;
const SEQUENCE_LEN: usize = SEQUENCE_PREFIX.len() + SEQUENCE_DIGITS;

/// Where a sequence number points: a stream, one of its shards and an ordinal in that shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencePosition {
    /// The stream's internal key (distinct for a stream recreated under the same name).
    pub stream_key: u32,
    /// The shard's index.
    pub shard_index: u32,
    /// A record's offset plus one; 0 for the shard's starting sequence number.
    pub ordinal: u64,
}

impl SequencePosition {
    /// The offset an `AT_SEQUENCE_NUMBER` iterator starts at.
    pub fn at_offset(&self) -> u64 {
        self.ordinal.saturating_sub(1)
    }

    /// The offset an `AFTER_SEQUENCE_NUMBER` iterator starts at.
    pub fn after_offset(&self) -> u64 {
        self.ordinal
    }
}

/// A sequence number's text, held inline: PutRecords and GetRecords answer one per record,
/// and this costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SequenceText([u8; SEQUENCE_LEN]);

impl SequenceText {
    /// The text of `position`'s sequence number.
    pub fn of(position: SequencePosition) -> Self {
        let mut value = (u128::from(position.stream_key) << 96)
            | (u128::from(position.shard_index) << 64)
            | u128::from(position.ordinal);
        // Digits written straight into the buffer, 19 at a time, are several times cheaper
        // than `format!` with zero padding (a u128 has at most 39 digits, so the leading
        // ones stay zeros).
        const CHUNK: u128 = 10_000_000_000_000_000_000;
        let mut text = [b'0'; SEQUENCE_LEN];
        text[..SEQUENCE_PREFIX.len()].copy_from_slice(SEQUENCE_PREFIX.as_bytes());
        let digits = &mut text[SEQUENCE_PREFIX.len()..];
        let mut end = SEQUENCE_DIGITS;
        while value > 0 {
            let mut chunk = (value % CHUNK) as u64;
            value /= CHUNK;
            // A chunk below the highest is 19 digits with its zeros; the highest only its own.
            let width = if value > 0 {
                19
            } else {
                chunk.checked_ilog10().map_or(0, |log| log as usize + 1)
            };
            for digit in digits[end - width..end].iter_mut().rev() {
                *digit = b'0' + (chunk % 10) as u8;
                chunk /= 10;
            }
            end -= width;
        }
        Self(text)
    }

    /// The text of the sequence number `count` ordinals later in the same shard: decimal
    /// addition on the digits, so the records of one shard in an answer cost one division
    /// of a u128 between them, not one each.
    pub fn advanced(mut self, count: u64) -> Self {
        let mut carry = count;
        for digit in self.0[SEQUENCE_PREFIX.len()..].iter_mut().rev() {
            if carry == 0 {
                break;
            }
            let mut sum = u64::from(*digit - b'0') + carry % 10;
            carry /= 10;
            if sum >= 10 {
                sum -= 10;
                carry += 1;
            }
            *digit = b'0' + sum as u8;
        }
        self
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for SequenceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for SequenceText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The sequence numbers of records in an answer, in any order of shards: each shard's
/// latest text is kept and advanced to the next of its records asked for.
#[derive(Default)]
pub struct SequenceTexts {
    latest: Vec<(u32, u32, u64, SequenceText)>,
}

impl SequenceTexts {
    /// The text of the record at `offset` in shard `shard_index` of stream `stream_key`.
    pub fn record(&mut self, stream_key: u32, shard_index: u32, offset: u64) -> SequenceText {
        let ordinal = offset + 1;
        let found = self
            .latest
            .iter_mut()
            .find(|(stream, shard, _, _)| *stream == stream_key && *shard == shard_index);
        let Some((_, _, latest, text)) = found else {
            let text = record_text(stream_key, shard_index, offset);
            self.latest.push((stream_key, shard_index, ordinal, text));
            return text;
        };
        // Forward from the shard's latest by addition; back (not in one answer's order, but
        // allowed) by formatting again.
        *text = match ordinal.checked_sub(*latest) {
            Some(count) => text.advanced(count),
            None => record_text(stream_key, shard_index, offset),
        };
        *latest = ordinal;
        *text
    }
}

/// The text of the sequence number of the record at `offset`.
fn record_text(stream_key: u32, shard_index: u32, offset: u64) -> SequenceText {
    SequenceText::of(SequencePosition {
        stream_key,
        shard_index,
        ordinal: offset + 1,
    })
}

/// Formats a sequence number.
pub fn format_sequence(position: SequencePosition) -> String {
    SequenceText::of(position).as_str().to_owned()
}

/// The sequence number of the record at `offset`.
pub fn record_sequence(stream_key: u32, shard_index: u32, offset: u64) -> String {
    record_text(stream_key, shard_index, offset)
        .as_str()
        .to_owned()
}

/// A shard's starting sequence number: below every record's.
pub fn shard_start_sequence(stream_key: u32, shard_index: u32) -> String {
    format_sequence(SequencePosition {
        stream_key,
        shard_index,
        ordinal: 0,
    })
}

/// Reads back a sequence number Brook formatted; `None` for anything else.
pub fn parse_sequence(text: &str) -> Option<SequencePosition> {
    let digits = text.strip_prefix(SEQUENCE_PREFIX)?;
    if digits.len() != SEQUENCE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u128 = digits.parse().ok()?;
    Some(SequencePosition {
        stream_key: u32::try_from(value >> 96).ok()?,
        shard_index: (value >> 64) as u32,
        ordinal: value as u64,
    })
}

/// The ARN Kinesis clients see for a stream.
pub fn stream_arn(region: &str, account: &str, stream_name: &str) -> String {
    format!("arn:aws:kinesis:{region}:{account}:stream/{stream_name}")
}

/// The stream name in a stream ARN, if it is a well-formed Kinesis stream ARN.
pub fn stream_name_from_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_word, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (_region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = arn_word == "arn"
        && partition.starts_with("aws")
        && service == "kinesis"
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit());
    let name = resource.strip_prefix("stream/")?;
    (well_formed && !name.is_empty() && !name.contains('/')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence number as `format!` writes it: the reference the fast paths must match.
    fn reference_sequence(position: SequencePosition) -> String {
        let value = (u128::from(position.stream_key) << 96)
            | (u128::from(position.shard_index) << 64)
            | u128::from(position.ordinal);
        format!("{SEQUENCE_PREFIX}{value:0SEQUENCE_DIGITS$}")
    }

    #[test]
    fn sequence_texts_advanced_by_decimal_addition_match_the_formatted_ones() {
        let positions = [
            (0, 0, 0),
            (1, 2, 9),
            (7, 3, 99_999),
            (u32::MAX, u32::MAX, 9_999_999_999_999_999_990),
            (5, 1, u64::MAX - 600),
            (3, 4, 18_446_744_073_709_551_000),
        ];
        for (stream_key, shard_index, ordinal) in positions {
            let start = SequencePosition {
                stream_key,
                shard_index,
                ordinal,
            };
            let text = SequenceText::of(start);
            assert_eq!(text.as_str(), reference_sequence(start));
            for count in [0, 1, 9, 10, 11, 499, 500] {
                let Some(later) = ordinal.checked_add(count) else {
                    continue;
                };
                let position = SequencePosition {
                    ordinal: later,
                    ..start
                };
                assert_eq!(
                    text.advanced(count).as_str(),
                    reference_sequence(position),
                    "{start:?} + {count}"
                );
            }
        }
    }

    #[test]
    fn an_answers_sequence_numbers_are_right_in_any_order_of_shards_and_offsets() {
        let mut texts = SequenceTexts::default();
        // Interleaved shards, offsets rising within each, then one going back.
        let asked = [
            (9, 0, 41),
            (9, 1, 7),
            (9, 0, 42),
            (9, 0, 99),
            (9, 1, 8),
            (10, 0, 42),
            (9, 0, 5),
            (9, 0, 6),
        ];
        for (stream_key, shard_index, offset) in asked {
            assert_eq!(
                texts.record(stream_key, shard_index, offset).as_str(),
                record_sequence(stream_key, shard_index, offset),
                "stream {stream_key}, shard {shard_index}, offset {offset}"
            );
        }
        assert_eq!(
            serde_json::to_string(&texts.record(9, 1, 9)).unwrap_or_default(),
            format!("\"{}\"", record_sequence(9, 1, 9))
        );
    }

    #[test]
    fn shard_ids_are_zero_padded_to_twelve_digits() {
        assert_eq!(shard_id(0), "shardId-000000000000");
        assert_eq!(shard_id(42), "shardId-000000000042");
        assert_eq!(parse_shard_id("shardId-000000000042"), Some(42));
    }

    #[test]
    fn fidelity_shard_ids_resolve_by_the_number_after_the_last_hyphen() {
        assert_eq!(parse_shard_id("shardId-42"), Some(42));
        assert_eq!(parse_shard_id("shard-000000000042"), Some(42));
        assert_eq!(parse_shard_id("anything-else-0"), Some(0));
        assert_eq!(parse_shard_id("shardId-0000000000000000000000007"), Some(7));
        for unresolvable in [
            "shardId-",
            "42",
            "shardId-4x",
            "shardId--",
            "shardId-99999999999",
        ] {
            assert_eq!(parse_shard_id(unresolvable), None, "{unresolvable}");
        }
    }

    #[test]
    fn two_shards_split_the_key_space_where_kinesis_does() {
        let ranges = even_hash_ranges(2);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(
            ranges[0].end.to_string(),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(
            ranges[1].start.to_string(),
            "170141183460469231731687303715884105728"
        );
        assert_eq!(ranges[1].end, u128::MAX);
    }

    #[test]
    fn three_shards_split_the_key_space_where_kinesis_does() {
        let ranges = even_hash_ranges(3);
        assert_eq!(
            ranges[0].end.to_string(),
            "113427455640312821154458202477256070484"
        );
        assert_eq!(
            ranges[1].start.to_string(),
            "113427455640312821154458202477256070485"
        );
        assert_eq!(
            ranges[1].end.to_string(),
            "226854911280625642308916404954512140969"
        );
        assert_eq!(
            ranges[2].start.to_string(),
            "226854911280625642308916404954512140970"
        );
    }

    #[test]
    fn even_ranges_cover_the_key_space_without_gaps_for_any_count() {
        for count in [1, 2, 3, 4, 7, 10, 64, 1000, 9999] {
            let ranges = even_hash_ranges(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[ranges.len() - 1].end, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(
                    pair[0].end + 1,
                    pair[1].start,
                    "gap or overlap with {count} shards"
                );
            }
        }
    }

    #[test]
    fn partition_keys_hash_to_their_md5_as_a_big_endian_integer() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(partition_hash(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn explicit_hash_keys_are_decimal_and_below_two_to_the_128() {
        assert_eq!(parse_hash_key("0"), Some(0));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455"),
            Some(u128::MAX)
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            None
        );
        assert_eq!(parse_hash_key("-1"), None);
        assert_eq!(parse_hash_key("01"), None);
        assert_eq!(parse_hash_key(""), None);
    }

    #[test]
    fn sequence_numbers_are_written_as_zero_padded_decimal() {
        let edges = [0, 1, 9, 10, u64::MAX / 3, u64::MAX - 1, u64::MAX];
        for stream_key in [0, 1, 7, u32::MAX] {
            for shard_index in [0, 1, 999, u32::MAX] {
                for ordinal in edges {
                    let position = SequencePosition {
                        stream_key,
                        shard_index,
                        ordinal,
                    };
                    let value = (u128::from(stream_key) << 96)
                        | (u128::from(shard_index) << 64)
                        | u128::from(ordinal);
                    assert_eq!(
                        format_sequence(position),
                        format!("{SEQUENCE_PREFIX}{value:0SEQUENCE_DIGITS$}")
                    );
                    assert_eq!(parse_sequence(&format_sequence(position)), Some(position));
                }
            }
        }
    }

    #[test]
    fn sequence_numbers_round_trip_and_sort_as_strings() {
        let a = SequencePosition {
            stream_key: 3,
            shard_index: 1,
            ordinal: 9,
        };
        let b = SequencePosition {
            stream_key: 3,
            shard_index: 1,
            ordinal: 10,
        };
        let (sa, sb) = (format_sequence(a), format_sequence(b));
        assert_eq!(sa.len(), 56);
        assert!(sa < sb);
        assert_eq!(parse_sequence(&sa), Some(a));
        let max = SequencePosition {
            stream_key: u32::MAX,
            shard_index: u32::MAX,
            ordinal: u64::MAX,
        };
        assert_eq!(parse_sequence(&format_sequence(max)), Some(max));
        assert_eq!(parse_sequence("12345"), None);
        assert_eq!(parse_sequence(&sa.replace('4', "x")), None);
    }

    #[test]
    fn a_shards_starting_sequence_number_is_below_its_first_record() {
        let start = shard_start_sequence(2, 5);
        let first = record_sequence(2, 5, 0);
        assert!(start < first);
        let parsed = parse_sequence(&first).expect("parses");
        assert_eq!((parsed.at_offset(), parsed.after_offset()), (0, 1));
        let parsed = parse_sequence(&start).expect("parses");
        assert_eq!((parsed.at_offset(), parsed.after_offset()), (0, 0));
    }

    #[test]
    fn stream_arns_name_their_stream() {
        let arn = stream_arn("us-east-1", "000000000000", "clicks");
        assert_eq!(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/clicks");
        assert_eq!(stream_name_from_arn(&arn), Some("clicks"));
        assert_eq!(
            stream_name_from_arn("arn:aws:s3:us-east-1:000000000000:stream/x"),
            None
        );
        assert_eq!(
            stream_name_from_arn("arn:aws:kinesis:us-east-1:1:stream/x"),
            None
        );
    }
}
