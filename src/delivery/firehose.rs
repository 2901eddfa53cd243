//! The Firehose data-plane API of a direct-put delivery stream: `PutRecord` and
//! `PutRecordBatch` over JSON 1.1 (`X-Amz-Target: Firehose_20150804.<Operation>`), with
//! Firehose's limits and errors. A record is acknowledged once the journal has it durably;
//! when too much waits for delivery, PutRecord answers `ServiceUnavailableException` and
//! PutRecordBatch fails each record with it (`FailedPutCount`), as Firehose does.

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use super::journal::{Journal, JournalError};

/// Largest record, before base64 (1,000 KiB).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Most records in one PutRecordBatch.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Most bytes in one PutRecordBatch (4 MiB).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Largest request body taken: 4 MiB of data in base64 and its JSON.
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// The target prefix of the Firehose API.
pub const TARGET_PREFIX: &str = "Firehose_20150804.";

/// A Firehose API error: its code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct FirehoseError {
    /// The error's `__type`, such as `InvalidArgumentException`.
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The message.
    pub message: String,
}

impl FirehoseError {
    /// 400 InvalidArgumentException.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: "InvalidArgumentException",
            status: 400,
            message: message.into(),
        }
    }

    /// 400 ResourceNotFoundException.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: "ResourceNotFoundException",
            status: 400,
            message: message.into(),
        }
    }

    /// 503 ServiceUnavailableException.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: "ServiceUnavailableException",
            status: 503,
            message: message.into(),
        }
    }

    /// 400 SerializationException: the body is not the JSON the operation takes.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self {
            code: "SerializationException",
            status: 400,
            message: message.into(),
        }
    }

    /// The JSON body of the error.
    pub fn body(&self) -> Vec<u8> {
        json!({"__type": self.code, "message": self.message})
            .to_string()
            .into_bytes()
    }
}

/// The operation an `X-Amz-Target` names, or an error for a target of another API.
pub fn operation(target: Option<&str>) -> Result<&str, FirehoseError> {
    target
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .ok_or_else(|| FirehoseError {
            code: "UnknownOperationException",
            status: 400,
            message: format!("unknown operation {:?}", target.unwrap_or_default()),
        })
}

/// The request body as JSON.
pub fn parse_body(body: &[u8]) -> Result<Value, FirehoseError> {
    serde_json::from_slice(body).map_err(|e| FirehoseError::serialization(e.to_string()))
}

