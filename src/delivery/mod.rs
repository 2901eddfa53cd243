//! Firehose-style delivery: the `DeliveryStream` worker (`brook delivery`).
//!
//! Records come from a Brook stream (every shard, parents before children) or from direct
//! puts through the Firehose API (journaled before they are acknowledged); they are buffered
//! per source partition until the size or interval hint is reached, processed
//! (de-aggregation, newlines), and delivered at least once to an S3-compatible bucket or an
//! HTTP endpoint. Progress is saved around every delivery, so a restarted worker redelivers
//! the batch in flight under the same name and resumes after it.

pub mod batch;
pub mod channel;
pub mod control;
pub mod definition;
pub mod destination;
pub mod encode;
pub mod firehose;
pub mod http_endpoint;
pub mod journal;
pub mod kpl;
pub mod metrics;
pub mod naming;
pub mod progress;
pub mod s3;
pub mod source;
pub mod table;
pub mod worker;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::delivery::{DeliveryStreamSpec, Destination};
use crate::broker::server::{ResponseBody, respond};
use batch::BufferLimits;
use destination::{BucketOutput, Deliverer, Sink};
use journal::Journal;
use metrics::DeliveryMetrics;
use progress::ProgressFile;
use s3::{AccessKey, Bucket};
use source::StreamClient;
use worker::{Pipeline, WorkerError};

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The spec asks for something the worker cannot do.
    #[error("invalid delivery stream: {0}")]
    Invalid(String),
    /// A part of the worker could not be set up.
    #[error("{0}")]
    Setup(String),
    /// The listener could not be bound.
    #[error("listening on {address}: {message}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// What failed.
        message: String,
    },
    /// The pipeline stopped.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// Everything a worker runs with.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The DeliveryStream's name.
    pub name: String,
    /// Its version (the resource's generation).
    pub version: i64,
    /// What it does.
    pub spec: DeliveryStreamSpec,
    /// Where progress, the journal and failed batches are kept.
    pub data_dir: PathBuf,
    /// Address of the Firehose API and metrics.
    pub listen: SocketAddr,
    /// `host:port` of the source stream's brokers.
    pub source_endpoint: Option<String>,
    /// PEM certificates the source brokers' certificate is signed by: they are then reached
    /// over TLS.
    pub source_ca: Option<PathBuf>,
    /// Key pair for the source stream's brokers.
    pub source_key: Option<(String, String)>,
    /// Key pair for the destination (or backup) bucket.
    pub s3_key: Option<AccessKey>,
    /// The HTTP endpoint's access key.
    pub http_access_key: Option<String>,
    /// Undelivered direct-put bytes past which puts are refused.
    pub max_pending_bytes: u64,
    /// For a Kinesis channel's worker: its keys, storage class and dead-letter bucket.
    pub channel: Option<channel::ChannelOutput>,
}

fn invalid(message: impl ToString) -> DeliveryError {
    DeliveryError::Invalid(message.to_string())
}

/// Checks the spec's prefixes and sizes before anything runs.
pub fn check_spec(spec: &DeliveryStreamSpec) -> Result<(), DeliveryError> {
    let s3 = spec.destination.s3.iter().chain(
        spec.destination
            .http
            .iter()
            .filter_map(|h| h.s3_backup.as_ref()),
    );
    for bucket in s3 {
        naming::check_prefix(&bucket.prefix, false).map_err(invalid)?;
        if let Some(errors) = &bucket.error_output_prefix {
            naming::check_prefix(errors, true).map_err(invalid)?;
        }
    }
    match (&spec.destination.s3, &spec.destination.http) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => {
            return Err(invalid(
                "set exactly one of destination.s3 and destination.http",
            ));
        }
    }
    match (&spec.source.stream, &spec.source.direct_put) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        _ => Err(invalid(
            "set exactly one of source.stream and source.directPut",
        )),
    }
}

