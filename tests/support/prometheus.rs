//! A real Prometheus (Debian's `prometheus`, which `make test` installs) on loopback,
//! scraping given targets every second as `job="brook-broker"`, stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::broker::{TempDir, http_request};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each `metrics` address (`host:port`) every second, with
    /// `namespace` as the targets' namespace label.
    pub async fn scraping(metrics: &[&str], namespace: &str) -> Self {
        let dir = TempDir::new("prometheus");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let targets: Vec<String> = metrics.iter().map(|m| format!("\"{m}\"")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: brook-broker\n    static_configs:\n      - targets: [{}]\n        labels: {{namespace: {namespace}}}\n",
                targets.join(", ")
            ),
        )
        .expect("config");
        let log = dir.path().join("prometheus.log");
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({e}); `make test` installs it"));
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        super::eventually("Prometheus ready", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_request("GET", &ready).0 == 200
        })
        .await;
        prometheus
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn prometheus_binary() -> &'static str {
    if Path::new("/usr/bin/prometheus").exists() {
        "/usr/bin/prometheus"
    } else {
        "prometheus"
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
