//! A stream's shards spread over the pods of its StatefulSet (`--cluster-peers`,
//! `--pod-ordinal`): every shard has one owner pod whose volume holds its log; any pod
//! answers any request.
//!
//! - **The catalog** (streams, shards, lineage, owners: the placement map, versioned by its
//!   `epoch`) is changed only at pod 0, the stream's home, which serializes and persists
//!   every change as a standalone broker does; the other pods keep a replica, fetched from
//!   pod 0 over the internal port, saved on their volume and adopted when its epoch is newer.
//!   Calls that change the catalog go to pod 0; reads are answered from the local replica.
//! - **Records** go to their shard's owner: a PutRecord is relayed whole, a PutRecords is
//!   split by owner and its parts sent in parallel, the per-record results put back in the
//!   request's order; a part whose owner is unreachable comes back as per-record
//!   `InternalFailure` results the SDKs retry. GetShardIterator, GetRecords and
//!   SubscribeToShard are relayed to the shard's owner (an iterator names its shard in clear).
//! - **Internal traffic** uses the internal port with the caller's identity in a header:
//!   SigV4 is verified once, at the pod the client reached. A pod asked over the internal
//!   port for a shard it does not own refuses; the sender refreshes its replica and the
//!   client retries, so nothing is written twice or to the wrong pod.

pub mod admin;
pub mod closing;
pub mod moving;
pub mod part_lane;
pub mod placement;
pub mod put_part;
pub mod rates;
pub mod relay;
pub mod replica;
pub mod shard_read;
pub mod silence;
pub mod split;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ops::Caller;
use super::protocol::body::Body;
use super::protocol::json::borrowed_text;
use super::protocol::{ApiError, ErrorKind, Operation};
use super::state::{Broker, LiveStream};
use super::upstream::broker_connector;

/// The pod that holds the authoritative catalog.
pub const HOME: u32 = 0;
/// The header that carries the caller's identity between pods.
pub const CALLER_HEADER: &str = "x-brook-caller";
/// The internal path that serves the catalog.
pub const CATALOG_PATH: &str = "/cluster/catalog";
/// How long a pod waits for another pod's answer by default: a pod that is up answers an
/// internal call in milliseconds (a write once its sync returns), so a pod silent this long
/// is taken for unreachable, as one that refuses connections is, and its records fail with
/// retryable errors instead of holding the client's call.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// Why a pod could not reach another.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No such pod in `--cluster-peers`.
    #[error("no pod {0} in the cluster")]
    UnknownPod(u32),
    /// The pod did not answer.
    #[error("pod {ordinal} at {url} is unreachable: {message}")]
    Unreachable {
        /// The pod.
        ordinal: u32,
        /// Its internal URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The pod answered something unexpected.
    #[error("pod {ordinal} answered {message}")]
    BadAnswer {
        /// The pod.
        ordinal: u32,
        /// What it answered.
        message: String,
    },
}

/// Where the pods of a cluster are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// A fixed set of pods: every pod's internal URL, by ordinal.
    Listed(Vec<Uri>),
    /// A StatefulSet whose size may change: each pod's internal URL is this template with
    /// `{ordinal}` replaced, such as `http://orders-{ordinal}.orders-brokers.shop.svc:4568`.
    /// How many pods take new shards is then set by the operator (the catalog's
    /// `placement_pods`).
    Template(String),
}

/// The placeholder of a pod's ordinal in [`Peers::Template`].
pub const ORDINAL_PLACEHOLDER: &str = "{ordinal}";

