//! De-aggregation of records the Kinesis Producer Library aggregated: the 4 magic bytes
//! `F3 89 9A C2`, an `AggregatedRecord` protobuf (tables of partition keys and explicit hash
//! keys, then records pointing into them), and the MD5 of that protobuf. A record without the
//! magic bytes is not aggregated; one with them that does not parse or whose digest does not
//! match is an error, for the error output, never a crash.

use md5::{Digest, Md5};

/// The bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record out of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Its partition key.
    pub partition_key: String,
    /// Its explicit hash key, when the producer gave one.
    pub explicit_hash_key: Option<String>,
    /// Its data.
    pub data: Vec<u8>,
}

/// Why an aggregate cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    /// Shorter than the magic bytes and a digest.
    #[error("an aggregated record of {0} bytes is too short for its digest")]
    TooShort(usize),
    /// The MD5 at the end does not match the protobuf.
    #[error("the aggregated record's MD5 does not match its content")]
    Digest,
    /// The protobuf ends inside a field.
    #[error("the aggregated record ends inside a field")]
    Truncated,
    /// A field of a wire type the format does not use (groups, 32-bit).
    #[error("unexpected protobuf wire type {0}")]
    WireType(u64),
    /// A record names a key the tables do not have.
    #[error("a record points at {table} entry {index}, which does not exist")]
    Index {
        /// Which table.
        table: &'static str,
        /// The index it names.
        index: u64,
    },
    /// A record without its partition key index or its data.
    #[error("a record lacks its {0}")]
    Missing(&'static str),
    /// A key that is not UTF-8.
    #[error("a key is not UTF-8")]
    Utf8,
}

/// Reads protobuf fields: (field number, value) with lengths resolved.
struct Fields<'a> {
    rest: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(bytes: &mut &[u8]) -> Result<u64, KplError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(KplError::Truncated)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(KplError::Truncated)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), KplError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut field = || -> Result<(u64, Value<'a>), KplError> {
            let key = varint(&mut self.rest)?;
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut self.rest)?),
                2 => {
                    let len = usize::try_from(varint(&mut self.rest)?)
                        .map_err(|_| KplError::Truncated)?;
                    if len > self.rest.len() {
                        return Err(KplError::Truncated);
                    }
                    let (bytes, rest) = self.rest.split_at(len);
                    self.rest = rest;
                    Value::Bytes(bytes)
                }
                1 => {
                    // A fixed64 is skipped whole.
                    if self.rest.len() < 8 {
                        return Err(KplError::Truncated);
                    }
                    self.rest = &self.rest[8..];
                    Value::Varint(0)
                }
                other => return Err(KplError::WireType(other)),
            };
            Ok((key >> 3, value))
        };
        let result = field();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

fn text(bytes: &[u8]) -> Result<String, KplError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| KplError::Utf8)
}

fn lookup(table: &[String], name: &'static str, index: u64) -> Result<String, KplError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .cloned()
        .ok_or(KplError::Index { table: name, index })
}

/// The user records of `data` when it is a KPL aggregate, None when it is a plain record.
pub fn deaggregate(data: &[u8]) -> Result<Option<Vec<UserRecord>>, KplError> {
    let Some(body) = data.strip_prefix(&MAGIC[..]) else {
        return Ok(None);
    };
    if body.len() < DIGEST_LEN {
        return Err(KplError::TooShort(data.len()));
    }
    let (message, digest) = body.split_at(body.len() - DIGEST_LEN);
    if Md5::digest(message).as_slice() != digest {
        return Err(KplError::Digest);
    }
    let (mut partition_keys, mut hash_keys, mut raw_records) = (Vec::new(), Vec::new(), Vec::new());
    for field in (Fields { rest: message }) {
        match field? {
            (1, Value::Bytes(key)) => partition_keys.push(text(key)?),
            (2, Value::Bytes(key)) => hash_keys.push(text(key)?),
            (3, Value::Bytes(record)) => raw_records.push(record),
            _ => {}
        }
    }
    let records = raw_records
        .into_iter()
        .map(|raw| {
            let (mut partition, mut hash, mut payload) = (None, None, None);
            for field in (Fields { rest: raw }) {
                match field? {
                    (1, Value::Varint(index)) => partition = Some(index),
                    (2, Value::Varint(index)) => hash = Some(index),
                    (3, Value::Bytes(bytes)) => payload = Some(bytes.to_vec()),
                    _ => {}
                }
            }
            Ok(UserRecord {
                partition_key: lookup(
                    &partition_keys,
                    "partition key",
                    partition.ok_or(KplError::Missing("partition key index"))?,
                )?,
                explicit_hash_key: hash
                    .map(|index| lookup(&hash_keys, "explicit hash key", index))
                    .transpose()?,
                data: payload.ok_or(KplError::Missing("data"))?,
            })
        })
        .collect::<Result<Vec<_>, KplError>>()?;
    Ok(Some(records))
}
