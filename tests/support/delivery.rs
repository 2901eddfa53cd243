//! A real `brook delivery` worker process for the delivery tests, and reading what it
//! delivered back with Python's own decompressors (`tests/python/read_object.py`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::broker::http_request;
use super::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

/// A running worker, killed when dropped.
pub struct Worker {
    child: Child,
    /// Its Firehose API and metrics base URL.
    pub endpoint: String,
    /// Its log file.
    pub log_path: PathBuf,
    spec: Value,
    name: String,
    data_dir: PathBuf,
    address: std::net::SocketAddr,
    extra: Vec<String>,
}

/// An S3 destination spec for `server`'s `bucket`.
pub fn s3_destination(server: &S3Server, bucket: &str, prefix: &str, compression: &str) -> Value {
    serde_json::json!({"s3": {
        "endpoint": server.endpoint,
        "bucket": bucket,
        "prefix": prefix,
        "compression": compression,
    }})
}

impl Worker {
    /// Starts `brook delivery` for `name` with `spec`, its data in `data_dir`, extra arguments.
    pub fn start(name: &str, spec: Value, data_dir: &Path, extra: &[&str]) -> Self {
        let address = super::unused_address();
        let mut worker = Self {
            child: Command::new("true").spawn().expect("a placeholder process"),
            endpoint: format!("http://{address}"),
            log_path: data_dir.with_extension("delivery.log"),
            spec,
            name: name.to_owned(),
            data_dir: data_dir.to_path_buf(),
            address,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        worker.restart();
        worker
    }

    /// Starts the worker again (after [`Worker::kill`]) on the same port and data.
    pub fn restart(&mut self) {
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        self.child = Command::new(env!("CARGO_BIN_EXE_brook"))
            .arg("delivery")
            .args(["--name", &self.name, "--spec", &self.spec.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &self.address.to_string()])
            .args(&self.extra)
            .env("BROOK_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("BROOK_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("RUST_LOG", "brook=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("brook delivery starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                panic!("brook delivery exited with {status}: {}", self.log());
            }
            if std::net::TcpStream::connect(self.address).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "brook delivery did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait works").is_none()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The sum of a metric's samples whose labels contain `labels` (`""` for all).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (status, body) = http_request("GET", &format!("{}/metrics", self.endpoint));
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let metric = series.split('{').next()?;
                (metric == name && series.contains(labels)).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    /// Waits until `name{labels}` reaches `at_least`, failing with the log after two minutes.
    pub async fn wait_for_metric(&mut self, name: &str, labels: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let value = self.metric(name, labels);
            if value >= at_least {
                return;
            }
            assert!(self.is_running(), "the worker exited: {}", self.log());
            assert!(
                Instant::now() < deadline,
                "{name}{{{labels}}} stayed at {value}, below {at_least}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The content of a delivered object, decompressed by Python (`compression` as in the spec).
pub fn read_object(compression: &str, file: &Path) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = super::helm::python();
    let output = Command::new(&python)
        .arg(root.join("tests/python/read_object.py"))
        .arg(compression)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); `make test` installs cramjam",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "reading {} as {compression}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The lines of every object of `bucket` under `prefix`, by object key.
pub fn delivered_lines(
    server: &S3Server,
    bucket: &str,
    prefix: &str,
    compression: &str,
) -> Vec<(String, Vec<String>)> {
    server
        .objects(bucket)
        .into_iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(key, file)| {
            let content = read_object(compression, &file);
            let text = String::from_utf8(content).expect("utf-8 records");
            (key, text.lines().map(str::to_owned).collect())
        })
        .collect()
}

/// An AWS SDK Firehose client for `endpoint` that does not retry, so tests see every error.
pub fn firehose_client(endpoint: &str) -> aws_sdk_firehose::Client {
    use aws_sdk_firehose::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    aws_sdk_firehose::Client::from_conf(config)
}

/// A Firehose record holding `data`.
pub fn firehose_record(data: impl Into<Vec<u8>>) -> aws_sdk_firehose::types::Record {
    aws_sdk_firehose::types::Record::builder()
        .data(aws_sdk_firehose::primitives::Blob::new(data.into()))
        .build()
        .expect("a record with data")
}
