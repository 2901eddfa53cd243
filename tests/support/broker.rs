//! A real `brook broker` process on loopback ports, and AWS SDK clients pointed at it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty folder under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder.
    pub fn new(label: &str) -> Self {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("brook-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temporary folder");
        Self(path)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running broker, killed when dropped.
pub struct Broker {
    child: Child,
    /// Kinesis API endpoint URL.
    pub endpoint: String,
    /// Observability base URL.
    pub metrics: String,
    /// The process's standard error, where its logs go.
    pub log_path: PathBuf,
}

/// How to start a broker.
#[derive(Clone)]
pub struct BrokerBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    transition_ms: u64,
}

impl Default for BrokerBuilder {
    fn default() -> Self {
        Self {
            args: vec!["--test-clock".into()],
            env: Vec::new(),
            transition_ms: 50,
        }
    }
}

impl BrokerBuilder {
    /// How long streams stay CREATING and DELETING.
    pub fn transition_ms(mut self, ms: u64) -> Self {
        self.transition_ms = ms;
        self
    }

    /// Adds command-line arguments.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable of the broker process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts a broker on `data_dir`.
    pub fn start(&self, data_dir: &Path) -> Broker {
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_brook"))
            .arg("broker")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(["--stream-transition-ms", &self.transition_ms.to_string()])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("brook broker starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("broker prints its address");
        let endpoint = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| {
                panic!(
                    "no address in {line:?}; log: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            })
            .to_owned();
        let metrics = line
            .split("metrics on ")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/metrics)\n"))
            .expect("metrics address")
            .to_owned();
        Broker {
            child,
            endpoint,
            metrics,
            log_path,
        }
    }
}

impl Broker {
    /// Starts a broker with default test settings.
    pub fn start(data_dir: &Path) -> Self {
        BrokerBuilder::default().start(data_dir)
    }

    /// An AWS SDK client for this broker that does not retry, so tests see every error.
    pub fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    /// The broker's resident memory in KiB, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM without waiting for the broker to stop.
    pub fn signal_term(&self) {
        self.signal("-TERM");
    }

    /// Stops the process where it is (SIGSTOP): it holds its connections and answers
    /// nothing, as a broker on a frozen node does.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill runs");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait works").is_none()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal_term();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves the broker's clock forward.
    pub fn advance_clock(&self, ms: i64) {
        let url = format!("{}/debug/advance-clock?ms={ms}", self.metrics);
        http_request("POST", &url);
    }

    /// Stops the broker's clock (quotas then refill only when it is advanced).
    pub fn freeze_clock(&self) {
        let url = format!("{}/debug/freeze-clock", self.metrics);
        http_request("POST", &url);
    }

    /// Holds a cluster pod's timed catalog refresh: its placement map then changes only when
    /// a request makes it refresh.
    pub fn hold_catalog_follow(&self) {
        let url = format!("{}/debug/hold-catalog-follow", self.metrics);
        let (status, body) = http_request("POST", &url);
        assert_eq!(status, 200, "hold-catalog-follow: {body}");
    }

    /// GETs a path on the observability port: (status, body).
    pub fn observe(&self, path: &str) -> (u16, String) {
        http_request("GET", &format!("{}{path}", self.metrics))
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 exchange for the observability port (not the Kinesis API).
pub fn http_request(method: &str, url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(host).expect("connects");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// The answer to a hand-made request: status, lowercase head, body.
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Status line and headers, lowercased.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

/// An `Authorization` header of the SigV4 form (its signature is not valid: for a broker
/// without keys, which checks only the form).
pub const UNVERIFIED_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000";

/// POSTs `body` as it is, for requests no SDK would send (malformed bodies, missing targets,
/// other protocols); `target` is the whole `X-Amz-Target` value. It carries a signature of
/// the right form ([`UNVERIFIED_AUTHORIZATION`]) and an `X-Amz-Date`.
pub fn raw_post(
    endpoint: &str,
    target: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> RawAnswer {
    let mut headers = vec![
        ("Content-Type", content_type),
        ("Authorization", UNVERIFIED_AUTHORIZATION),
        ("X-Amz-Date", "20261130T000000Z"),
    ];
    if let Some(target) = target {
        headers.push(("X-Amz-Target", target));
    }
    raw_request(endpoint, "POST", &headers, body)
}

/// POSTs a JSON 1.1 body to Kinesis `operation` (with an unverified SigV4-form header);
/// returns the status and the body as text.
pub fn post_json(endpoint: &str, operation: &str, body: &str) -> (u16, String) {
    let answer = post_json_answer(endpoint, operation, body);
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

/// [`post_json`], returning the whole answer (its head too).
pub fn post_json_answer(endpoint: &str, operation: &str, body: &str) -> RawAnswer {
    let target = format!("Kinesis_20131202.{operation}");
    raw_post(
        endpoint,
        Some(&target),
        "application/x-amz-json-1.1",
        body.as_bytes(),
    )
}

/// The exact JSON body of a Kinesis error answer (`SerializationException` carries its
/// message under a capitalized key).
pub fn error_body(kind: &str, message: &str) -> String {
    let key = if kind == "SerializationException" {
        "Message"
    } else {
        "message"
    };
    let message = serde_json::to_string(message).expect("a JSON string");
    format!(r#"{{"__type":"{kind}","{key}":{message}}}"#)
}

/// Sends `method` to `/` with exactly `headers` (and Host, Content-Length) and `body`.
pub fn raw_request(
    endpoint: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawAnswer {
    raw_request_to(endpoint, method, "/", headers, body)
}

/// [`raw_request`] to `target` (a path with its query string).
pub fn raw_request_to(
    endpoint: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawAnswer {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connects");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("head");
    // An oversized body may be refused before it is all sent.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |at| at + 4);
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawAnswer {
        status,
        head,
        body: response[split..].to_vec(),
    }
}

/// An AWS SDK Kinesis client for `endpoint` with static test credentials and no retries.
pub fn client_for(endpoint: &str) -> Client {
    client_over(
        endpoint,
        aws_smithy_http_client::Builder::new().build_http(),
    )
}

/// An AWS SDK client for `endpoint` over `http`, signing with a fixed example key, without
/// retries.
fn client_over(
    endpoint: &str,
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ))
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// The error code (`__type`) of an SDK error, or its display when it has none.
pub fn error_code<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    error: &aws_sdk_kinesis::error::SdkError<E, R>,
) -> String {
    match error.as_service_error() {
        Some(service) => service.code().unwrap_or("no code").to_owned(),
        None => format!("{error:?}"),
    }
}

/// The error message of an SDK service error.
pub fn error_message<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    error: &aws_sdk_kinesis::error::SdkError<E, R>,
) -> String {
    error
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_owned()
}

/// Creates a stream and waits until it is ACTIVE, as a Kinesis client would.
pub async fn create_active_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    wait_for_status(client, name, "ACTIVE").await;
}

/// A TRIM_HORIZON iterator of `stream`'s shard `shard`.
pub async fn trim_horizon_iterator(client: &Client, stream: &str, shard: &str) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetShardIterator of {stream}/{shard}: {e:?}"))
        .shard_iterator()
        .expect("an iterator")
        .to_owned()
}

/// Polls DescribeStreamSummary until the stream has `status`.
pub async fn wait_for_status(client: &Client, name: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let description = summary.stream_description_summary().expect("a summary");
        if description.stream_status().as_str() == status {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never became {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls DescribeStreamSummary until the stream is gone.
pub async fn wait_for_absent(client: &Client, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "{name} still exists");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An AWS SDK Kinesis client for `endpoint` that signs with `key` and `secret`, no retries.
pub fn signed_client(endpoint: &str, key: &str, secret: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// An AWS SDK client for an HTTPS `endpoint` whose certificate `ca_pem` signs (no retries).
pub fn https_client(endpoint: &str, ca_pem: &std::path::Path) -> Client {
    let context = aws_smithy_http_client::tls::TlsContext::builder()
        .with_trust_store(
            aws_smithy_http_client::tls::TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(std::fs::read(ca_pem).expect("CA")),
        )
        .build()
        .expect("TLS context");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https();
    client_over(endpoint, http)
}