/// Builds the deliverer of `settings`.
fn deliverer(
    settings: &WorkerSettings,
    metrics: Arc<DeliveryMetrics>,
) -> Result<Deliverer, DeliveryError> {
    let bucket = |destination| {
        Bucket::new(destination, settings.s3_key.clone())
            .map(|b| BucketOutput::new(b, destination))
            .map_err(invalid)
    };
    let sink = match &settings.spec.destination {
        Destination { s3: Some(s3), .. }
            if let Some(channel) = &settings.channel
                && let Some(table) = &channel.table =>
        {
            let mut dead_letters = bucket(s3)?;
            dead_letters.bucket = dead_letters
                .bucket
                .with_object_settings(None, channel.expected_owner.clone());
            let tables = Bucket::tables_client(
                s3,
                table.tables_endpoint.as_deref(),
                settings.s3_key.clone(),
            )
            .map_err(invalid)?;
            let endpoints = table::TableEndpoints {
                tables: table.tables_endpoint.clone(),
                glue: table.glue_endpoint.clone(),
                region: s3.region.clone(),
                key: settings.s3_key.clone(),
                crash_after_commit: table.crash_after_commit,
            };
            Sink::Table {
                table: Arc::new(table::TableOutput::new(
                    table.target.clone(),
                    tables,
                    &dead_letters.bucket,
                    endpoints,
                )),
                dead_letters,
            }
        }
        Destination { s3: Some(s3), .. } => {
            let mut output = bucket(s3)?;
            if let Some(channel) = &settings.channel {
                output.bucket = output.bucket.with_object_settings(
                    channel.storage_class.clone(),
                    channel.expected_owner.clone(),
                );
                output.error_bucket = channel
                    .dead_letter_bucket
                    .as_ref()
                    .map(|dead| output.bucket.other(&dead.name, dead.expected_owner.clone()));
                output.naming = destination::KeyNaming::Channel(channel.keys.clone());
            }
            Sink::S3(output)
        }
        Destination {
            http: Some(http), ..
        } => Sink::Http {
            endpoint: http_endpoint::Endpoint::new(
                http,
                settings.http_access_key.clone(),
                format!(
                    "arn:aws:firehose:us-east-1:000000000000:deliverystream/{}",
                    settings.name
                ),
            )
            .map_err(invalid)?,
            retry_duration: Duration::from_secs(http.retry_duration_seconds.max(0) as u64),
            backup: http.s3_backup.as_ref().map(bucket).transpose()?,
        },
        _ => return Err(invalid("no destination")),
    };
    Ok(Deliverer {
        name: settings.name.clone(),
        version: settings.version,
        append_newline: settings.spec.processing.append_newline,
        sink,
        failed_dir: settings.data_dir.join("failed"),
        metrics,
    })
}

/// A running worker: its pipeline and what the API serves from.
pub struct Worker {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The stream the API serves.
    pub name: String,
    /// The direct-put journal, if the source is direct put.
    pub journal: Option<Arc<Journal>>,
}

impl Worker {
    /// Opens the data folder and builds the pipeline of `settings`.
    pub fn open(settings: &WorkerSettings) -> Result<Self, DeliveryError> {
        check_spec(&settings.spec)?;
        let metrics =
            Arc::new(DeliveryMetrics::new().map_err(|e| DeliveryError::Setup(e.to_string()))?);
        let progress = ProgressFile::open(&settings.data_dir)
            .map_err(|e| DeliveryError::Setup(e.to_string()))?;
        let journal = match settings.spec.source.direct_put {
            Some(_) => Some(Arc::new(
                Journal::open(
                    &settings.data_dir.join("journal"),
                    settings.max_pending_bytes,
                )
                .map_err(|e| DeliveryError::Setup(e.to_string()))?,
            )),
            None => None,
        };
        let buffering = &settings.spec.buffering;
        let pipeline = Arc::new(Pipeline {
            progress,
            deliverer: deliverer(settings, metrics.clone())?,
            processing: settings.spec.processing.clone(),
            limits: BufferLimits {
                size_bytes: buffering.size_mib.clamp(1, 128) as usize * 1024 * 1024,
                interval: Duration::from_secs(buffering.interval_seconds.clamp(0, 900) as u64),
            },
            metrics,
            journal: journal.clone(),
        });
        Ok(Self {
            pipeline,
            name: settings.name.clone(),
            journal,
        })
    }

