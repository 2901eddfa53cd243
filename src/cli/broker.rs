//! `brook broker`: its options and how they become a running broker.

use std::path::PathBuf;

use crate::{LogFormat, init_logging};

/// When a write is acknowledged.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// After the journal is synced to disk.
    Fsync,
    /// After the write reaches the operating system.
    Async,
}

#[derive(clap::Args, Debug)]
pub(crate) struct BrokerArgs {
    /// Address of the Kinesis API.
    #[arg(long, env = "BROOK_LISTEN", default_value = "127.0.0.1:4567")]
    listen: std::net::SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "BROOK_METRICS_LISTEN", default_value = "127.0.0.1:9100")]
    metrics_listen: std::net::SocketAddr,
    /// Where streams are stored.
    #[arg(long, env = "BROOK_DATA_DIR", default_value = "brook-data")]
    data_dir: PathBuf,
    /// When writes are acknowledged.
    #[arg(long, env = "BROOK_DURABILITY", value_enum, default_value_t = Durability::Fsync)]
    durability: Durability,
    /// Region in stream ARNs.
    #[arg(long, env = "BROOK_REGION", default_value = "us-east-1")]
    region: String,
    /// Account id in stream ARNs.
    #[arg(long, env = "BROOK_ACCOUNT", default_value = "000000000000")]
    account: String,
    /// Write quota per shard, bytes per second.
    #[arg(long, env = "BROOK_WRITE_BYTES_PER_SECOND", default_value_t = 1024 * 1024)]
    write_bytes_per_second: u64,
    /// Write quota per shard, records per second.
    #[arg(long, env = "BROOK_WRITE_RECORDS_PER_SECOND", default_value_t = 1000)]
    write_records_per_second: u64,
    /// Read quota per shard, bytes per second.
    #[arg(long, env = "BROOK_READ_BYTES_PER_SECOND", default_value_t = 2 * 1024 * 1024)]
    read_bytes_per_second: u64,
    /// Read quota per shard, GetRecords calls per second.
    #[arg(long, env = "BROOK_READ_CALLS_PER_SECOND", default_value_t = 5)]
    read_calls_per_second: u64,
    /// Measure quotas but never refuse a request for them.
    #[arg(long, env = "BROOK_NO_QUOTAS")]
    no_quotas: bool,
    /// How long a new or deleted stream stays CREATING or DELETING, in milliseconds.
    #[arg(long, default_value_t = 500)]
    stream_transition_ms: u64,
    /// The shortest DataFreshnessInSeconds a channel may have. Kinesis allows 300 to 900;
    /// a lower floor is for tests and demos.
    #[arg(long, env = "BROOK_CHANNEL_MIN_FRESHNESS_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=900))]
    channel_min_freshness_seconds: u32,
    /// Most open shards over all streams.
    #[arg(long, default_value_t = 10_000)]
    shard_limit: u32,
    /// Seconds between checkpoints of the journal into the shards' segments.
    #[arg(long, default_value_t = 30)]
    checkpoint_seconds: u64,
    /// Log format.
    #[arg(long, env = "BROOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// SigV4 credentials: a folder with one file per access key id (a mounted Secret) or a
    /// file of ACCESS_KEY_ID=SECRET lines. Without it the API accepts any signature.
    #[arg(long, env = "BROOK_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// PEM certificate chain for TLS on the API port (with --tls-key); reloaded when it changes.
    #[arg(long, env = "BROOK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BROOK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often ON_DEMAND streams measure their write demand, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    on_demand_interval_ms: u64,
    /// How long demand must hold before an ON_DEMAND stream adds shards, in seconds (0: at
    /// once, as Kinesis on-demand does).
    #[arg(long, default_value_t = 0)]
    on_demand_scale_up_seconds: u64,
    /// How long demand must stay low before an ON_DEMAND stream removes shards, in seconds.
    #[arg(long, default_value_t = 900)]
    on_demand_scale_down_seconds: u64,
    /// Share of each shard's write quota an ON_DEMAND stream aims to fill, in percent (50:
    /// room for twice the demand, as Kinesis on-demand absorbs twice the previous peak).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    on_demand_target_percent: u32,
    /// Per-stream quota overrides: a YAML or JSON map of stream name to any of
    /// writeBytesPerSecond, writeRecordsPerSecond, readBytesPerSecond, readCallsPerSecond, enforce.
    #[arg(long, env = "BROOK_STREAM_QUOTAS")]
    stream_quotas: Option<PathBuf>,
    /// The Kubernetes resource that configures this broker, such as `Stream shop/orders`:
    /// control-plane calls (CreateStream, UpdateShardCount, ...) are then refused unless signed
    /// with an admin key. Set by the operator.
    #[arg(long, env = "BROOK_MANAGED_BY", requires = "admin_credentials")]
    managed_by: Option<String>,
    /// The operator's admin keys, in the formats of --credentials.
    #[arg(long, env = "BROOK_ADMIN_CREDENTIALS")]
    admin_credentials: Option<PathBuf>,
    /// Run Kinesis channels (CreateChannel) on a managed broker too: the operator sets it for
    /// a Stream with spec.channels. A broker on its own always runs them.
    #[arg(long, env = "BROOK_CHANNELS")]
    channels: bool,
    /// S3-compatible endpoint (such as http://127.0.0.1:9000) that the Firehose API's
    /// delivery streams write to; AWS S3 when absent. Keys from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "BROOK_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The S3 Tables API that channels to Apache Iceberg tables commit through; the
    /// --s3-endpoint when absent and that is set, else AWS's.
    #[arg(long, env = "BROOK_S3_TABLES_ENDPOINT")]
    s3_tables_endpoint: Option<String>,
    /// The Glue Schema Registry that channels to Iceberg tables read record schemas from;
    /// the --s3-endpoint when absent and that is set, else AWS's.
    #[arg(long, env = "BROOK_GLUE_ENDPOINT")]
    glue_endpoint: Option<String>,
    /// After SIGTERM, seconds to keep serving with /readyz failing before draining, so
    /// that load balancers stop sending new connections first (a second signal stops at once).
    #[arg(long, env = "BROOK_SHUTDOWN_DELAY_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=300))]
    shutdown_delay_seconds: u32,
    /// This pod's name (a StatefulSet pod's, such as `orders-2`): its ordinal in the cluster
    /// when --pod-ordinal is not given.
    #[arg(long, env = "BROOK_POD_NAME")]
    pod_name: Option<String>,
    /// Internal URLs of every pod of the stream's cluster, by ordinal, comma-separated (such
    /// as http://orders-0.orders-brokers:4568,...), or one URL with `{ordinal}` in it for a
    /// StatefulSet whose size the operator sets: the stream's shards are spread over them.
    #[arg(long, env = "BROOK_CLUSTER_PEERS", value_delimiter = ',')]
    cluster_peers: Vec<String>,
    /// This pod's StatefulSet ordinal in --cluster-peers; by default the number that ends
    /// --pod-name (`orders-2` is pod 2).
    #[arg(long, env = "BROOK_POD_ORDINAL")]
    pod_ordinal: Option<u32>,
    /// PEM certificates that sign the other pods' certificates (with --tls-cert the internal
    /// port speaks TLS, and --cluster-peers are https:// URLs); the system's roots when absent.
    #[arg(long, env = "BROOK_CLUSTER_CA")]
    cluster_ca: Option<PathBuf>,
    /// Address of the internal port other pods of the cluster call.
    #[arg(long, env = "BROOK_CLUSTER_LISTEN", default_value = "0.0.0.0:4568")]
    cluster_listen: std::net::SocketAddr,
    /// Seconds this pod waits for another pod of the cluster to answer (a write forwarded to
    /// its shard's owner, a relayed read, the catalog) before it takes that pod for
    /// unreachable: the records meant for it fail with retryable errors rather than holding
    /// the client's call.
    #[arg(long, env = "BROOK_CLUSTER_ANSWER_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    cluster_answer_timeout_seconds: u64,
    /// How long a SubscribeToShard call lasts, in seconds (Kinesis: 300).
    #[arg(long, default_value_t = 300, hide = true)]
    subscription_seconds: u64,
    /// Accept the test hooks on the metrics port: POST /debug/advance-clock?ms=N (for tests of
    /// retention) and /debug/hold-catalog-follow (for tests of a pod with a stale map).
    #[arg(long, hide = true)]
    test_clock: bool,
    /// Abort between closing a reshard's parents and saving it, as a crash there would (for
    /// tests of that failure path).
    #[arg(long, hide = true)]
    crash_before_reshard_save: bool,
    /// Abort on pod 0 once a moved shard's copy is complete, before its new owner is saved,
    /// as a crash there would (for tests of that failure path).
    #[arg(long, hide = true)]
    crash_before_move_named: bool,
    /// Abort right after a channel's commit to its Iceberg table, before the delivery's
    /// progress is saved, as a crash there would (for tests of that failure path).
    #[arg(long, hide = true)]
    crash_after_table_commit: bool,
}