impl Peers {
    /// Reads `--cluster-peers`: one URL with `{ordinal}` in it, or every pod's URL in order.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        if let [template] = values
            && template.contains(ORDINAL_PLACEHOLDER)
        {
            let example = template.replace(ORDINAL_PLACEHOLDER, "0");
            example
                .parse::<Uri>()
                .map_err(|e| format!("{template} is not a URL template: {e}"))?;
            return Ok(Self::Template(template.clone()));
        }
        values
            .iter()
            .map(|value| {
                value
                    .parse::<Uri>()
                    .map_err(|e| format!("{value} is not a URL: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Listed)
    }

    /// The internal URL of pod `ordinal`.
    fn url(&self, ordinal: u32) -> Result<Uri, ClusterError> {
        match self {
            Self::Listed(urls) => urls
                .get(ordinal as usize)
                .cloned()
                .ok_or(ClusterError::UnknownPod(ordinal)),
            Self::Template(template) => template
                .replace(ORDINAL_PLACEHOLDER, &ordinal.to_string())
                .parse()
                .map_err(|_| ClusterError::UnknownPod(ordinal)),
        }
    }

    /// Whether every pod is reached over TLS (`https://`).
    pub fn all_tls(&self) -> bool {
        match self {
            Self::Listed(urls) => urls.iter().all(|u| u.scheme_str() == Some("https")),
            Self::Template(template) => template.starts_with("https://"),
        }
    }

    /// How many pods the cluster is known to have: the listed ones, or `None` when the size
    /// is set by the operator.
    pub fn listed(&self) -> Option<u32> {
        match self {
            Self::Listed(urls) => Some(urls.len() as u32),
            Self::Template(_) => None,
        }
    }
}

/// This pod's place in the cluster and its client to the others.
pub struct Cluster {
    /// This pod's StatefulSet ordinal.
    pub ordinal: u32,
    /// Where the pods are reached.
    peers: Peers,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// How long this pod waits for another pod to answer before it takes that pod for
    /// unreachable (`--cluster-answer-timeout-seconds`).
    pub answer_limit: Duration,
    /// Each pod's latest write rate, as pod 0 heard them.
    pub rates: rates::PodRates,
    /// Closed shards pod 0 is moving, and copies this pod is taking in.
    pub moves: moving::Moves,
    /// Parts of PutRecords on their way to each other pod.
    pub lanes: part_lane::PartLanes,
    /// Calls to each other pod that got no answer (refused, broken, or not answered within
    /// the answer limit).
    unanswered: prometheus::IntCounterVec,
    /// Pods that did not answer within the limit: calls to them fail at once until they
    /// answer a probe.
    pub silences: silence::Silences,
    /// Whether the timed catalog refresh is held (a test hook: the replica then changes
    /// only when a request makes the pod refresh it).
    pub follow_held: std::sync::atomic::AtomicBool,
}

impl Cluster {
    /// The cluster of pods at `peers`, as pod `ordinal`; `tls` is whom `https://` peers are
    /// trusted by.
    pub fn new(ordinal: u32, peers: Peers, tls: rustls::ClientConfig) -> Self {
        Self {
            ordinal,
            peers,
            client: Client::builder(TokioExecutor::new()).build(broker_connector(tls)),
            answer_limit: ANSWER_LIMIT,
            rates: rates::PodRates::default(),
            moves: moving::Moves::default(),
            lanes: part_lane::PartLanes::default(),
            unanswered: crate::broker::metrics::counter(
                "brook_cluster_unanswered_calls_total",
                "Calls this pod made to another pod of its cluster that got no answer: refused, broken off, or not answered within the answer limit.",
                &["pod"],
            ),
            silences: silence::Silences::default(),
            follow_held: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether this pod holds the authoritative catalog.
    pub fn is_home(&self) -> bool {
        self.ordinal == HOME
    }

    /// How many pods (ordinals `0..n`) new shards may go to: what the operator set in the
    /// catalog, else every listed pod (pod 0 alone for a templated cluster never told).
    pub fn placement_pods(&self, catalog: &crate::broker::catalog::Catalog) -> u32 {
        catalog
            .placement_pods
            .or(self.peers.listed())
            .unwrap_or(1)
            .max(1)
    }

    /// The cluster's counters, for `/metrics`.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let mut collectors = self.lanes.collectors();
        collectors.push(Box::new(self.unanswered.clone()));
        collectors.push(self.silences.collector());
        collectors
    }

    /// Counts a call to pod `ordinal` that got no answer.
    fn count_unanswered(&self, ordinal: u32) {
        self.unanswered
            .with_label_values(&[&ordinal.to_string()])
            .inc();
    }

    /// How many pods the cluster lists, when it lists them.
    pub fn listed_pods(&self) -> Option<u32> {
        self.peers.listed()
    }

    /// Sends one request to pod `ordinal`'s internal port and waits up to `limit` (or as
    /// long as it takes) for its answer to start; with no answer by then the pod counts as
    /// unreachable, and as silent for later calls ([`silence`]), which fail at once until it
    /// answers a probe.
    pub async fn send(
        &self,
        ordinal: u32,
        request: http::request::Builder,
        path: &str,
        body: Bytes,
        limit: Option<Duration>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClusterError> {
        let unreachable = |message: String| self.unreachable(ordinal, message);
        self.silences
            .admit(ordinal)
            .map_err(|silent| unreachable(silent.refusal()))?;
        let request = request
            .uri(self.peer_uri(ordinal, path)?)
            .body(Full::new(body))
            .map_err(|e| unreachable(e.to_string()))?;
        let answer = async {
            match self.client.request(request).await {
                Ok(answer) => {
                    self.silences.answered(ordinal);
                    Ok(answer)
                }
                Err(e) => {
                    self.count_unanswered(ordinal);
                    if silence::timed_out(&e) {
                        self.went_unanswered(ordinal, crate::broker::upstream::CONNECT_LIMIT);
                    }
                    Err(unreachable(e.to_string()))
                }
            }
        };
        self.within(ordinal, limit, answer).await
    }

    /// Awaits `work` with pod `ordinal` for up to `limit`, or as long as it takes; a pod
    /// that has not answered by then counts as unreachable.
    async fn within<T>(
        &self,
        ordinal: u32,
        limit: Option<Duration>,
        work: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        let Some(limit) = limit else {
            return work.await;
        };
        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            self.count_unanswered(ordinal);
            self.went_unanswered(ordinal, limit);
            Err(self.unreachable(
                ordinal,
                format!("no answer within {} ms", limit.as_millis()),
            ))
        })
    }

    /// `path` on pod `ordinal`'s internal port.
    fn peer_uri(&self, ordinal: u32, path: &str) -> Result<Uri, ClusterError> {
        let base = self.peers.url(ordinal)?;
        format!("{}{path}", base.to_string().trim_end_matches('/'))
            .parse()
            .map_err(|e: http::uri::InvalidUri| self.unreachable(ordinal, e.to_string()))
    }

    /// Pod `ordinal` is unreachable, for `message`.
    fn unreachable(&self, ordinal: u32, message: String) -> ClusterError {
        ClusterError::Unreachable {
            ordinal,
            url: self
                .peers
                .url(ordinal)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            message,
        }
    }
}

impl Cluster {
    /// Sends one request to pod `ordinal`'s internal port and reads the whole answer, its
    /// status and body, within the answer limit.
    pub async fn exchange(
        &self,
        ordinal: u32,
        request: http::request::Builder,
        path: &str,
        body: Bytes,
    ) -> Result<(http::StatusCode, Bytes), ClusterError> {
        self.exchange_within(ordinal, request, path, body, Some(self.answer_limit))
            .await
    }

    /// The same, waiting up to `limit` for the whole answer, or as long as it takes (for a
    /// call whose work grows with the data, such as a whole shard's copy) while the pod
    /// answers pings.
    pub async fn exchange_within(
        &self,
        ordinal: u32,
        request: http::request::Builder,
        path: &str,
        body: Bytes,
        limit: Option<Duration>,
    ) -> Result<(http::StatusCode, Bytes), ClusterError> {
        use http_body_util::BodyExt;
        let whole = async {
            let answer = self.send(ordinal, request, path, body, None).await?;
            let status = answer.status();
            let bytes = answer
                .into_body()
                .collect()
                .await
                .map_err(|e| ClusterError::BadAnswer {
                    ordinal,
                    message: e.to_string(),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        match limit {
            Some(_) => self.within(ordinal, limit, whole).await,
            None => self.kept_alive(ordinal, whole).await,
        }
    }
}

/// The caller as the internal header carries it.
pub fn caller_header(caller: &Caller) -> String {
    match caller {
        Caller::Anonymous => "anonymous".to_owned(),
        Caller::Client(key) => format!("client:{key}"),
        Caller::Admin => "admin".to_owned(),
    }
}

/// The caller an internal request carries.
pub fn parse_caller(header: Option<&str>) -> Option<Caller> {
    match header? {
        "anonymous" => Some(Caller::Anonymous),
        "admin" => Some(Caller::Admin),
        other => other
            .strip_prefix("client:")
            .map(|key| Caller::Client(key.to_owned())),
    }
}

/// Operations that change the catalog: only pod 0 runs them.
pub fn changes_catalog(operation: Operation) -> bool {
    use Operation::*;
    matches!(
        operation,
        CreateStream
            | DeleteStream
            | IncreaseStreamRetentionPeriod
            | DecreaseStreamRetentionPeriod
            | AddTagsToStream
            | RemoveTagsFromStream
            | SplitShard
            | MergeShards
            | UpdateShardCount
            | RegisterStreamConsumer
            | DeregisterStreamConsumer
            | EnableEnhancedMonitoring
            | DisableEnhancedMonitoring
            | StartStreamEncryption
            | StopStreamEncryption
            | TagResource
            | UntagResource
            | UpdateMaxRecordSize
            | UpdateStreamWarmThroughput
            | UpdateAccountSettings
            | UpdateStreamMode
            | PutResourcePolicy
            | DeleteResourcePolicy
            | UpdateStreamRecordDistributionStrategy
    )
}

/// Operations served by pod 0 whatever they name: queues keep their delivery state there
/// (reading the shards from their owners), and channels run their delivery there.
pub fn served_at_home(operation: Operation) -> bool {
    use Operation::*;
    matches!(
        operation,
        CreateQueue
            | DescribeQueue
            | ListQueues
            | UpdateQueue
            | DeleteQueue
            | ReceiveQueueRecords
            | AcknowledgeQueueRecords
            | UpdateQueueRecordsVisibility
            | ReceiveDeadLetterQueueRecords
            | AcknowledgeDeadLetterQueueRecords
            | RestoreDeadLetterQueueRecords
            | UpdateDeadLetterQueueRecordsVisibility
            | CreateChannel
            | DescribeChannel
            | ListChannels
            | UpdateChannel
            | DeleteChannel
    )
}

/// Where a request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// By this pod.
    Here,
    /// By pod N, to which it is relayed whole.
    Pod(u32),
}

/// The owner of shard `index` of `stream`, if the stream has it.
pub fn owner_of(stream: &LiveStream, index: u32) -> Option<u32> {
    match stream.shards.get(index as usize) {
        Some(shard) if shard.key.shard_index == index => Some(shard.owner),
        // A shard the store lacked when the stream was published: the catalog still knows.
        _ => stream
            .record
            .shards
            .iter()
            .find(|s| s.index == index)
            .map(|s| s.owner),
    }
}

/// The members of a request that decide where it is served.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingNames<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    stream_name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "borrowed_text",
        rename = "StreamARN"
    )]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "borrowed_text",
        rename = "ConsumerARN"
    )]
    consumer_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    shard_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    shard_iterator: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    partition_key: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    explicit_hash_key: Option<Cow<'a, str>>,
}

