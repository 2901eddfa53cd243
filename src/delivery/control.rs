//! The Firehose control API of the standalone broker: CreateDeliveryStream,
//! DescribeDeliveryStream, ListDeliveryStreams, DeleteDeliveryStream, UpdateDestination, the
//! tag calls, and PutRecord / PutRecordBatch, each delivery stream run by the same worker code
//! as `brook delivery`, in-process. Definitions are kept in `<data>/firehose/catalog.json`, so
//! a restarted broker runs them again, each resuming from its own progress.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::definition::{
    DESTINATION_ID, Definition, DestinationKind, check_name, describe, merge, stream_of,
    worker_spec,
};
use super::firehose::{self, FirehoseError};
use super::{Worker, WorkerSettings};
use crate::broker::shard::fs::{FileSystem, RealFs};
use crate::broker::shard::wall_clock_ms;

/// Most tags on a delivery stream.
const MAX_TAGS: usize = 50;
/// Undelivered direct-put bytes, per delivery stream, past which puts are refused.
const MAX_PENDING_BYTES: u64 = 512 * 1024 * 1024;

/// How in-process workers reach the rest of the broker and the world.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// Folder of the catalog and of each delivery stream's data.
    pub dir: PathBuf,
    /// `host:port` of this broker's Kinesis API (a stream source is read through it).
    pub source_address: String,
    /// The key pair the workers sign their reads with.
    pub source_key: (String, String),
    /// The S3-compatible endpoint objects go to; AWS S3 when absent.
    pub s3_endpoint: Option<String>,
    /// The S3 Tables API channels' tables are committed through; AWS's when absent.
    pub tables_endpoint: Option<String>,
    /// The Glue Schema Registry channels' record schemas are read from; AWS's when absent.
    pub glue_endpoint: Option<String>,
    /// Abort right after a table commit, before the delivery's progress is saved (tests).
    pub crash_after_table_commit: bool,
    /// Region in ARNs.
    pub region: String,
    /// Account in ARNs.
    pub account: String,
}

struct Running {
    definition: Definition,
    /// The worker and its task, or why the worker could not start (the definition is kept,
    /// described as CREATING_FAILED, and runs again at the next start of the broker).
    state: Result<(Arc<Worker>, JoinHandle<()>), String>,
}

/// A Kinesis channel's worker as the broker wants it run.
#[derive(Clone, Debug)]
pub struct ChannelRun {
    /// The channel's id: its worker's data folder is `channels/<id>`.
    pub id: String,
    /// Bumped by every update: a running worker of another generation is restarted.
    pub generation: u64,
    /// The channel's name.
    pub name: String,
    /// What the worker reads, buffers and writes.
    pub spec: crate::api::delivery::DeliveryStreamSpec,
    /// The channel's keys, storage class and dead-letter bucket.
    pub output: super::channel::ChannelOutput,
}

