//! The record batch: the unit written to the journal and to a shard's segment, and read back.
//!
//! A 48-byte header (its own CRC-32C, magic, length, body CRC, shard, base offset, arrival
//! time, record count) and a body of `(u16 key length, key, u32 data length, data)` records.
//! Request tasks build and checksum the body; the writer only patches offset and time.

/// Size of a batch header in bytes.
pub const HEADER_LEN: usize = 48;
const MAGIC: u32 = 0x4252_4B31;
const VERSION: u16 = 1;

/// A batch header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Length of the body that follows the header.
    pub body_len: u32,
    /// CRC-32C of the body.
    pub body_crc: u32,
    /// Records in the body.
    pub record_count: u32,
    /// The stream the batch belongs to.
    pub stream_key: u32,
    /// The shard the batch belongs to.
    pub shard_index: u32,
    /// Offset of the first record; the others follow densely.
    pub base_offset: u64,
    /// Arrival time of every record in the batch, epoch milliseconds.
    pub arrival_ms: u64,
}

/// Why bytes are not a valid batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header.
    #[error("truncated header")]
    Truncated,
    /// The magic number is wrong: not a batch, or garbage.
    #[error("bad magic")]
    BadMagic,
    /// The header's checksum does not match.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The body's checksum does not match.
    #[error("body checksum mismatch")]
    BodyChecksum,
    /// The body does not hold the records the header announces.
    #[error("malformed body")]
    MalformedBody,
}

impl BatchHeader {
    /// Offset one past the last record of the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// Total length of the batch, header included.
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len)
    }

    /// Encodes the header with its checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[8..10].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.body_len.to_le_bytes());
        out[16..20].copy_from_slice(&self.body_crc.to_le_bytes());
        out[20..24].copy_from_slice(&self.record_count.to_le_bytes());
        out[24..28].copy_from_slice(&self.stream_key.to_le_bytes());
        out[28..32].copy_from_slice(&self.shard_index.to_le_bytes());
        out[32..40].copy_from_slice(&self.base_offset.to_le_bytes());
        out[40..48].copy_from_slice(&self.arrival_ms.to_le_bytes());
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header.
    pub fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        let bytes = bytes.get(..HEADER_LEN).ok_or(BatchError::Truncated)?;
        if u32_at(bytes, 0) != MAGIC {
            return Err(BatchError::BadMagic);
        }
        if u32_at(bytes, 4) != crc32c::crc32c(&bytes[8..]) {
            return Err(BatchError::HeaderChecksum);
        }
        Ok(Self {
            body_len: u32_at(bytes, 12),
            body_crc: u32_at(bytes, 16),
            record_count: u32_at(bytes, 20),
            stream_key: u32_at(bytes, 24),
            shard_index: u32_at(bytes, 28),
            base_offset: u64_at(bytes, 32),
            arrival_ms: u64_at(bytes, 40),
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A batch body under construction by a request task.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BodyBuilder {
    bytes: Vec<u8>,
    records: u32,
}

impl BodyBuilder {
    /// An empty body with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            records: 0,
        }
    }

    /// Appends one record. The partition key must be at most 65,535 bytes (Kinesis allows 256
    /// characters) and the data at most 4 GiB; callers validate both first.
    pub fn push(&mut self, partition_key: &str, data: &[u8]) {
        self.push_with(partition_key, data.len(), |out| out.extend_from_slice(data));
    }

    /// Appends one record whose `data_len` bytes of data `write_data` appends, so data can
    /// be decoded (from base64, say) straight into the body.
    pub fn push_with(
        &mut self,
        partition_key: &str,
        data_len: usize,
        write_data: impl FnOnce(&mut Vec<u8>),
    ) {
        self.bytes
            .extend_from_slice(&(partition_key.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(partition_key.as_bytes());
        self.bytes
            .extend_from_slice(&(data_len as u32).to_le_bytes());
        let before = self.bytes.len();
        write_data(&mut self.bytes);
        debug_assert_eq!(self.bytes.len() - before, data_len);
        self.records += 1;
    }

    /// Records so far.
    pub fn record_count(&self) -> u32 {
        self.records
    }

    /// Finishes the body: its bytes and their CRC-32C.
    pub fn finish(self) -> SealedBody {
        let crc = crc32c::crc32c(&self.bytes);
        SealedBody {
            bytes: self.bytes,
            crc,
            records: self.records,
        }
    }
}

/// A checksummed body ready for the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBody {
    /// The encoded records.
    pub bytes: Vec<u8>,
    /// CRC-32C of `bytes`.
    pub crc: u32,
    /// Records in `bytes`.
    pub records: u32,
}

/// One record read back from a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The partition key.
    pub partition_key: &'a str,
    /// The data blob.
    pub data: &'a [u8],
}