/// Where records of a stream under the AUTO distribution strategy are stored, as seen from
/// pod `here`: here, in the open shards this pod owns, or whole at the lowest pod that owns
/// open shards when this one has none. No record crosses pods otherwise.
pub fn auto_route(stream: &LiveStream, here: u32) -> Route {
    let owners = stream.open_shard_owners();
    match owners.first() {
        Some(_) if owners.contains(&here) => Route::Here,
        Some(&pod) => Route::Pod(pod),
        None => Route::Here,
    }
}

/// Decides where `operation` with `body` is served, as seen from pod `here`.
/// Catalog changes go to pod 0; records, iterators and subscriptions to the shard's owner;
/// a request this pod cannot resolve (a stream its replica does not have yet) to pod 0;
/// everything else is answered here. A malformed request is served here, which refuses it.
pub fn route(broker: &Broker, here: u32, operation: Operation, body: Body<'_>) -> Route {
    use Operation::*;
    let home_unless_here = if here == HOME {
        Route::Here
    } else {
        Route::Pod(HOME)
    };
    if changes_catalog(operation) || served_at_home(operation) {
        return home_unless_here;
    }
    // Only the members that name a stream, shard or key are read: record data is skipped, not
    // copied.
    let names = match body {
        Body::Json(json) => serde_json::from_slice::<RoutingNames<'_>>(json).ok(),
        Body::Cbor(cbor) => super::protocol::cbor::de::from_slice(cbor).ok(),
    };
    let Some(names) = names else {
        return Route::Here;
    };
    let stream_of = |name: Option<&str>, arn: Option<&str>| {
        if name.is_none() && arn.is_none() {
            return None;
        }
        broker.resolve(name, arn).ok()
    };
    let shard_owner = |stream: Option<Arc<LiveStream>>, shard_id: Option<&str>| {
        let Some(stream) = stream else {
            return home_unless_here;
        };
        let owner = shard_id
            .and_then(super::routing::parse_shard_id)
            .and_then(|index| owner_of(&stream, index));
        match owner {
            Some(owner) if owner != here => Route::Pod(owner),
            _ => Route::Here,
        }
    };
    match operation {
        PutRecord => {
            let Some(stream) = stream_of(names.stream_name.as_deref(), names.stream_arn.as_deref())
            else {
                return home_unless_here;
            };
            if stream.distributes_automatically() {
                return auto_route(&stream, here);
            }
            let hash = match names.explicit_hash_key.as_deref() {
                Some(explicit) => super::routing::parse_hash_key(explicit),
                None => names
                    .partition_key
                    .as_deref()
                    .map(super::routing::partition_hash),
            };
            match hash.and_then(|h| stream.route(h)) {
                Some(shard) if shard.owner != here => Route::Pod(shard.owner),
                _ => Route::Here,
            }
        }
        GetShardIterator => shard_owner(
            stream_of(names.stream_name.as_deref(), names.stream_arn.as_deref()),
            names.shard_id.as_deref(),
        ),
        GetRecords => {
            let Some((name, shard)) = names
                .shard_iterator
                .as_deref()
                .and_then(super::iterator::IteratorCodec::peek)
            else {
                return Route::Here;
            };
            match broker.stream(&name) {
                Some(stream) if stream.record.key == shard.stream_key => {
                    match owner_of(&stream, shard.shard_index) {
                        Some(owner) if owner != here => Route::Pod(owner),
                        _ => Route::Here,
                    }
                }
                _ => home_unless_here,
            }
        }
        SubscribeToShard => {
            let stream = names
                .consumer_arn
                .as_deref()
                .and_then(super::ops::consumers::parse_consumer_arn)
                .and_then(|(stream_arn, _, _)| stream_of(None, Some(stream_arn)));
            shard_owner(stream, names.shard_id.as_deref())
        }
        _ => match (names.stream_name.as_deref(), names.stream_arn.as_deref()) {
            (None, None) => Route::Here,
            (name, arn) if broker.resolve(name, arn).is_ok() => Route::Here,
            _ => home_unless_here,
        },
    }
}