/// The `DeliveryStreamName` of a request, checked against the one served.
pub fn check_stream_name(request: &Value, served: &str) -> Result<(), FirehoseError> {
    let name = request["DeliveryStreamName"].as_str().ok_or_else(|| {
        FirehoseError::invalid(
            "1 validation error detected: Value null at 'deliveryStreamName' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if name != served {
        return Err(FirehoseError::not_found(format!(
            "Firehose stream {name} under account 000000000000 not found."
        )));
    }
    Ok(())
}

/// One record's data, decoded and checked against the record limit.
pub fn record_data(record: &Value, path: &str) -> Result<Bytes, FirehoseError> {
    let text = record["Data"].as_str().ok_or_else(|| {
        FirehoseError::invalid(format!(
            "1 validation error detected: Value null at '{path}.data' failed to satisfy constraint: Member must not be null"
        ))
    })?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| FirehoseError::serialization(format!("{path}.data is not base64: {e}")))?;
    if data.len() > MAX_RECORD_BYTES {
        return Err(FirehoseError::invalid(format!(
            "1 validation error detected: Value at '{path}.data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}"
        )));
    }
    Ok(Bytes::from(data))
}

/// The records of a PutRecordBatch request, checked against Firehose's limits.
pub fn batch_records(request: &Value) -> Result<Vec<Bytes>, FirehoseError> {
    let records = request["Records"].as_array().ok_or_else(|| {
        FirehoseError::invalid(
            "1 validation error detected: Value null at 'records' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
        return Err(FirehoseError::invalid(format!(
            "1 validation error detected: Value '{}' at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_BATCH_RECORDS} and greater than or equal to 1",
            records.len()
        )));
    }
    let data = records
        .iter()
        .enumerate()
        .map(|(i, r)| record_data(r, &format!("records.{}.member", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = data.iter().map(Bytes::len).sum();
    if total > MAX_BATCH_BYTES {
        return Err(FirehoseError::invalid(format!(
            "The records of the request add up to {total} bytes; the limit is {MAX_BATCH_BYTES} (4 MiB)."
        )));
    }
    Ok(data)
}

/// A record id: the journal offset, fixed width, so ids sort as records were put.
pub fn record_id(offset: u64) -> String {
    format!("{offset:020}")
}

/// Reads a request body of at most [`MAX_REQUEST_BYTES`].
pub async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, FirehoseError> {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| FirehoseError::invalid(format!("reading the request: {e}")))
}

/// The HTTP answer of a Firehose call.
pub fn response(
    answer: Result<Value, FirehoseError>,
) -> http::Response<crate::broker::server::ResponseBody> {
    const JSON: &str = "application/x-amz-json-1.1";
    match answer {
        Ok(value) => crate::broker::server::respond(200, value.to_string().into_bytes(), JSON),
        Err(error) => crate::broker::server::respond(error.status, error.body(), JSON),
    }
}

/// Handles PutRecord or PutRecordBatch for the stream `served`, journaling into `journal`;
/// a delivery stream without a journal reads a stream and takes no puts.
pub async fn put(
    operation: &str,
    body: &[u8],
    served: &str,
    journal: Option<&Journal>,
) -> Result<Value, FirehoseError> {
    let journal = journal.ok_or_else(|| {
        FirehoseError::invalid(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
        )
    })?;
    let request = parse_body(body)?;
    check_stream_name(&request, served)?;
    let journal_error = |error: JournalError| match error {
        JournalError::Full { .. } => FirehoseError::unavailable(format!("Slow down. {error}")),
        JournalError::Store(_) => FirehoseError::unavailable(error.to_string()),
    };
    match operation {
        "PutRecord" => {
            let data = record_data(&request["Record"], "record")?;
            let offset = journal.append(&[data]).await.map_err(journal_error)?;
            Ok(json!({"RecordId": record_id(offset), "Encrypted": false}))
        }
        "PutRecordBatch" => {
            let records = batch_records(&request)?;
            let count = records.len();
            match journal.append(&records).await {
                Ok(first) => {
                    let responses: Vec<Value> = (0..count as u64)
                        .map(|i| json!({"RecordId": record_id(first + i)}))
                        .collect();
                    Ok(
                        json!({"FailedPutCount": 0, "Encrypted": false, "RequestResponses": responses}),
                    )
                }
                Err(error) => {
                    let error = journal_error(error);
                    let responses: Vec<Value> = (0..count)
                        .map(|_| json!({"ErrorCode": error.code, "ErrorMessage": error.message}))
                        .collect();
                    Ok(
                        json!({"FailedPutCount": count, "Encrypted": false, "RequestResponses": responses}),
                    )
                }
            }
        }
        other => Err(FirehoseError {
            code: "UnknownOperationException",
            status: 400,
            message: format!("operation {other} is not served by a delivery worker"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn delivery_firehose_targets_and_names_are_checked() {
        assert_eq!(
            operation(Some("Firehose_20150804.PutRecordBatch")),
            Ok("PutRecordBatch")
        );
        assert_eq!(
            operation(Some("Kinesis_20131202.PutRecord")).map_err(|e| e.code),
            Err("UnknownOperationException")
        );
        let request = json!({"DeliveryStreamName": "other"});
        assert_eq!(
            check_stream_name(&request, "mine").map_err(|e| e.code),
            Err("ResourceNotFoundException")
        );
        assert_eq!(
            parse_body(b"{nope").map_err(|e| e.code),
            Err("SerializationException")
        );
    }

    #[test]
    fn delivery_firehose_limits_are_enforced() {
        let record = |n: usize| json!({"Data": encoded(&vec![b'x'; n])});
        let batch = |records: Vec<Value>| json!({"DeliveryStreamName": "s", "Records": records});
        assert_eq!(batch_records(&batch(vec![record(3)])).expect("ok").len(), 1);
        let too_many = batch((0..501).map(|_| record(1)).collect());
        assert_eq!(
            batch_records(&too_many).map_err(|e| e.code),
            Err("InvalidArgumentException")
        );
        assert!(batch_records(&batch(Vec::new())).is_err());
        let big = batch(vec![record(MAX_RECORD_BYTES + 1)]);
        assert_eq!(
            batch_records(&big).map_err(|e| e.code),
            Err("InvalidArgumentException")
        );
        assert!(batch_records(&batch(vec![record(MAX_RECORD_BYTES)])).is_ok());
        let heavy = batch((0..5).map(|_| record(MAX_RECORD_BYTES)).collect());
        let error = batch_records(&heavy).expect_err("over 4 MiB");
        assert!(error.message.contains("4 MiB"), "{}", error.message);
        let not_base64 = batch(vec![json!({"Data": "***"})]);
        assert_eq!(
            batch_records(&not_base64).map_err(|e| e.code),
            Err("SerializationException")
        );
        assert_eq!(record_id(42), "00000000000000000042");
    }
}