pub(crate) fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let ordinal = args.pod_ordinal.or_else(|| {
        args.pod_name
            .as_deref()
            .and_then(|name| name.rsplit_once('-'))
            .and_then(|(_, n)| n.parse().ok())
    });
    anyhow::ensure!(
        args.cluster_peers.is_empty() || ordinal.is_some(),
        "--cluster-peers needs --pod-ordinal, or a --pod-name that ends in the pod's ordinal"
    );
    let cluster = match ordinal {
        Some(ordinal) if !args.cluster_peers.is_empty() => {
            let peers = brook::broker::cluster::Peers::parse(&args.cluster_peers)
                .map_err(|e| anyhow::anyhow!("--cluster-peers: {e}"))?;
            if let Some(pods) = peers.listed() {
                anyhow::ensure!(
                    ordinal < pods,
                    "--pod-ordinal {ordinal} is not a pod of --cluster-peers ({pods} pods)"
                );
            }
            Some(brook::broker::ClusterOptions {
                ordinal,
                peers,
                ca: args.cluster_ca.clone(),
                listen: args.cluster_listen,
                answer_limit: std::time::Duration::from_secs(args.cluster_answer_timeout_seconds),
            })
        }
        _ => None,
    };
    let options = brook::broker::BrokerOptions {
        cluster,
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        data_dir: args.data_dir,
        fsync: args.durability == Durability::Fsync,
        region: args.region,
        account: args.account,
        quotas: brook::broker::limits::QuotaSettings {
            write_bytes_per_second: args.write_bytes_per_second,
            write_records_per_second: args.write_records_per_second,
            read_bytes_per_second: args.read_bytes_per_second,
            read_calls_per_second: args.read_calls_per_second,
            enforce: !args.no_quotas,
        },
        transition_ms: args.stream_transition_ms,
        shard_limit: args.shard_limit,
        checkpoint_interval: std::time::Duration::from_secs(args.checkpoint_seconds.max(1)),
        test_clock: args.test_clock,
        shutdown_delay: std::time::Duration::from_secs(u64::from(args.shutdown_delay_seconds)),
        crash_before_reshard_save: args.crash_before_reshard_save,
        crash_before_move_named: args.crash_before_move_named,
        crash_after_table_commit: args.crash_after_table_commit,
        channel_min_freshness_s: args.channel_min_freshness_seconds,
        credentials: args.credentials,
        managed_by: args.managed_by,
        channels: args.channels,
        admin_credentials: args.admin_credentials,
        s3_endpoint: args.s3_endpoint,
        tables_endpoint: args.s3_tables_endpoint,
        glue_endpoint: args.glue_endpoint,
        tls: args.tls_cert.zip(args.tls_key),
        stream_quotas: args.stream_quotas,
        subscription_lifetime: std::time::Duration::from_secs(args.subscription_seconds.max(1)),
        on_demand: brook::broker::on_demand::OnDemandSettings {
            interval: std::time::Duration::from_millis(args.on_demand_interval_ms.max(10)),
            scale_up_window: std::time::Duration::from_secs(args.on_demand_scale_up_seconds),
            scale_down_window: std::time::Duration::from_secs(args.on_demand_scale_down_seconds),
            target_utilization_percent: args.on_demand_target_percent,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(brook::broker::run(options))?;
    Ok(())
}
