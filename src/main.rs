//! The `brook` command line: one binary, a subcommand per role.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod cli {
    pub(crate) mod broker;
}

use cli::broker::{BrokerArgs, run_broker};

/// Brook: the Kinesis Data Streams API, self-hosted on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "brook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the Kinesis Data Streams API from a local data directory.
    Broker(Box<BrokerArgs>),
    /// Print the CustomResourceDefinitions as YAML, one document each, or write them to a folder.
    Crd {
        /// Write one file per CRD into this folder instead of printing them.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Measure a broker on loopback: PutRecords and GetRecords throughput, PutRecord latency.
    Bench(BenchArgs),
    /// Compare Brook with the Kinesis emulators installed by `make bench-compare`.
    BenchCompare(CompareArgs),
    /// Serve a no-op Kinesis API, or one that only syncs each put (the comparison's ceilings).
    #[command(hide = true)]
    BenchNoop {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Write each put's data to a journal here and answer once it is synced.
        #[arg(long)]
        journal_dir: Option<PathBuf>,
        /// How the journal syncs.
        #[arg(long, value_enum, default_value = "group")]
        sync: brook::bench::noop::SyncMode,
    },
    /// Reconcile Stream and Consumer resources into running brokers (in a cluster, or with
    /// the kubeconfig of KUBECONFIG).
    Operator(OperatorArgs),
    /// Print a plain-manifest install of the operator (namespace, RBAC, Deployment).
    Install {
        /// Namespace the operator runs in.
        #[arg(long, default_value = "brook-system")]
        namespace: String,
        /// Image of the operator and, by default, of the brokers.
        #[arg(long, default_value_t = brook::operator::resources::BrokerDefaults::for_this_version().image)]
        image: String,
    },
    /// Run one DeliveryStream: read a stream or take direct puts, buffer, and deliver to S3 or
    /// an HTTP endpoint (what the operator runs per DeliveryStream).
    Delivery(Box<DeliveryArgs>),
    /// One Kinesis endpoint for every stream of a namespace: routes each request to the
    /// brokers of the stream it names (from the namespace's Stream resources, or --route).
    Gateway(GatewayArgs),
    /// Print Brook's version.
    Version,
    /// The shard autoscaler's decision, off any cluster.
    Autoscale {
        #[command(subcommand)]
        command: AutoscaleCommand,
    },
    /// Write every generated file (crds/, deploy/operator.yaml, the chart's generated parts)
    /// under a repository root.
    #[command(hide = true)]
    Generate {
        /// The repository's root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// GET an http:// URL and exit 0 on a 2xx answer (the image's health check and `helm test`).
    Probe {
        /// The URL, such as http://brook-operator:9090/readyz.
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout_seconds: u64,
    },
}

#[derive(clap::Args, Debug)]
struct DeliveryArgs {
    /// The DeliveryStream's name.
    #[arg(long, env = "BROOK_DELIVERY_NAME")]
    name: String,
    /// Its version (the resource's generation), part of every object name.
    #[arg(long, env = "BROOK_DELIVERY_VERSION", default_value_t = 1)]
    version: i64,
    /// The DeliveryStream's spec, as JSON or YAML.
    #[arg(long, env = "BROOK_DELIVERY_SPEC", conflicts_with = "spec_file")]
    spec: Option<String>,
    /// A file holding the spec, as JSON or YAML.
    #[arg(long)]
    spec_file: Option<PathBuf>,
    /// Folder for progress, the direct-put journal and failed batches.
    #[arg(long, env = "BROOK_DATA_DIR", default_value = "brook-delivery-data")]
    data_dir: PathBuf,
    /// Address of the Firehose API, /metrics, /healthz and /readyz.
    #[arg(long, env = "BROOK_LISTEN", default_value = "127.0.0.1:4573")]
    listen: std::net::SocketAddr,
    /// host:port of the source stream's brokers.
    #[arg(long, env = "BROOK_SOURCE_ENDPOINT")]
    source_endpoint: Option<String>,
    /// PEM certificates the source stream's brokers' certificate is signed by: the brokers
    /// are then reached over TLS.
    #[arg(long, env = "BROOK_SOURCE_CA")]
    source_ca: Option<PathBuf>,
    /// Access key id for the source stream's brokers.
    #[arg(long, env = "BROOK_SOURCE_ACCESS_KEY_ID", hide_env_values = true)]
    source_access_key_id: Option<String>,
    /// Secret access key for the source stream's brokers.
    #[arg(long, env = "BROOK_SOURCE_SECRET_ACCESS_KEY", hide_env_values = true)]
    source_secret_access_key: Option<String>,
    /// Access key id for the bucket (else AWS_ACCESS_KEY_ID).
    #[arg(long, env = "BROOK_S3_ACCESS_KEY_ID", hide_env_values = true)]
    s3_access_key_id: Option<String>,
    /// Secret access key for the bucket (else AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "BROOK_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// Access key sent to the HTTP endpoint as X-Amz-Firehose-Access-Key.
    #[arg(long, env = "BROOK_HTTP_ACCESS_KEY", hide_env_values = true)]
    http_access_key: Option<String>,
    /// MiB of direct puts waiting for delivery past which puts are refused.
    #[arg(long, env = "BROOK_MAX_PENDING_MIB", default_value_t = 512)]
    max_pending_mib: u64,
    /// Log format.
    #[arg(long, env = "BROOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum AutoscaleCommand {
    /// Replay a load trace through the real decision: shards over time, throttled seconds,
    /// shard-hours against the ideal, scale actions.
    Simulate(SimulateArgs),
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// step, diurnal, spiky, ramp or noisy (every one of them when neither this nor
    /// --trace-file is given).
    #[arg(long)]
    trace: Option<String>,
    /// A recorded series: `<second> <records per second>` per line.
    #[arg(long, conflicts_with = "trace")]
    trace_file: Option<PathBuf>,
    /// Seconds between evaluations.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    period_seconds: u64,
    /// Seconds each sample averages over (the PromQL rate window).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    window_seconds: u64,
    /// Target utilization of the write quotas, percent.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u32).range(1..=100))]
    target_percent: u32,
    /// Scale-up stabilization window, seconds.
    #[arg(long, default_value_t = 0)]
    scale_up_seconds: u64,
    /// Scale-down stabilization window, seconds.
    #[arg(long, default_value_t = 300)]
    scale_down_seconds: u64,
    /// Open shards at the start.
    #[arg(long, default_value_t = 4)]
    initial_shards: u32,
    /// Fewest and most shards.
    #[arg(long, default_value_t = 1)]
    min_shards: u32,
    /// Most shards.
    #[arg(long, default_value_t = 64)]
    max_shards: u32,
    /// Bytes per record.
    #[arg(long, default_value_t = 500.0)]
    record_bytes: f64,
    /// Stop the metrics from this second on, as a lost Prometheus would.
    #[arg(long)]
    lose_metrics_after_seconds: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct OperatorArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "BROOK_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    metrics_listen: std::net::SocketAddr,
    /// Reconcile only this namespace's resources (all namespaces when absent).
    #[arg(long, env = "BROOK_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// This replica's name in leader election (the pod name).
    #[arg(long, env = "BROOK_OPERATOR_IDENTITY")]
    identity: Option<String>,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "BROOK_OPERATOR_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Image of the broker pods when a Stream names none.
    #[arg(long, env = "BROOK_BROKER_IMAGE", default_value_t = brook::operator::resources::BrokerDefaults::for_this_version().image)]
    broker_image: String,
    /// Reach every stream's brokers at this host:port instead of its Service's cluster DNS
    /// name (for an operator run outside the cluster through a port-forward).
    #[arg(long, env = "BROOK_BROKER_ADDRESS")]
    broker_address: Option<String>,
    /// Seconds between re-checks of a serving resource against its brokers.
    #[arg(long, env = "BROOK_OPERATOR_RECHECK_SECONDS", default_value_t = 60)]
    recheck_seconds: u64,
    /// Log format.
    #[arg(long, env = "BROOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args, Debug)]
struct GatewayArgs {
    /// Address of the Kinesis API.
    #[arg(long, env = "BROOK_LISTEN", default_value = "0.0.0.0:4567")]
    listen: std::net::SocketAddr,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "BROOK_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: std::net::SocketAddr,
    /// A fixed route, NAME=URL (repeatable): the stream NAME is served by the brokers at URL.
    /// Without any, the routes are the Stream resources of --namespace.
    #[arg(long = "route", value_parser = parse_route)]
    routes: Vec<(String, http::Uri)>,
    /// The namespace whose Streams the gateway serves (the kubeconfig's or the pod's own by
    /// default).
    #[arg(long, env = "BROOK_GATEWAY_NAMESPACE")]
    namespace: Option<String>,
    /// PEM bundle of the CAs that `https://` brokers' certificates are trusted by; the
    /// system's roots when absent.
    #[arg(long, env = "BROOK_GATEWAY_BROKER_CA")]
    broker_ca: Option<PathBuf>,
    /// The gateway's certificate (PEM): clients reach it over HTTPS. Reloaded when it changes.
    #[arg(long, env = "BROOK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "BROOK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// After SIGTERM, seconds to keep serving with /readyz failing before stopping, so that
    /// load balancers stop sending new connections first (a second signal stops at once).
    #[arg(long, env = "BROOK_SHUTDOWN_DELAY_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=300))]
    shutdown_delay_seconds: u32,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

fn parse_route(text: &str) -> Result<(String, http::Uri), String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("{text}: expected NAME=URL"))?;
    let url = url.parse().map_err(|e| format!("{url}: {e}"))?;
    Ok((name.to_owned(), url))
}

fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let options = brook::gateway::GatewayOptions {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        routes: args.routes.into_iter().collect(),
        namespace: args.namespace,
        broker_ca: args.broker_ca,
        tls: args.tls_cert.zip(args.tls_key),
        shutdown_delay: std::time::Duration::from_secs(u64::from(args.shutdown_delay_seconds)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(brook::gateway::run(options))?;
    Ok(())
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Seconds each throughput workload runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent producers.
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// Where the benchmark brokers keep their data.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The `brook` executable that serves as the broker (this one by default): run a newer
    /// load generator against an older broker to compare before and after a change.
    #[arg(long)]
    broker_exe: Option<PathBuf>,
    /// Only the single-record PutRecord workloads (1 KiB, 1, 8 and 64 producers).
    #[arg(long)]
    put_record_only: bool,
    /// Only the cluster workloads: PutRecords through three broker processes against one,
    /// and the added latency of a forwarded request and of the gateway.
    #[arg(long, conflicts_with = "put_record_only")]
    cluster_only: bool,
    /// Only the queue workloads: receive-and-acknowledge throughput of 8 consumers, and the
    /// latency from PutRecord to a long-polling consumer.
    #[arg(long, conflicts_with_all = ["put_record_only", "cluster_only"])]
    queue_only: bool,
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    /// Where the peers were installed.
    #[arg(long, default_value = ".bench/peers")]
    peers_dir: PathBuf,
    /// Runs of each throughput workload (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds each throughput workload runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Only these targets (comma-separated names); all when absent.
    #[arg(long)]
    only: Option<String>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
    /// Where to write the chart data (JSON lines).
    #[arg(long, default_value = ".bench/compare.jsonl")]
    chart_data: PathBuf,
}

fn run_compare(args: CompareArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let work = PathBuf::from(".bench/compare");
    let only: Option<Vec<String>> = args.only.map(|o| o.split(',').map(str::to_owned).collect());
    let targets: Vec<_> = brook::bench::peers::targets(&exe, &args.peers_dir)
        .into_iter()
        .filter(|t| only.as_ref().is_none_or(|o| o.contains(&t.name)))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for target in targets {
        eprintln!("measuring {} ...", target.name);
        let figures = runtime.block_on(brook::bench::compare::measure(
            &target,
            &work,
            args.runs,
            args.seconds,
        ));
        if let Some(failure) = &figures.failure {
            eprintln!("  {}: {failure}", target.name);
        }
        results.push((target, figures));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let date = k8s_openapi::jiff::Zoned::now()
        .strftime("%Y-%m-%d")
        .to_string();
    let command = format!(
        "make bench-compare (runs {}, {} s each)",
        args.runs, args.seconds
    );
    let report = brook::bench::compare::render(&results, cores, &date, &command);
    if let Some(parent) = args.report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.report, &report)?;
    if let Some(parent) = args.chart_data.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        &args.chart_data,
        brook::bench::compare::chart_data(&results),
    )?;
    println!("{report}");
    Ok(())
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let options = brook::bench::BenchOptions {
        seconds: args.seconds,
        producers: args.producers,
        broker_exe: match args.broker_exe {
            Some(exe) => exe,
            None => std::env::current_exe()?,
        },
        work_dir: args.work_dir.unwrap_or_else(brook::bench::default_work_dir),
        put_record_only: args.put_record_only,
        cluster_only: args.cluster_only,
        queue_only: args.queue_only,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let table = runtime.block_on(brook::bench::run(options))?;
    println!("{table}");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BROOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let mut defaults = brook::operator::resources::BrokerDefaults::for_this_version();
    defaults.image = args.broker_image;
    let leader_election = match (args.lease_namespace, args.identity) {
        (Some(namespace), Some(identity)) => Some((namespace, identity)),
        _ => None,
    };
    let options = brook::operator::OperatorOptions {
        metrics_listen: args.metrics_listen,
        watch_namespace: args.watch_namespace,
        leader_election,
        defaults,
        brokers: match args.broker_address {
            Some(address) => brook::operator::BrokerAddresses::Fixed(address),
            None => brook::operator::BrokerAddresses::ClusterDns,
        },
        recheck: std::time::Duration::from_secs(args.recheck_seconds.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(brook::operator::runner::run(options))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Broker(args) => run_broker(*args),
        Command::Gateway(args) => run_gateway(args),
        Command::Bench(args) => run_bench(args),
        Command::BenchCompare(args) => run_compare(args),
        Command::BenchNoop {
            listen,
            journal_dir,
            sync,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(brook::bench::noop::serve(
                listen,
                journal_dir.as_deref(),
                sync,
            ))?;
            Ok(())
        }
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::Operator(args) => run_operator(args),
        Command::Install { namespace, image } => {
            print!(
                "{}",
                brook::operator::install::install_yaml(&namespace, &image)?
            );
            Ok(())
        }
        Command::Version => {
            println!("brook {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Generate { root } => generate(&root),
        Command::Autoscale {
            command: AutoscaleCommand::Simulate(args),
        } => simulate(args),
        Command::Delivery(args) => run_delivery(*args),
        Command::Probe {
            url,
            timeout_seconds,
        } => probe(&url, std::time::Duration::from_secs(timeout_seconds)),
    }
}

fn run_delivery(args: DeliveryArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let text = match (args.spec, &args.spec_file) {
        (Some(text), _) => text,
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => anyhow::bail!("give the DeliveryStream's spec with --spec or --spec-file"),
    };
    // YAML is a superset of JSON, so one parser reads both.
    let spec: brook::api::delivery::DeliveryStreamSpec =
        serde_yaml::from_str(&text).context("the spec is not a DeliveryStream spec")?;
    let settings = brook::delivery::WorkerSettings {
        name: args.name,
        version: args.version,
        spec,
        data_dir: args.data_dir,
        listen: args.listen,
        source_endpoint: args.source_endpoint,
        source_ca: args.source_ca,
        source_key: args.source_access_key_id.zip(args.source_secret_access_key),
        s3_key: args
            .s3_access_key_id
            .zip(args.s3_secret_access_key)
            .map(|(id, secret)| brook::delivery::s3::AccessKey {
                id,
                secret,
                session_token: None,
            }),
        http_access_key: args.http_access_key,
        max_pending_bytes: args.max_pending_mib.saturating_mul(1024 * 1024),
        channel: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(brook::delivery::run(settings))?;
    Ok(())
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use brook::autoscale::simulate::{Settings, Trace, render, simulate};
    let traces = match (&args.trace, &args.trace_file) {
        (Some(name), _) => vec![Trace::named(name)?],
        (None, Some(path)) => vec![Trace::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?],
        (None, None) => ["step", "diurnal", "spiky", "ramp", "noisy"]
            .iter()
            .map(|name| Trace::named(name))
            .collect::<Result<_, _>>()?,
    };
    let defaults = Settings::default();
    let settings = Settings {
        period_s: args.period_seconds,
        window_s: args.window_seconds,
        record_bytes: args.record_bytes,
        initial_shards: args.initial_shards,
        metrics_lost_at_s: args.lose_metrics_after_seconds,
        policy: brook::autoscale::ScalingPolicy {
            min_shards: args.min_shards,
            max_shards: args.max_shards,
            target_utilization_percent: args.target_percent,
            scale_up_window_ms: args.scale_up_seconds * 1000,
            scale_down_window_ms: args.scale_down_seconds * 1000,
            ..defaults.policy
        },
        ..defaults
    };
    let mut out = std::io::stdout().lock();
    for trace in traces {
        let text = render(&simulate(&trace, &settings), &settings);
        match writeln!(out, "{text}") {
            // A reader that stopped reading (`| head`) is not an error.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    Ok(())
}

fn generate(root: &std::path::Path) -> anyhow::Result<()> {
    print_crds(Some(root.join("crds")))?;
    let mut files = brook::operator::chart::generated_files(env!("CARGO_PKG_VERSION"))?;
    files.extend(brook::operator::argocd::generated_files()?);
    files.push(brook::operator::chart::GeneratedFile {
        path: PathBuf::from("deploy/operator.yaml"),
        content: brook::operator::install::install_yaml(
            "brook-system",
            &brook::operator::resources::BrokerDefaults::for_this_version().image,
        )?,
    });
    for file in files {
        let path = root.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, file.content)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn probe(url: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime
        .block_on(async { tokio::time::timeout(timeout, brook::probe::get_status(url)).await })
        .map_err(|_| anyhow::anyhow!("no answer from {url} within {timeout:?}"))??;
    if (200..300).contains(&status) {
        println!("{url}: {status}");
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}")
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = brook::api::crds();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(brook::api::crd_file_name(crd));
                std::fs::write(&path, brook::api::crd_yaml(crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for crd in &crds {
                writeln!(out, "---")?;
                out.write_all(brook::api::crd_yaml(crd)?.as_bytes())?;
            }
        }
    }
    Ok(())
}