/// The refusal of a request that reached, over the internal port, a pod that does not serve
/// it (the sender's replica is older or newer than this pod's): retryable, nothing written.
pub fn misrouted(here: u32, route: Route) -> ApiError {
    let owner = match route {
        Route::Pod(owner) => owner,
        Route::Here => here,
    };
    ApiError::new(
        ErrorKind::ServiceUnavailable,
        format!(
            "Pod {here} does not serve this request (its placement map says pod {owner} does); retry."
        ),
    )
}

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// From a client, on the Kinesis API port.
    Client,
    /// From another pod, on the internal port: served here or refused, never sent on.
    Peer,
}

/// What the cluster made of a request.
pub enum Served {
    /// This pod serves it, as a broker on its own would.
    Here,
    /// A PutRecords split over pods: the merged answer, in the request's protocol.
    Answered(super::ops::Answer),
    /// Another pod's answer, passed through.
    Relayed(http::Response<super::server::ResponseBody>),
}

/// Routes a request of a clustered broker: serves it here, relays it to the pod that
/// serves it, or splits a PutRecords over its records' pods. `body` is the body the
/// operations read; `relayed` the request as the client sent it; `encoding` the protocol
/// a split PutRecords answers in.
pub async fn serve(
    broker: &Arc<Broker>,
    cluster: &Arc<Cluster>,
    entry: Entry,
    body: Body<'_>,
    relayed: relay::Relayed<'_>,
    encoding: super::ops::Encoding,
) -> Result<Served, ApiError> {
    let here = cluster.ordinal;
    let route = if relayed.operation == Operation::PutRecords {
        let caller = relayed.caller;
        match split::put_records(broker, cluster, entry, body, caller, encoding).await? {
            split::Served::Here => Route::Here,
            split::Served::Elsewhere(pod) => Route::Pod(pod),
            split::Served::Answered(answer) => return Ok(Served::Answered(answer)),
        }
    } else {
        route(broker, here, relayed.operation, body)
    };
    match (route, entry) {
        (Route::Here, _) => Ok(Served::Here),
        // The refusal's answer catches this pod up first (`server::handle`).
        (Route::Pod(_), Entry::Peer) => Err(misrouted(here, route)),
        (Route::Pod(owner), Entry::Client) => {
            let answer = relay::relay(cluster, owner, relayed.clone()).await?;
            if answer.status() != http::StatusCode::SERVICE_UNAVAILABLE {
                return Ok(Served::Relayed(answer));
            }
            // The owner refused before writing anything: its placement map says another pod
            // serves the request, or has no open shard for it yet (a reshard's children),
            // and it caught up with pod 0 before it answered (`server::handle`). With this
            // pod's map caught up too, the request goes once more where it now routes, the
            // same pod included (this pod's map may have been current and the owner's not);
            // after that the refusal is the answer, and the client retries.
            replica::refresh(broker, cluster).await;
            match self::route(broker, here, relayed.operation, body) {
                // A change to the catalog is the client's to retry.
                Route::Pod(again) if again == owner && changes_catalog(relayed.operation) => {
                    Ok(Served::Relayed(answer))
                }
                Route::Here => Ok(Served::Here),
                Route::Pod(again) => relay::relay(cluster, again, relayed)
                    .await
                    .map(Served::Relayed),
            }
        }
    }
}

