//! A CBOR request body rewritten as the JSON text the operations read, in one pass over its
//! bytes: no tree of values is built. Byte strings become base64 text, tag 1 (AWS's epoch
//! milliseconds, or seconds as a float) becomes epoch seconds, other tags are dropped, and
//! map members keep the order the client sent them in.

use super::major::{ARRAY, BYTES, MAP, NEGATIVE, SIMPLE, TAG, TEXT, UNSIGNED};
use super::read::{CborError, EPOCH_TAG, MAX_DEPTH, Reader, finite, float, negative};

/// Rewrites the CBOR document `body` as JSON text.
pub fn transcode(body: &[u8]) -> Result<Vec<u8>, CborError> {
    let mut reader = Reader { rest: body };
    // Base64 takes 4/3 of a blob's bytes; most of a PutRecords body is its blobs.
    let mut out = Vec::with_capacity(body.len() + body.len() / 2 + 16);
    reader.item(&mut out, 0)?;
    if !reader.rest.is_empty() {
        return Err(CborError::Trailing(reader.rest.len()));
    }
    Ok(out)
}

impl Reader<'_> {
    /// Text, definite or in chunks.
    fn text(&mut self, length: Option<u64>, out: &mut Vec<u8>) -> Result<(), CborError> {
        let text = self.read_text(length)?;
        write_json(out, &*text);
        Ok(())
    }

    fn item(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let head = self.head()?;
        match (head.major, head.argument) {
            (UNSIGNED, Some(n)) => write_json(out, &n),
            (NEGATIVE, Some(n)) => write_json(out, &negative(n)?),
            (BYTES, length) => {
                let bytes = self.string(BYTES, length)?;
                out.push(b'"');
                super::super::write_base64(out, &bytes);
                out.push(b'"');
            }
            (TEXT, length) => self.text(length, out)?,
            (ARRAY, length) => {
                out.push(b'[');
                let mut index = 0u64;
                while self.more(length, index)? {
                    if index > 0 {
                        out.push(b',');
                    }
                    self.item(out, depth + 1)?;
                    index += 1;
                }
                out.push(b']');
            }
            (MAP, length) => {
                out.push(b'{');
                let mut index = 0u64;
                while self.more(length, index)? {
                    if index > 0 {
                        out.push(b',');
                    }
                    let key = self.head()?;
                    if key.major != TEXT {
                        return Err(CborError::KeyNotText);
                    }
                    self.text(key.argument, out)?;
                    out.push(b':');
                    self.item(out, depth + 1)?;
                    index += 1;
                }
                out.push(b'}');
            }
            (TAG, Some(EPOCH_TAG)) => write_json(out, &self.epoch_seconds()?),
            (TAG, Some(_)) => self.item(out, depth + 1)?,
            (SIMPLE, _) => match head.info {
                20 => out.extend_from_slice(b"false"),
                21 => out.extend_from_slice(b"true"),
                22 | 23 => out.extend_from_slice(b"null"),
                25..=27 => write_json(out, &finite(float(&head))?),
                31 => return Err(CborError::MisplacedIndefinite),
                other => return Err(CborError::UnsupportedSimple(other)),
            },
            _ => return Err(CborError::MisplacedIndefinite),
        }
        Ok(())
    }
}

/// Appends `value` as JSON (numbers and text, which cannot fail to serialize).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing a number or a string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}