/// Iterates over the records of a body whose checksum has been verified.
pub fn records(body: &[u8]) -> impl Iterator<Item = Result<RecordRef<'_>, BatchError>> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = split_record(rest);
        match parsed {
            Ok((record, tail)) => {
                rest = tail;
                Some(Ok(record))
            }
            Err(e) => {
                rest = &[];
                Some(Err(e))
            }
        }
    })
}

fn split_record(bytes: &[u8]) -> Result<(RecordRef<'_>, &[u8]), BatchError> {
    let key_len = usize::from(u16::from_le_bytes(
        bytes
            .get(..2)
            .ok_or(BatchError::MalformedBody)?
            .try_into()
            .map_err(|_| BatchError::MalformedBody)?,
    ));
    let key = bytes.get(2..2 + key_len).ok_or(BatchError::MalformedBody)?;
    let at = 2 + key_len;
    let data_len = u32::from_le_bytes(
        bytes
            .get(at..at + 4)
            .ok_or(BatchError::MalformedBody)?
            .try_into()
            .map_err(|_| BatchError::MalformedBody)?,
    ) as usize;
    let data = bytes
        .get(at + 4..at + 4 + data_len)
        .ok_or(BatchError::MalformedBody)?;
    let partition_key = std::str::from_utf8(key).map_err(|_| BatchError::MalformedBody)?;
    Ok((
        RecordRef {
            partition_key,
            data,
        },
        &bytes[at + 4 + data_len..],
    ))
}

/// Checks a body against the checksum in its header.
pub fn verify_body(header: &BatchHeader, body: &[u8]) -> Result<(), BatchError> {
    if body.len() != header.body_len as usize || crc32c::crc32c(body) != header.body_crc {
        return Err(BatchError::BodyChecksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BatchHeader {
        BatchHeader {
            body_len: 10,
            body_crc: 7,
            record_count: 3,
            stream_key: 2,
            shard_index: 5,
            base_offset: 1000,
            arrival_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_header_round_trips() {
        let encoded = header().encode();
        assert_eq!(BatchHeader::decode(&encoded), Ok(header()));
        assert_eq!(header().end_offset(), 1003);
    }

    #[test]
    fn any_flipped_bit_in_a_header_is_detected() {
        let encoded = header().encode();
        for byte in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut damaged = encoded;
                damaged[byte] ^= 1 << bit;
                assert!(
                    BatchHeader::decode(&damaged).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
        assert_eq!(
            BatchHeader::decode(&encoded[..40]),
            Err(BatchError::Truncated)
        );
    }

    #[test]
    fn bodies_hold_their_records_in_order() {
        let mut body = BodyBuilder::with_capacity(64);
        body.push("alpha", b"one");
        body.push("", b"");
        body.push("\u{00e9}t\u{00e9}", &[0, 255, 7]);
        let sealed = body.finish();
        assert_eq!(sealed.records, 3);
        let read: Vec<_> = records(&sealed.bytes)
            .collect::<Result<_, _>>()
            .expect("well formed");
        assert_eq!(
            read[0],
            RecordRef {
                partition_key: "alpha",
                data: b"one"
            }
        );
        assert_eq!(
            read[1],
            RecordRef {
                partition_key: "",
                data: b""
            }
        );
        assert_eq!(read[2].partition_key, "\u{00e9}t\u{00e9}");
        let mut header = header();
        header.body_len = sealed.bytes.len() as u32;
        header.body_crc = sealed.crc;
        assert_eq!(verify_body(&header, &sealed.bytes), Ok(()));
        let mut damaged = sealed.bytes.clone();
        damaged[3] ^= 1;
        assert_eq!(
            verify_body(&header, &damaged),
            Err(BatchError::BodyChecksum)
        );
    }

    #[test]
    fn a_cut_body_is_malformed_not_a_panic() {
        let mut body = BodyBuilder::default();
        body.push("key", b"data");
        let sealed = body.finish();
        for cut in 0..sealed.bytes.len() {
            let parsed: Result<Vec<_>, _> = records(&sealed.bytes[..cut]).collect();
            if cut > 0 {
                assert_eq!(parsed, Err(BatchError::MalformedBody), "cut at {cut}");
            }
        }
    }
}