/// Places the shards of a new stream over the cluster's pods, by [`placement::place`] over
/// the load `catalog` shows; a broker on its own keeps every shard.
pub fn place_new_stream(
    broker: &Broker,
    catalog: &crate::broker::catalog::Catalog,
    record: &mut crate::broker::catalog::StreamRecord,
) {
    let Some(cluster) = broker.cluster.get() else {
        return;
    };
    let loads = placement::loads(
        catalog,
        cluster.placement_pods(catalog),
        &cluster.rates.current(std::time::Instant::now()),
    );
    let owners = placement::place(record.shards.len(), &loads, &[]);
    for (shard, owner) in record.shards.iter_mut().zip(owners) {
        shard.owner = owner;
    }
}

/// Places a reshard's children (`added`) by [`placement::place`], the parents (`closed`)
/// staying where they are (their owners close them, see [`closing`]).
pub fn place_reshard(
    broker: &Broker,
    catalog: &crate::broker::catalog::Catalog,
    record: &mut crate::broker::catalog::StreamRecord,
    closed: &[u32],
    added: &[u32],
) {
    let Some(cluster) = broker.cluster.get() else {
        return;
    };
    let parents: Vec<u32> = closed
        .iter()
        .filter_map(|index| record.shards.iter().find(|s| s.index == *index))
        .map(|s| s.owner)
        .collect();
    let loads = placement::loads(
        catalog,
        cluster.placement_pods(catalog),
        &cluster.rates.current(std::time::Instant::now()),
    );
    let owners = placement::place(added.len(), &loads, &parents);
    for (index, owner) in added.iter().zip(owners) {
        if let Some(shard) = record.shards.iter_mut().find(|s| s.index == *index) {
            shard.owner = owner;
        }
    }
}

/// Refuses to serve `shard` here when another pod owns it (a request routed under an older
/// placement map): its log here is empty, and reading it would answer wrong data.
pub fn check_owned(
    broker: &Broker,
    shard: &crate::broker::state::LiveShard,
) -> Result<(), ApiError> {
    match broker.cluster.get() {
        Some(cluster) if shard.owner != cluster.ordinal => {
            Err(misrouted(cluster.ordinal, Route::Pod(shard.owner)))
        }
        _ => Ok(()),
    }
}

/// Pod 0 of a two-pod cluster whose pod 1 listens at `address` (tests call pod 1 only).
#[cfg(test)]
pub(crate) fn pod_0_with_pod_1_at(address: std::net::SocketAddr) -> Cluster {
    let peers = Peers::Listed(vec![
        "http://127.0.0.1:9".parse().expect("url"),
        format!("http://{address}").parse().expect("url"),
    ]);
    let tls = crate::http1::client_tls_from_file(None).expect("tls");
    Cluster::new(0, peers, tls)
}
