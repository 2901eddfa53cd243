//! A real S3-compatible server for the delivery tests: `s3s-fs` (crates.io) serving a folder
//! on a loopback port, with SigV4 authentication. It can be stopped (every connection cut)
//! and started again on the same port over the same folder, for outage tests; objects are
//! read back from its folder, independently of any S3 client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "brook-test-access";
/// Its secret.
pub const SECRET_KEY: &str = "brook-test-secret-key";

/// A running (or stopped) S3 server.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    address: std::net::SocketAddr,
    root: PathBuf,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl S3Server {
    /// Starts a server over `root` with the buckets named, on a free loopback port.
    pub async fn start(root: &Path, buckets: &[&str]) -> Self {
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).expect("bucket folder");
        }
        let address = super::unused_address();
        let mut server = Self {
            endpoint: format!("http://{address}"),
            address,
            root: root.to_path_buf(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        server.resume().await;
        server
    }

    /// Starts serving again on the same port and folder.
    pub async fn resume(&mut self) {
        let listener = TcpListener::bind(self.address)
            .await
            .expect("bind the S3 port");
        let fs = s3s_fs::FileSystem::new(&self.root).expect("s3s-fs over the folder");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            let http = Builder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                tasks.lock().expect("task list").push(task.abort_handle());
            }
        });
        self.tasks
            .lock()
            .expect("task list")
            .push(accept.abort_handle());
    }

    /// Stops serving: the port is closed and open connections are cut.
    pub fn stop(&mut self) {
        for task in self.tasks.lock().expect("task list").drain(..) {
            task.abort();
        }
    }

    /// The objects of `bucket` as (key, file), sorted by key.
    pub fn objects(&self, bucket: &str) -> Vec<(String, PathBuf)> {
        let base = self.root.join(bucket);
        let mut found = Vec::new();
        let mut folders = vec![base.clone()];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else if let Ok(key) = path.strip_prefix(&base) {
                    found.push((key.to_string_lossy().into_owned(), path.clone()));
                }
            }
        }
        found.sort();
        found
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