struct RunningChannel {
    generation: u64,
    name: String,
    metrics: Option<Arc<super::metrics::DeliveryMetrics>>,
    task: Option<JoinHandle<()>>,
    /// Why the worker could not start or stopped, if it did.
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

/// The delivery streams of a standalone broker, and its channels' workers.
pub struct Firehose {
    settings: ControlSettings,
    streams: Mutex<BTreeMap<String, Running>>,
    channels: std::sync::Mutex<BTreeMap<String, RunningChannel>>,
}

fn not_found(name: &str) -> FirehoseError {
    FirehoseError::not_found(format!(
        "Firehose stream {name} under account 000000000000 not found."
    ))
}

fn required<'a>(request: &'a Value, field: &str) -> Result<&'a str, FirehoseError> {
    request[field].as_str().ok_or_else(|| {
        FirehoseError::invalid(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn tags_of(list: &Value) -> Result<BTreeMap<String, String>, FirehoseError> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|tag| {
            let key = tag["Key"]
                .as_str()
                .filter(|k| !k.is_empty() && k.len() <= 128);
            let key = key.ok_or_else(|| {
                FirehoseError::invalid("a tag needs a Key of 1 to 128 characters")
            })?;
            Ok((
                key.to_owned(),
                tag["Value"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

impl Firehose {
    /// Loads the catalog and starts a worker for every delivery stream in it.
    pub async fn open(settings: ControlSettings) -> Result<Arc<Self>, super::DeliveryError> {
        let setup = |e: &dyn std::fmt::Display| {
            super::DeliveryError::Setup(format!("{}: {e}", settings.dir.display()))
        };
        crate::broker::shard::fs::create_dir_durably(&settings.dir).map_err(|e| setup(&e))?;
        let definitions: Vec<Definition> = match std::fs::read(settings.dir.join("catalog.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| setup(&e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(setup(&e)),
        };
        let firehose = Arc::new(Self {
            settings,
            streams: Mutex::new(BTreeMap::new()),
            channels: std::sync::Mutex::new(BTreeMap::new()),
        });
        {
            let mut streams = firehose.streams.lock().await;
            for definition in definitions {
                let running = firehose.start(definition);
                if let Err(error) = &running.state {
                    tracing::error!(name = %running.definition.name, %error, "a delivery stream of the catalog cannot start");
                }
                streams.insert(running.definition.name.clone(), running);
            }
        }
        Ok(firehose)
    }

    /// Runs exactly the channel workers of `wanted`: starts the missing ones, restarts those
    /// of another generation, stops the others and removes their data folders (and any
    /// folder no channel owns, left by a crash between a deletion and its clean-up).
    pub fn run_channels(&self, wanted: Vec<ChannelRun>) {
        let folder = self.settings.dir.join("channels");
        let mut running = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let wanted_ids: std::collections::HashSet<&str> =
            wanted.iter().map(|w| w.id.as_str()).collect();
        running.retain(|id, channel| {
            let keep = wanted
                .iter()
                .any(|w| &w.id == id && w.generation == channel.generation);
            if !keep && let Some(task) = &channel.task {
                task.abort();
            }
            keep
        });
        if let Ok(entries) = std::fs::read_dir(&folder) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !wanted_ids.contains(name.to_string_lossy().as_ref())
                    && let Err(error) = std::fs::remove_dir_all(entry.path())
                {
                    tracing::warn!(%error, "removing a deleted channel's data");
                }
            }
        }
        for run in wanted {
            if running.contains_key(&run.id) {
                continue;
            }
            let started = self.start_channel(&run, &folder);
            running.insert(run.id, started);
        }
    }

    fn start_channel(&self, run: &ChannelRun, folder: &std::path::Path) -> RunningChannel {
        let failure = Arc::new(std::sync::Mutex::new(None));
        let mut spec = run.spec.clone();
        if let Some(s3) = &mut spec.destination.s3 {
            s3.endpoint = self.settings.s3_endpoint.clone();
            s3.region = self.settings.region.clone();
        }
        let mut output = run.output.clone();
        if let Some(table) = &mut output.table {
            table.tables_endpoint = self.settings.tables_endpoint.clone();
            table.glue_endpoint = self.settings.glue_endpoint.clone();
            table.crash_after_commit = self.settings.crash_after_table_commit;
        }
        let settings = WorkerSettings {
            max_pending_bytes: 0,
            channel: Some(output),
            ..self.worker_settings(&run.name, run.generation as i64, spec, folder.join(&run.id))
        };
        let worker = match Worker::open(&settings) {
            Ok(worker) => worker,
            Err(error) => {
                tracing::error!(channel = %run.name, %error, "a channel's delivery cannot start");
                *failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
                return RunningChannel {
                    generation: run.generation,
                    name: run.name.clone(),
                    metrics: None,
                    task: None,
                    failure,
                };
            }
        };
        let failed = failure.clone();
        let metrics = Some(worker.pipeline.metrics.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = worker.run(&settings).await {
                tracing::error!(channel = %settings.name, %error, "a channel's delivery stopped");
                *failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.to_string());
            }
        });
        RunningChannel {
            generation: run.generation,
            name: run.name.clone(),
            metrics,
            task: Some(task),
            failure,
        }
    }

    /// The delivery metrics of every running worker — channels labelled `channel`, delivery
    /// streams `delivery_stream` — in the text exposition, for the broker's `/metrics`.
    pub async fn render_metrics(&self, now_ms: u64) -> Vec<u8> {
        let mut workers = Vec::new();
        for running in self.streams.lock().await.values() {
            if let Ok((worker, _)) = &running.state {
                workers.push((
                    ("delivery_stream", running.definition.name.clone()),
                    worker.pipeline.metrics.gather(now_ms),
                ));
            }
        }
        let channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for channel in channels.values() {
            if let Some(metrics) = &channel.metrics {
                workers.push((("channel", channel.name.clone()), metrics.gather(now_ms)));
            }
        }
        drop(channels);
        super::metrics::encode(&super::metrics::merge_labelled(workers))
    }

    /// Why the worker of channel `id` is not delivering, if it failed.
    pub fn channel_failure(&self, id: &str) -> Option<String> {
        let running = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let channel = running.get(id)?;
        channel
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The settings of an in-process worker: it reads this broker's streams over loopback
    /// with the internal key and writes with the broker's S3 credentials; it serves no API
    /// of its own (its listen address is never bound).
    fn worker_settings(
        &self,
        name: &str,
        version: i64,
        spec: crate::api::delivery::DeliveryStreamSpec,
        data_dir: std::path::PathBuf,
    ) -> WorkerSettings {
        WorkerSettings {
            name: name.to_owned(),
            version,
            spec,
            data_dir,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            source_endpoint: Some(self.settings.source_address.clone()),
            source_ca: None,
            source_key: Some(self.settings.source_key.clone()),
            s3_key: None,
            http_access_key: None,
            max_pending_bytes: MAX_PENDING_BYTES,
            channel: None,
        }
    }

    fn start(&self, definition: Definition) -> Running {
        let state = self.start_worker(&definition).map_err(|e| e.message);
        Running { definition, state }
    }

    fn start_worker(
        &self,
        definition: &Definition,
    ) -> Result<(Arc<Worker>, JoinHandle<()>), FirehoseError> {
        let (spec, http_access_key) =
            worker_spec(definition, self.settings.s3_endpoint.as_deref())?;
        let settings = WorkerSettings {
            http_access_key,
            ..self.worker_settings(
                &definition.name,
                definition.version,
                spec,
                self.settings.dir.join("streams").join(&definition.name),
            )
        };
        let worker =
            Arc::new(Worker::open(&settings).map_err(|e| FirehoseError::invalid(e.to_string()))?);
        let running = worker.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = running.run(&settings).await {
                tracing::error!(name = %settings.name, %error, "delivery stopped");
            }
        });
        Ok((worker, task))
    }

    async fn stop(running: Running) {
        let Ok((worker, task)) = running.state else {
            return;
        };
        task.abort();
        let _ = task.await;
        if let Some(journal) = &worker.journal
            && let Err(error) = journal.shutdown().await
        {
            tracing::warn!(%error, "closing a delivery stream's journal");
        }
    }

    fn save(&self, streams: &BTreeMap<String, Running>) -> Result<(), FirehoseError> {
        let definitions: Vec<&Definition> = streams.values().map(|r| &r.definition).collect();
        let bytes = serde_json::to_vec_pretty(&definitions)
            .map_err(|e| FirehoseError::unavailable(e.to_string()))?;
        let path = self.settings.dir.join("catalog.json");
        RealFs.write_atomic(&path, &bytes).map_err(|e| {
            FirehoseError::unavailable(format!("saving the delivery stream catalog: {e}"))
        })
    }

    /// Answers one Firehose API call; `stream_exists` says whether a Kinesis stream is there.
    pub async fn handle(
        &self,
        operation: &str,
        body: &[u8],
        stream_exists: impl Fn(&str) -> bool,
    ) -> Result<Value, FirehoseError> {
        let request = firehose::parse_body(body)?;
        match operation {
            "PutRecord" | "PutRecordBatch" => {
                let name = required(&request, "DeliveryStreamName")?;
                let worker = {
                    let streams = self.streams.lock().await;
                    match &streams.get(name).ok_or_else(|| not_found(name))?.state {
                        Ok((worker, _)) => worker.clone(),
                        Err(why) => {
                            return Err(FirehoseError::unavailable(format!(
                                "Firehose stream {name} is not running: {why}"
                            )));
                        }
                    }
                };
                firehose::put(operation, body, name, worker.journal.as_deref()).await
            }
            "CreateDeliveryStream" => self.create(&request, stream_exists).await,
            "DescribeDeliveryStream" => {
                let name = required(&request, "DeliveryStreamName")?;
                let streams = self.streams.lock().await;
                let running = streams.get(name).ok_or_else(|| not_found(name))?;
                let mut description = describe(
                    &running.definition,
                    &self.settings.region,
                    &self.settings.account,
                );
                if let Err(why) = &running.state {
                    description["DeliveryStreamStatus"] = json!("CREATING_FAILED");
                    description["FailureDescription"] =
                        json!({"Type": "UNKNOWN_ERROR", "Details": why});
                }
                Ok(json!({"DeliveryStreamDescription": description}))
            }
            "ListDeliveryStreams" => {
                let limit = request["Limit"].as_u64().unwrap_or(10).clamp(1, 10_000) as usize;
                let kind = request["DeliveryStreamType"].as_str();
                let after = request["ExclusiveStartDeliveryStreamName"]
                    .as_str()
                    .unwrap_or_default();
                let streams = self.streams.lock().await;
                let names: Vec<&String> = streams
                    .iter()
                    .filter(|(name, _)| name.as_str() > after)
                    .filter(|(_, r)| match kind {
                        Some("DirectPut") => r.definition.source_stream.is_none(),
                        Some("KinesisStreamAsSource") => r.definition.source_stream.is_some(),
                        _ => true,
                    })
                    .map(|(name, _)| name)
                    .collect();
                Ok(json!({
                    "DeliveryStreamNames": names.iter().take(limit).collect::<Vec<_>>(),
                    "HasMoreDeliveryStreams": names.len() > limit,
                }))
            }
            "DeleteDeliveryStream" => {
                let name = required(&request, "DeliveryStreamName")?;
                let mut streams = self.streams.lock().await;
                let running = streams.remove(name).ok_or_else(|| not_found(name))?;
                self.save(&streams)?;
                drop(streams);
                Self::stop(running).await;
                let data = self.settings.dir.join("streams").join(name);
                if let Err(error) = std::fs::remove_dir_all(&data) {
                    tracing::warn!(%error, "removing a deleted delivery stream's data");
                }
                Ok(json!({}))
            }
            "UpdateDestination" => self.update(&request).await,
            "TagDeliveryStream" | "UntagDeliveryStream" | "ListTagsForDeliveryStream" => {
                self.tags(operation, &request).await
            }
            other => Err(FirehoseError {
                code: "UnknownOperationException",
                status: 400,
                message: format!("Brook's Firehose API does not serve {other}"),
            }),
        }
    }

    async fn create(
        &self,
        request: &Value,
        stream_exists: impl Fn(&str) -> bool,
    ) -> Result<Value, FirehoseError> {
        let name = required(request, "DeliveryStreamName")?;
        check_name(name)?;
        let source_stream = match request["DeliveryStreamType"]
            .as_str()
            .unwrap_or("DirectPut")
        {
            "DirectPut" => None,
            "KinesisStreamAsSource" => {
                let arn = request["KinesisStreamSourceConfiguration"]["KinesisStreamARN"]
                    .as_str()
                    .ok_or_else(|| FirehoseError::invalid("KinesisStreamSourceConfiguration.KinesisStreamARN is required for KinesisStreamAsSource"))?;
                let stream = stream_of(arn)?;
                if !stream_exists(&stream) {
                    return Err(FirehoseError::invalid(format!(
                        "Stream {stream} under account {} not found.",
                        self.settings.account
                    )));
                }
                Some(stream)
            }
            other => {
                return Err(FirehoseError::invalid(format!(
                    "DeliveryStreamType {other:?} is not DirectPut or KinesisStreamAsSource"
                )));
            }
        };
        let destinations = [
            (
                "ExtendedS3DestinationConfiguration",
                DestinationKind::ExtendedS3,
            ),
            ("S3DestinationConfiguration", DestinationKind::ExtendedS3),
            (
                "HttpEndpointDestinationConfiguration",
                DestinationKind::HttpEndpoint,
            ),
        ];
        let given: Vec<(&Value, DestinationKind)> = destinations
            .iter()
            .filter_map(|(field, kind)| {
                request
                    .get(*field)
                    .filter(|v| v.is_object())
                    .map(|v| (v, *kind))
            })
            .collect();
        let [(destination, kind)] = given.as_slice() else {
            return Err(FirehoseError::invalid(
                "Exactly one destination configuration is required: ExtendedS3DestinationConfiguration, S3DestinationConfiguration or HttpEndpointDestinationConfiguration (Brook serves no other destination).",
            ));
        };
        let tags = tags_of(&request["Tags"])?;
        if tags.len() > MAX_TAGS {
            return Err(FirehoseError::invalid(format!("at most {MAX_TAGS} tags")));
        }
        let now = wall_clock_ms();
        let definition = Definition {
            name: name.to_owned(),
            source_stream,
            kind: *kind,
            destination: (*destination).clone(),
            version: 1,
            created_ms: now,
            updated_ms: now,
            tags,
        };
        let mut streams = self.streams.lock().await;
        if streams.contains_key(name) {
            return Err(FirehoseError {
                code: "ResourceInUseException",
                status: 400,
                message: format!(
                    "Firehose stream {name} under account {} already exists.",
                    self.settings.account
                ),
            });
        }
        let running = self.start(definition);
        if let Err(why) = running.state {
            let _ = std::fs::remove_dir_all(self.settings.dir.join("streams").join(name));
            return Err(FirehoseError::invalid(why));
        }
        streams.insert(name.to_owned(), running);
        if let Err(error) = self.save(&streams) {
            if let Some(running) = streams.remove(name) {
                Self::stop(running).await;
            }
            return Err(error);
        }
        Ok(
            json!({"DeliveryStreamARN": format!("arn:aws:firehose:{}:{}:deliverystream/{name}", self.settings.region, self.settings.account)}),
        )
    }

    async fn update(&self, request: &Value) -> Result<Value, FirehoseError> {
        let name = required(request, "DeliveryStreamName")?;
        let version = required(request, "CurrentDeliveryStreamVersionId")?;
        let destination_id = required(request, "DestinationId")?;
        let mut streams = self.streams.lock().await;
        let running = streams.get(name).ok_or_else(|| not_found(name))?;
        if version != running.definition.version.to_string() {
            return Err(FirehoseError {
                code: "ConcurrentModificationException",
                status: 400,
                message: format!(
                    "Version id {version} does not match the current version {}.",
                    running.definition.version
                ),
            });
        }
        if destination_id != DESTINATION_ID {
            return Err(FirehoseError::invalid(format!(
                "Destination {destination_id} not found."
            )));
        }
        let field = match running.definition.kind {
            DestinationKind::ExtendedS3 => ["ExtendedS3DestinationUpdate", "S3DestinationUpdate"],
            DestinationKind::HttpEndpoint => [
                "HttpEndpointDestinationUpdate",
                "HttpEndpointDestinationUpdate",
            ],
        };
        let update = field
            .iter()
            .find_map(|f| request.get(*f).filter(|v| v.is_object()))
            .ok_or_else(|| {
                FirehoseError::invalid(format!("an update of this destination is a {}", field[0]))
            })?;
        let mut next = running.definition.clone();
        merge(&mut next.destination, update);
        next.version += 1;
        next.updated_ms = wall_clock_ms();
        // Checked before the running worker stops, so a bad update changes nothing.
        worker_spec(&next, self.settings.s3_endpoint.as_deref())?;
        let Some(old) = streams.remove(name) else {
            return Err(not_found(name));
        };
        let previous = old.definition.clone();
        Self::stop(old).await;
        let running = self.start(next);
        if let Err(why) = &running.state {
            // The update does not take: the previous destination runs again.
            let why = why.clone();
            streams.insert(name.to_owned(), self.start(previous));
            return Err(FirehoseError::invalid(why));
        }
        streams.insert(name.to_owned(), running);
        self.save(&streams)?;
        Ok(json!({}))
    }

    async fn tags(&self, operation: &str, request: &Value) -> Result<Value, FirehoseError> {
        let name = required(request, "DeliveryStreamName")?;
        let mut streams = self.streams.lock().await;
        let running = streams.get_mut(name).ok_or_else(|| not_found(name))?;
        match operation {
            "ListTagsForDeliveryStream" => {
                let limit = request["Limit"].as_u64().unwrap_or(50).clamp(1, 50) as usize;
                let after = request["ExclusiveStartTagKey"].as_str().unwrap_or_default();
                let tags: Vec<Value> = running
                    .definition
                    .tags
                    .iter()
                    .filter(|(key, _)| key.as_str() > after)
                    .map(|(key, value)| json!({"Key": key, "Value": value}))
                    .collect();
                Ok(
                    json!({"Tags": tags.iter().take(limit).collect::<Vec<_>>(), "HasMoreTags": tags.len() > limit}),
                )
            }
            "TagDeliveryStream" => {
                let mut tags = running.definition.tags.clone();
                tags.extend(tags_of(&request["Tags"])?);
                if tags.len() > MAX_TAGS {
                    return Err(FirehoseError {
                        code: "LimitExceededException",
                        status: 400,
                        message: format!("a delivery stream has at most {MAX_TAGS} tags"),
                    });
                }
                running.definition.tags = tags;
                self.save(&streams)?;
                Ok(json!({}))
            }
            _ => {
                for key in request["TagKeys"].as_array().into_iter().flatten() {
                    if let Some(key) = key.as_str() {
                        running.definition.tags.remove(key);
                    }
                }
                self.save(&streams)?;
                Ok(json!({}))
            }
        }
    }
}
