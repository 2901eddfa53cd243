//! `brook broker`: the Kinesis Data Streams API over durable per-shard logs.
//!
//! [`run`] recovers the data directory, serves the API and the observability port, and on
//! SIGTERM drains in-flight requests and checkpoints so nothing acknowledged is lost and
//! nothing is left to replay.

pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod iterator;
pub mod limits;
pub mod metrics;
pub mod on_demand;
pub mod ops;
pub mod policy;
pub mod protocol;
pub mod queue;
pub mod reshard;
pub mod routing;
pub mod server;
pub mod shard;
pub mod state;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use catalog::Catalog;
use iterator::IteratorCodec;
use limits::QuotaSettings;
use shard::fs::{FileSystem, RealFs};
use shard::{Clock, Store, StoreOptions};
use state::{ApiSettings, Broker};

/// Why the broker could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The data directory could not be prepared or read.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// The TLS certificate could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] auth::CredentialsError),
    /// Storage could not be recovered or shut down.
    #[error(transparent)]
    Store(#[from] shard::StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {message}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The cluster settings do not fit together.
    #[error("cluster: {0}")]
    Cluster(String),
}

/// A broker that is one pod of a stream's cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This pod's StatefulSet ordinal.
    pub ordinal: u32,
    /// Where the pods are reached.
    pub peers: cluster::Peers,
    /// PEM certificates that sign the other pods' certificates, for `https://` peers (the
    /// system's roots when absent).
    pub ca: Option<PathBuf>,
    /// Address of this pod's internal port.
    pub listen: SocketAddr,
    /// How long this pod waits for another pod to answer before taking it for unreachable.
    pub answer_limit: std::time::Duration,
}

/// Everything `brook broker` can be told.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The stream's cluster, when this broker is one of its pods.
    pub cluster: Option<ClusterOptions>,
    /// Address of the Kinesis API.
    pub listen: SocketAddr,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub metrics_listen: SocketAddr,
    /// Where streams are stored.
    pub data_dir: PathBuf,
    /// Acknowledge writes only once the journal is synced.
    pub fsync: bool,
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs.
    pub account: String,
    /// Per-shard quotas.
    pub quotas: QuotaSettings,
    /// How long a stream stays CREATING or DELETING.
    pub transition_ms: u64,
    /// Most open shards over all streams.
    pub shard_limit: u32,
    /// Longest time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Accept `POST /debug/advance-clock` on the metrics port (tests only).
    pub test_clock: bool,
    /// After SIGTERM, how long the broker keeps serving with `/readyz` failing before it
    /// stops taking connections and drains.
    pub shutdown_delay: Duration,
    /// Stop the process between closing a reshard's parents and saving it (tests only).
    pub crash_before_reshard_save: bool,
    /// Stop pod 0 once a moved shard is copied, before its new owner is saved (tests only).
    pub crash_before_move_named: bool,
    /// Abort right after a channel's table commit, before its progress is saved (tests).
    pub crash_after_table_commit: bool,
    /// SigV4 credentials (a folder of key-id files or an `id=secret` file); open when absent.
    pub credentials: Option<PathBuf>,
    /// PEM certificate chain and private key: the API then speaks TLS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How ON_DEMAND streams rescale themselves.
    pub on_demand: on_demand::OnDemandSettings,
    /// A YAML or JSON file of per-stream quota overrides.
    pub stream_quotas: Option<PathBuf>,
    /// How long a SubscribeToShard call lasts.
    pub subscription_lifetime: Duration,
    /// The Kubernetes resource that owns the broker's configuration, such as
    /// `Stream shop/orders`: control-plane calls are refused unless signed with an admin key.
    pub managed_by: Option<String>,
    /// Run channels on a managed broker too (a broker on its own always does).
    pub channels: bool,
    /// The operator's admin keys (same formats as `credentials`), reloaded like them.
    pub admin_credentials: Option<PathBuf>,
    /// The S3-compatible endpoint the Firehose API's delivery streams write to; AWS S3 when
    /// absent (credentials from the standard AWS environment variables).
    pub s3_endpoint: Option<String>,
    /// The S3 Tables API channels commit their tables through; the S3 endpoint when absent
    /// and one is set (an S3-compatible server serving both), else AWS's.
    pub tables_endpoint: Option<String>,
    /// The Glue Schema Registry channels read record schemas from; the S3 endpoint when
    /// absent and one is set, else AWS's.
    pub glue_endpoint: Option<String>,
    /// The shortest DataFreshnessInSeconds a channel may have (Kinesis: 300).
    pub channel_min_freshness_s: u32,
}

