//! Delivering one processed batch: to S3 (retried until the bucket takes it; the partition
//! reads nothing meanwhile, which is the back-pressure) or to an HTTP endpoint (retried for the
//! retry duration, then sent to the backup bucket's error output). Records that could not be
//! processed go to the error output. Every object name derives from the batch, so a batch
//! delivered twice overwrites itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;

use super::batch::{Batch, Processed, SourceRecord, error_lines};
use super::channel::{ChannelKeys, TemplateError};
use super::encode::{EncodeError, compress, join_records};
use super::http_endpoint::{Endpoint, Verdict, backoff, jitter, request_id};
use super::metrics::DeliveryMetrics;
use super::naming::{BatchIdentity, NamingError, ObjectName, batch_string, object_key};
use super::s3::Bucket;
use crate::api::delivery::{Compression, S3Destination};

/// Error output prefix when none is set.
pub const DEFAULT_ERROR_PREFIX: &str = "errors/";

/// Why a batch could not be delivered (never a destination outage: those are retried).
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// A prefix does not expand.
    #[error(transparent)]
    Naming(#[from] NamingError),
    /// A channel's template does not expand.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The content could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A channel's table cannot take the batch until its configuration changes.
    #[error(transparent)]
    Table(#[from] super::table::TableError),
    /// A failed batch could not be kept in the data folder.
    #[error("keeping a failed batch in {path}: {message}")]
    Keep {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

/// How delivered objects are named.
#[derive(Clone, Debug)]
pub enum KeyNaming {
    /// The prefix, then Firehose's suffix.
    Firehose,
    /// A channel's output key template.
    Channel(ChannelKeys),
}

/// A bucket with the prefixes and compression objects are written with.
#[derive(Clone, Debug)]
pub struct BucketOutput {
    /// The bucket.
    pub bucket: Bucket,
    /// Key prefix of delivered objects.
    pub prefix: String,
    /// Key prefix of the error output.
    pub error_prefix: String,
    /// Compression of delivered objects.
    pub compression: Compression,
    /// How delivered objects are named.
    pub naming: KeyNaming,
    /// The bucket of the error output when it is not `bucket` (a channel's dead letters).
    pub error_bucket: Option<Bucket>,
}

impl BucketOutput {
    /// The output of `destination` through `bucket`.
    pub fn new(bucket: Bucket, destination: &S3Destination) -> Self {
        Self {
            bucket,
            prefix: destination.prefix.clone(),
            error_prefix: destination
                .error_output_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_ERROR_PREFIX.to_owned()),
            compression: destination.compression,
            naming: KeyNaming::Firehose,
            error_bucket: None,
        }
    }
}

/// Pause between two attempts at appending a batch to a table.
const TABLE_RETRY: Duration = Duration::from_secs(2);

/// Where batches go.
#[derive(Clone)]
pub enum Sink {
    /// An S3-compatible bucket.
    S3(BucketOutput),
    /// An Apache Iceberg table, with the bucket of the records that do not fit it.
    Table {
        /// The table.
        table: Arc<super::table::TableOutput>,
        /// The dead-letter bucket.
        dead_letters: BucketOutput,
    },
    /// An HTTP endpoint, with the bucket that takes what it refuses.
    Http {
        /// The endpoint.
        endpoint: Endpoint,
        /// How long a batch is retried.
        retry_duration: Duration,
        /// The backup bucket, if any.
        backup: Option<BucketOutput>,
    },
}

/// Delivers batches of one DeliveryStream.
pub struct Deliverer {
    /// The DeliveryStream's name.
    pub name: String,
    /// Its version (generation).
    pub version: i64,
    /// Append a newline after each record.
    pub append_newline: bool,
    /// The destination.
    pub sink: Sink,
    /// Folder for failed batches when there is no bucket to put them in.
    pub failed_dir: PathBuf,
    /// Metrics.
    pub metrics: Arc<DeliveryMetrics>,
}

/// The records of `batch` that processing kept (did not set aside in `failed`), in order.
fn processed_records<'a>(
    batch: &'a Batch,
    failed: &'a [(SourceRecord, String, String)],
) -> impl Iterator<Item = &'a SourceRecord> {
    let set_aside: std::collections::HashSet<&str> =
        failed.iter().map(|(r, _, _)| r.position.as_str()).collect();
    batch
        .records
        .iter()
        .filter(move |r| !set_aside.contains(r.position.as_str()))
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Deliverer {
    fn key(
        &self,
        prefix: &str,
        identity: &BatchIdentity,
        at_ms: u64,
        compression: Compression,
        error_type: Option<&str>,
    ) -> Result<String, NamingError> {
        object_key(&ObjectName {
            prefix,
            stream: &self.name,
            version: self.version,
            at: timestamp(at_ms),
            batch: identity,
            compression,
            error_type,
        })
    }

    /// Puts an object, retrying until the bucket takes it.
    async fn put_until_done(&self, bucket: &Bucket, key: &str, body: Bytes) {
        let mut attempt = 0;
        loop {
            match bucket.put(key, body.clone()).await {
                Ok(()) => return,
                Err(error) => {
                    attempt += 1;
                    self.metrics.retries.inc();
                    tracing::warn!(%error, attempt, "S3 put failed; retrying");
                    tokio::time::sleep(backoff(attempt, jitter())).await;
                }
            }
        }
    }

    /// Writes `failed` records to the error output as `error_type`: the bucket's error
    /// prefix, or the data folder's `failed/` when there is no bucket.
    async fn write_errors(
        &self,
        output: Option<&BucketOutput>,
        identity: &BatchIdentity,
        at_ms: u64,
        error_type: &str,
        failed: Vec<(SourceRecord, String, String)>,
        attempts: u32,
    ) -> Result<(), DestinationError> {
        let count = failed.len() as u64;
        let lines = error_lines(failed, attempts, crate::broker::shard::wall_clock_ms());
        match output {
            Some(output) => {
                let key = self.key(
                    &output.error_prefix,
                    identity,
                    at_ms,
                    Compression::Uncompressed,
                    Some(error_type),
                )?;
                let bucket = output.error_bucket.as_ref().unwrap_or(&output.bucket);
                self.put_until_done(bucket, &key, Bytes::from(lines)).await;
            }
            None => {
                let key = self.key(
                    "",
                    identity,
                    at_ms,
                    Compression::Uncompressed,
                    Some(error_type),
                )?;
                let path = self.failed_dir.join(error_type).join(key);
                let keep = |e: std::io::Error| DestinationError::Keep {
                    path: path.display().to_string(),
                    message: e.to_string(),
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(keep)?;
                }
                std::fs::write(&path, lines).map_err(keep)?;
                tracing::error!(path = %path.display(), records = count, error_type, "records kept in the data folder: no backup bucket is set");
            }
        }
        self.metrics
            .failed_records
            .with_label_values(&[error_type])
            .inc_by(count);
        Ok(())
    }

    /// Delivers `batch` (whose identity is `identity`), processed into `processed`; returns
    /// once every record is delivered or in the error output.
    pub async fn deliver(
        &self,
        batch: &Batch,
        identity: &BatchIdentity,
        processed: Processed,
    ) -> Result<(), DestinationError> {
        let Some(at_ms) = batch.first_arrival_ms() else {
            return Ok(());
        };
        let content = join_records(
            processed.records.iter().map(|r| r.as_ref()),
            self.append_newline,
        );
        let failed: Vec<_> = processed
            .failed
            .into_iter()
            .map(|f| (f.record, f.code.to_owned(), f.message))
            .collect();
        let delivered = match &self.sink {
            Sink::S3(output) => {
                if !processed.records.is_empty() {
                    let key = match &output.naming {
                        KeyNaming::Firehose => {
                            self.key(&output.prefix, identity, at_ms, output.compression, None)?
                        }
                        KeyNaming::Channel(keys) => {
                            keys.object_key(timestamp(at_ms), identity, output.compression)?
                        }
                    };
                    let entry = key.rsplit('/').next().unwrap_or(&key);
                    let entry = entry.strip_suffix(".zip").unwrap_or(entry).to_owned();
                    let body = compress(&content, output.compression, &entry)?;
                    self.put_until_done(&output.bucket, &key, Bytes::from(body))
                        .await;
                }
                if !failed.is_empty() {
                    self.write_errors(
                        Some(output),
                        identity,
                        at_ms,
                        "processing-failed",
                        failed,
                        1,
                    )
                    .await?;
                }
                true
            }
            Sink::Table {
                table,
                dead_letters,
            } => {
                let appended = loop {
                    match table
                        .append(&batch_string(identity), &processed.records)
                        .await
                    {
                        Ok(appended) => break appended,
                        // The worker stops and the channel is FAILED with the reason.
                        Err(error) if error.is_permanent() => return Err(error.into()),
                        Err(error) => {
                            // Like an S3 put, retried until it succeeds: the stream keeps
                            // the records meanwhile.
                            tracing::warn!(%error, "appending a batch to the channel's table failed; retrying");
                            self.metrics.retries.inc();
                            tokio::time::sleep(TABLE_RETRY).await;
                        }
                    }
                };
                let mut failed = failed;
                if !appended.rejected.is_empty() {
                    // `rejected` indexes the processed records: those not set aside.
                    let kept: Vec<&SourceRecord> = processed_records(batch, &failed).collect();
                    let rejected: Vec<(SourceRecord, String, String)> = appended
                        .rejected
                        .iter()
                        .filter_map(|(index, reason)| {
                            kept.get(*index).map(|r| {
                                (
                                    (*r).clone(),
                                    "Channel.SchemaMismatch".to_owned(),
                                    reason.clone(),
                                )
                            })
                        })
                        .collect();
                    failed.extend(rejected);
                }
                if !failed.is_empty() {
                    self.write_errors(
                        Some(dead_letters),
                        identity,
                        at_ms,
                        "processing-failed",
                        failed,
                        1,
                    )
                    .await?;
                }
                if appended.rows > 0 {
                    self.record_delivery(appended.rows, content.len(), at_ms);
                }
                false
            }
            Sink::Http {
                endpoint,
                retry_duration,
                backup,
            } => {
                let mut accepted = true;
                if !processed.records.is_empty() {
                    let outcome = self
                        .post_until_done(endpoint, *retry_duration, identity, &processed.records)
                        .await;
                    if let Err((attempts, reason)) = outcome {
                        accepted = false;
                        tracing::error!(%reason, attempts, "the endpoint did not take the batch; it goes to the error output");
                        // The records that were posted: those processing did not set aside.
                        let records = processed_records(batch, &failed)
                            .map(|r| (r.clone(), "HttpEndpoint.Failed".to_owned(), reason.clone()))
                            .collect();
                        self.write_errors(
                            backup.as_ref(),
                            identity,
                            at_ms,
                            "http-endpoint-failed",
                            records,
                            attempts,
                        )
                        .await?;
                    }
                }
                if !failed.is_empty() {
                    self.write_errors(
                        backup.as_ref(),
                        identity,
                        at_ms,
                        "processing-failed",
                        failed,
                        1,
                    )
                    .await?;
                }
                accepted
            }
        };
        if delivered && !processed.records.is_empty() {
            self.record_delivery(processed.records.len(), content.len(), at_ms);
        }
        Ok(())
    }

    /// Counts `records` (`bytes` in all) delivered, the oldest of which arrived at `at_ms`.
    fn record_delivery(&self, records: usize, bytes: usize, at_ms: u64) {
        self.metrics.records_delivered.inc_by(records as u64);
        self.metrics.bytes_delivered.inc_by(bytes as u64);
        let now = crate::broker::shard::wall_clock_ms();
        self.metrics.last_delivery.set((now / 1000) as i64);
        self.metrics
            .latency
            .observe(now.saturating_sub(at_ms) as f64 / 1000.0);
    }

    /// POSTs until the endpoint accepts, refuses for good, or the retry duration is over;
    /// the error carries the attempts made and the last reason.
    async fn post_until_done(
        &self,
        endpoint: &Endpoint,
        retry_duration: Duration,
        identity: &BatchIdentity,
        records: &[Bytes],
    ) -> Result<(), (u32, String)> {
        let id = request_id(identity);
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let now = crate::broker::shard::wall_clock_ms();
            let reason = match endpoint.post(&id, now, records).await {
                Ok(Verdict::Accepted) => return Ok(()),
                Ok(Verdict::Permanent(reason)) => return Err((attempts, reason)),
                Ok(Verdict::Retry(reason)) => reason,
                Err(error) => error.to_string(),
            };
            let pause = backoff(attempts, jitter());
            if started.elapsed() + pause > retry_duration {
                return Err((attempts, reason));
            }
            self.metrics.retries.inc();
            tracing::warn!(%reason, attempts, "HTTP endpoint delivery failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }
}
