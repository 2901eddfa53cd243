//! A request body as the operations read it: JSON, or CBOR for the operations that read CBOR
//! as it came (PutRecord and PutRecords, whose blobs are most of a body). Every other CBOR
//! request is rewritten as JSON before it gets here.

use std::borrow::Cow;

use serde::Deserialize;

use super::{ApiError, ErrorKind, Operation, cbor, json};

/// A request body and its protocol.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// JSON 1.1 text.
    Json(&'a [u8]),
    /// A CBOR 1.1 document.
    Cbor(&'a [u8]),
}

impl<'a> Body<'a> {
    /// Whether `operation` reads a CBOR body as it came instead of rewritten as JSON.
    pub fn reads_cbor(operation: Operation) -> bool {
        matches!(operation, Operation::PutRecord | Operation::PutRecords)
    }

    /// Decodes the body into an operation's input; an empty body counts as an empty map.
    pub fn decode<T: Deserialize<'a>>(self) -> Result<T, ApiError> {
        match self {
            Self::Json(body) => json::decode(body),
            Self::Cbor(body) => {
                // An empty map, for an empty body.
                let body: &[u8] = if body.is_empty() { &[0xa0] } else { body };
                cbor::de::from_slice(body)
                    .map_err(|error| ApiError::new(ErrorKind::Serialization, error.to_string()))
            }
        }
    }

    /// The body as JSON text: itself, or the CBOR document rewritten.
    pub fn json(self) -> Result<Cow<'a, [u8]>, ApiError> {
        match self {
            Self::Json(body) => Ok(Cow::Borrowed(body)),
            Self::Cbor(body) => cbor::request_to_json(body).map(Cow::Owned),
        }
    }
}