fn data_dir_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
    move |e| BrokerError::DataDir {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Loads the iterator-signing key of the data directory, creating it on first start.
fn iterator_key(fs: &dyn FileSystem, dir: &std::path::Path) -> Result<[u8; 32], BrokerError> {
    let path = dir.join("iterator.key");
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| BrokerError::DataDir {
        path: path.display().to_string(),
        message: format!("no randomness for the iterator key: {e}"),
    })?;
    fs.write_atomic(&path, &key)
        .map_err(data_dir_error(&path))?;
    Ok(key)
}

/// Opens the data directory and builds the broker, finishing deletions a crash interrupted.
pub fn open(options: &BrokerOptions, fs: Arc<dyn FileSystem>) -> Result<Broker, BrokerError> {
    let dir = &options.data_dir;
    // Its entry in its parent is synced too: a new data directory a power cut forgets would
    // take every acknowledged record with it.
    shard::fs::create_dir_durably(dir).map_err(data_dir_error(dir))?;
    let mut catalog = Catalog::load(dir)?;
    let before = catalog.streams.len();
    catalog.streams.retain(|_, s| s.deleting_since_ms.is_none());
    // Consumers and queues being deleted go too (their files with the queues' state are
    // removed once the broker sees they are in no stream).
    let mut finished = catalog.streams.len() != before;
    for stream in catalog.streams.values_mut() {
        let before = (
            stream.consumers.len(),
            stream.queues.len(),
            stream.channels.len(),
        );
        stream.consumers.retain(|c| c.deleting_since_ms.is_none());
        stream.queues.retain(|q| q.deleting_since_ms.is_none());
        stream.channels.retain(|c| c.deleting_since_ms.is_none());
        finished |= before
            != (
                stream.consumers.len(),
                stream.queues.len(),
                stream.channels.len(),
            );
    }
    if finished {
        catalog.save(fs.as_ref(), dir)?;
    }
    let shards: Vec<_> = catalog
        .streams
        .values()
        .flat_map(|s| s.shard_keys())
        .collect();
    let retention: HashMap<u32, u64> = catalog
        .streams
        .values()
        .map(|s| (s.key, s.retention_ms()))
        .collect();
    let store_options = StoreOptions {
        fsync: options.fsync,
        checkpoint_interval: options.checkpoint_interval,
        ..StoreOptions::default()
    };
    let (store, report) = Store::open(
        dir,
        fs.clone(),
        store_options,
        Clock::default(),
        &shards,
        retention,
    )?;
    if report.dropped_bytes > 0 {
        tracing::warn!(?report, "recovered with a torn journal tail");
    }
    let stream_quotas = match &options.stream_quotas {
        Some(path) => limits::load_overrides(path).map_err(|message| BrokerError::DataDir {
            path: path.display().to_string(),
            message,
        })?,
        None => HashMap::new(),
    };
    let settings = ApiSettings {
        region: options.region.clone(),
        account: options.account.clone(),
        quotas: options.quotas,
        transition_ms: options.transition_ms,
        shard_limit: options.shard_limit,
        stream_quotas,
        subscription_lifetime: options.subscription_lifetime,
        managed_by: options.managed_by.clone(),
        crash_before_reshard_save: options.crash_before_reshard_save,
        crash_before_move_named: options.crash_before_move_named,
        channel_min_freshness_s: options.channel_min_freshness_s,
    };
    let key = iterator_key(fs.as_ref(), dir)?;
    Ok(Broker::new(
        settings,
        store,
        catalog,
        fs,
        IteratorCodec::new(key),
    ))
}

pub(crate) async fn bind(address: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| BrokerError::Listen {
            address,
            message: e.to_string(),
        })
}