    /// Runs the pipeline until it fails.
    pub async fn run(&self, settings: &WorkerSettings) -> Result<(), WorkerError> {
        if let Some(journal) = &self.journal {
            let progress = self
                .pipeline
                .progress
                .partition(worker::JOURNAL_PARTITION)
                .await;
            let first_undelivered = match (progress.pending, progress.delivered) {
                (Some(pending), _) => pending.first.parse().unwrap_or(0),
                (None, Some(delivered)) => delivered.parse::<u64>().map_or(0, |d| d + 1),
                (None, None) => 0,
            };
            match journal.count_pending_from(first_undelivered).await {
                Ok(bytes) if bytes > 0 => {
                    tracing::info!(
                        bytes,
                        "direct puts from before the restart wait for delivery"
                    )
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "counting the journal's backlog"),
            }
        }
        match &settings.spec.source.stream {
            Some(stream) => {
                // A broker without authentication takes any well-formed signature.
                let (key, secret) = settings
                    .source_key
                    .clone()
                    .unwrap_or_else(|| ("brook-delivery".into(), "brook-delivery".into()));
                let endpoint = settings
                    .source_endpoint
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1:4567".into());
                let tls = match &settings.source_ca {
                    Some(path) => Some(std::sync::Arc::new(
                        crate::http1::client_tls_from_file(Some(path))
                            .map_err(worker::WorkerError::SourceCa)?,
                    )),
                    None => None,
                };
                let client =
                    StreamClient::new(endpoint, stream.name.clone(), key, secret).with_tls(tls);
                let timestamp_ms = stream
                    .timestamp
                    .as_ref()
                    .map(|t| t.0.as_millisecond().max(0) as u64);
                self.pipeline
                    .clone()
                    .run_stream(client, stream.starting_position, timestamp_ms)
                    .await
            }
            None => self.pipeline.clone().run_journal().await,
        }
    }

    /// Answers one request: the Firehose API on `POST /`, and `/metrics`, `/healthz`, `/readyz`.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        const TEXT: &str = "text/plain; charset=utf-8";
        if request.method() == http::Method::GET {
            return Ok(match request.uri().path() {
                "/metrics" => respond(
                    200,
                    self.pipeline
                        .metrics
                        .render(crate::broker::shard::wall_clock_ms()),
                    "text/plain; version=0.0.4",
                ),
                "/healthz" | "/readyz" => respond(200, b"ok\n".to_vec(), TEXT),
                _ => respond(404, b"not found\n".to_vec(), TEXT),
            });
        }
        let target = request
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = async {
            let operation = firehose::operation(target.as_deref())?;
            let body = firehose::read_body(request.into_body()).await?;
            firehose::put(operation, &body, &self.name, self.journal.as_deref()).await
        }
        .await;
        Ok(firehose::response(answer))
    }
}

/// Runs `brook delivery` until SIGTERM or Ctrl-C, or until the pipeline fails.
pub async fn run(settings: WorkerSettings) -> Result<(), DeliveryError> {
    let worker = Arc::new(Worker::open(&settings)?);
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| DeliveryError::Listen {
            address: settings.listen,
            message: e.to_string(),
        })?;
    let (stop, stopped) = watch::channel(false);
    let handler = {
        let worker = worker.clone();
        move |request| worker.clone().handle(request)
    };
    let server = tokio::spawn(crate::broker::server::serve(
        listener, None, handler, stopped,
    ));
    tracing::info!(name = %settings.name, listen = %settings.listen, "delivery worker running");
    let result = tokio::select! {
        result = worker.run(&settings) => result.map_err(DeliveryError::from),
        _ = crate::broker::wait_for_signal() => Ok(()),
    };
    let _ = stop.send(true);
    let _ = server.await;
    if let Some(journal) = &worker.journal
        && let Err(error) = journal.shutdown().await
    {
        tracing::warn!(%error, "closing the journal");
    }
    result
}
