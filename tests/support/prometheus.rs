//! A real Prometheus (Debian's `prometheus`, which `make test` installs) on loopback,
//! scraping given targets every second as `job="brook-broker"`, stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::broker::{TempDir, http_request};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:<port>` (`https://` when it serves TLS).
    pub url: String,
    port: u16,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each `metrics` address (`host:port`) every second, with
    /// `namespace` as the targets' namespace label; returns once it is ready.
    pub async fn scraping(metrics: &[&str], namespace: &str) -> Self {
        let prometheus = Self::start(metrics, namespace, None);
        let ready = format!("{}/-/ready", prometheus.url);
        let port = prometheus.port;
        super::eventually("Prometheus ready", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_request("GET", &ready).0 == 200
        })
        .await;
        prometheus
    }

    /// The same, serving its API over TLS with `cert` and `key` and requiring basic auth of
    /// `user` (whose password's bcrypt hash is `hash`); returns once its port listens.
    pub async fn scraping_tls(
        metrics: &[&str],
        namespace: &str,
        cert: &Path,
        key: &Path,
        user: &str,
        hash: &str,
    ) -> Self {
        let web = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {user}: {hash}\n",
            cert.display(),
            key.display()
        );
        let prometheus = Self::start(metrics, namespace, Some(web));
        let port = prometheus.port;
        super::eventually("Prometheus listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        prometheus
    }

    fn start(metrics: &[&str], namespace: &str, web: Option<String>) -> Self {
        let dir = TempDir::new("prometheus");
        let port = super::unused_address().port();
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
        let mut command = Command::new(prometheus_binary());
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let scheme = match web {
            Some(web) => {
                let file = dir.path().join("web.yml");
                std::fs::write(&file, web).expect("web config");
                command.arg(format!("--web.config.file={}", file.display()));
                "https"
            }
            None => "http",
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({e}); `make test` installs it"));
        Self {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            log,
            _dir: dir,
        }
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