/// Runs the broker until SIGTERM or Ctrl-C, then shuts down cleanly.
pub async fn run(options: BrokerOptions) -> Result<(), BrokerError> {
    let broker = Arc::new(open(&options, Arc::new(RealFs))?);
    // Keys are in place before the first request is served; unreadable keys stop the start
    // rather than leave the API open.
    if let Some(path) = &options.credentials {
        broker.set_credentials(Some(auth::Credentials::load(path)?));
    }
    if let Some(path) = &options.admin_credentials {
        broker.set_admin_credentials(Some(auth::Credentials::load(path)?));
    }
    let api = bind(options.listen).await?;
    let observability = bind(options.metrics_listen).await?;
    let api_address = api.local_addr().map_err(|e| BrokerError::Listen {
        address: options.listen,
        message: e.to_string(),
    })?;
    let metrics_address = observability
        .local_addr()
        .map_err(|e| BrokerError::Listen {
            address: options.metrics_listen,
            message: e.to_string(),
        })?;
    // A managed broker runs the delivery workers only for channels its Stream allows; its
    // Firehose API stays closed (DeliveryStream resources deliver in Kubernetes).
    if options.managed_by.is_none() || options.channels {
        start_firehose(&broker, &options, api_address).await?;
        ops::channels::run_channels(&broker);
    }
    let (stop, stopped) = watch::channel(false);
    let (ready_tx, ready) = watch::channel(true);

    let tls = match &options.tls {
        Some((cert, key)) => {
            let reloading = Arc::new(tls::ReloadingTls::load(cert.clone(), key.clone())?);
            tokio::spawn(reloading.clone().watch());
            Some(reloading)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let internal_tls = tls.clone();
    let api_broker = broker.clone();
    let api_task = tokio::spawn(server::serve(
        api,
        tls,
        move |request| server::handle_kinesis(api_broker.clone(), request),
        stopped.clone(),
    ));
    let obs_broker = broker.clone();
    let test_clock = options.test_clock;
    let obs_task = tokio::spawn(server::serve(
        observability,
        None,
        move |request| {
            server::handle_observability(obs_broker.clone(), ready.clone(), test_clock, request)
        },
        stopped.clone(),
    ));
    if let Some(path) = options.credentials.clone() {
        tokio::spawn(reload_credentials(
            broker.clone(),
            path,
            "clients",
            Broker::set_credentials,
        ));
    }
    if let Some(path) = options.admin_credentials.clone() {
        tokio::spawn(reload_credentials(
            broker.clone(),
            path,
            "admin",
            Broker::set_admin_credentials,
        ));
    }
    if let Some(owner) = &options.managed_by {
        tracing::info!(
            managed_by = %owner,
            "managed broker: control-plane calls need the operator's admin key"
        );
    }
    let is_home = match &options.cluster {
        Some(settings) => start_cluster(&broker, settings, internal_tls, stopped.clone()).await?,
        None => true,
    };
    // The catalog changes at pod 0 only; the other pods follow it.
    if is_home {
        tokio::spawn(on_demand::run(broker.clone(), options.on_demand));
    }
    match &options.credentials {
        Some(path) => tracing::info!(
            api = %api_address,
            metrics = %metrics_address,
            data_dir = %options.data_dir.display(),
            fsync = options.fsync,
            credentials = %path.display(),
            "broker started; every request must carry a valid SigV4 signature"
        ),
        None => tracing::warn!(
            api = %api_address,
            metrics = %metrics_address,
            data_dir = %options.data_dir.display(),
            fsync = options.fsync,
            "broker started without credentials: requests are accepted whatever signs them (pass --credentials to require SigV4)"
        ),
    }

    // The first line on stdout tells scripts and tests where the broker listens; it comes
    // after the start-up log so whoever reads it can rely on the log being written.
    println!(
        "brook broker listening on {scheme}://{api_address} (metrics on http://{metrics_address}/metrics)"
    );
    wait_for_signal().await;
    let _ = ready_tx.send(false);
    serve_on_while_steered_away(options.shutdown_delay).await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop.send(true);
    let _ = api_task.await;
    let _ = obs_task.await;
    broker.store.shutdown().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Joins the stream's cluster: serves the internal port (with the API port's TLS, when it
/// has TLS) and, on pods other than pod 0, follows pod 0's catalog. Returns whether this pod
/// is pod 0.
async fn start_cluster(
    broker: &Arc<Broker>,
    settings: &ClusterOptions,
    tls: Option<Arc<tls::ReloadingTls>>,
    stopped: watch::Receiver<bool>,
) -> Result<bool, BrokerError> {
    if tls.is_some() && !settings.peers.all_tls() {
        return Err(BrokerError::Cluster(
            "with --tls-cert the internal port speaks TLS too: give --cluster-peers as https:// URLs".to_owned(),
        ));
    }
    let client_tls = crate::http1::client_tls_from_file(settings.ca.as_deref())
        .map_err(|e| BrokerError::Cluster(format!("--cluster-ca {e}")))?;
    let mut cluster = cluster::Cluster::new(settings.ordinal, settings.peers.clone(), client_tls);
    cluster.answer_limit = settings.answer_limit;
    let cluster = Arc::new(cluster);
    let _ = broker.cluster.set(cluster.clone());
    broker.metrics.register(cluster.collectors());
    let internal = bind(settings.listen).await?;
    let peer_broker = broker.clone();
    tokio::spawn(server::serve(
        internal,
        tls,
        move |request| server::handle_peer(peer_broker.clone(), request),
        stopped,
    ));
    if cluster.is_home() {
        // A new epoch at every start: an owner still holding a parent closed for a reshard
        // this pod did not save before it stopped sees the parent open in a newer catalog,
        // and opens it again.
        let mut catalog = broker.catalog.lock().await;
        broker
            .save(&mut catalog)
            .map_err(|e| BrokerError::DataDir {
                path: broker.store.dir().display().to_string(),
                message: e.message,
            })?;
    } else {
        let saved = broker.catalog.lock().await.clone();
        if let Err(error) = cluster::moving::forget_moved_away(broker, &saved).await {
            tracing::error!(%error, "could not forget the shards moved off this pod");
        }
        cluster::replica::refresh(broker, &cluster).await;
    }
    tokio::spawn(cluster::replica::follow(broker.clone(), cluster.clone()));
    tracing::info!(
        ordinal = settings.ordinal,
        pods = ?settings.peers.listed(),
        internal = %settings.listen,
        "cluster pod started"
    );
    Ok(cluster.is_home())
}

/// Starts the Firehose API of a standalone broker: its delivery workers read this broker's
/// streams over loopback, signing with a key made for them at each start.
async fn start_firehose(
    broker: &Arc<Broker>,
    options: &BrokerOptions,
    api_address: SocketAddr,
) -> Result<(), BrokerError> {
    let mut secret = [0u8; 24];
    getrandom::fill(&mut secret).map_err(|e| BrokerError::DataDir {
        path: options.data_dir.display().to_string(),
        message: format!("no randomness for the delivery workers' key: {e}"),
    })?;
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let key_id = "brook-delivery-internal".to_owned();
    let _ = broker
        .internal_credentials
        .set(Arc::new(auth::Credentials::from_pairs([(
            key_id.clone(),
            secret.clone(),
        )])));
    let host = if api_address.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        api_address.ip()
    };
    let settings = crate::delivery::control::ControlSettings {
        dir: options.data_dir.join("firehose"),
        source_address: SocketAddr::new(host, api_address.port()).to_string(),
        source_key: (key_id, secret),
        s3_endpoint: options.s3_endpoint.clone(),
        tables_endpoint: options
            .tables_endpoint
            .clone()
            .or_else(|| options.s3_endpoint.clone()),
        glue_endpoint: options
            .glue_endpoint
            .clone()
            .or_else(|| options.s3_endpoint.clone()),
        crash_after_table_commit: options.crash_after_table_commit,
        region: options.region.clone(),
        account: options.account.clone(),
    };
    let firehose = crate::delivery::control::Firehose::open(settings)
        .await
        .map_err(|e| BrokerError::DataDir {
            path: options.data_dir.join("firehose").display().to_string(),
            message: e.to_string(),
        })?;
    let _ = broker.firehose.set(firehose);
    Ok(())
}

/// How often the credentials are read again (a Kubernetes Secret mount changes within a minute).
const CREDENTIALS_RELOAD: Duration = Duration::from_secs(5);

/// Reloads the credentials every few seconds, so a rotated Kubernetes Secret takes effect
/// without a restart: a removed key is revoked, an emptied source revokes every key, and only
/// a source that cannot be read keeps the last good keys (said in a log line and a metric).
async fn reload_credentials(
    broker: Arc<Broker>,
    path: PathBuf,
    source: &'static str,
    install: fn(&Broker, Option<auth::Credentials>),
) {
    let mut ticks = tokio::time::interval(CREDENTIALS_RELOAD);
    loop {
        ticks.tick().await;
        match auth::Credentials::load(&path) {
            Ok(credentials) => install(&broker, Some(credentials)),
            Err(error) => {
                broker.metrics.credentials_reload_failed(source);
                tracing::warn!(%error, source, "credentials unreadable: serving the last good keys");
            }
        }
    }
}

/// After SIGTERM, with readiness already failing: keeps serving for `delay`, or until a
/// second signal. Kubernetes takes a terminating pod out of its Services' endpoints while it
/// sends SIGTERM; until every node's proxy has caught up, new connections still arrive.
pub(crate) async fn serve_on_while_steered_away(delay: Duration) {
    if delay.is_zero() {
        return;
    }
    tracing::info!(
        seconds = delay.as_secs(),
        "not ready: serving on while clients are steered away (a second signal stops now)"
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = wait_for_signal() => {}
    }
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
