//! The ceilings of the comparison: a server that does what any Kinesis server must for each
//! request (HTTP, JSON parsing, base64 decoding of every record) and answers well-formed
//! responses, but stores nothing. The gap between it and a real server is the server's cost.
//!
//! With a journal folder it is the durable ceiling: each put's decoded data is also written to
//! one file and answered only once an `fdatasync` that began after the write has returned (the
//! least any server that acknowledges durably must do), with nothing else: no index, no
//! sequence numbers, no recovery.

use std::convert::Infallible;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SEQUENCE: &str = "49000000000000000000000000000000000000000000000000000001";

/// Answers one request; the data of the records it puts is appended to `decoded`.
fn answer(target: &str, body: &[u8], decoded: &mut Vec<u8>) -> String {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match target {
        "PutRecords" => {
            let records = request["Records"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let results: Vec<String> = records
                .iter()
                .map(|r| {
                    let _ = STANDARD.decode_vec(r["Data"].as_str().unwrap_or_default(), decoded);
                    format!(
                        "{{\"SequenceNumber\":\"{SEQUENCE}\",\"ShardId\":\"shardId-000000000000\"}}"
                    )
                })
                .collect();
            format!(
                "{{\"FailedRecordCount\":0,\"Records\":[{}]}}",
                results.join(",")
            )
        }
        "PutRecord" => {
            let _ = STANDARD.decode_vec(request["Data"].as_str().unwrap_or_default(), decoded);
            format!("{{\"SequenceNumber\":\"{SEQUENCE}\",\"ShardId\":\"shardId-000000000000\"}}")
        }
        "DescribeStreamSummary" | "DescribeStream" => {
            let name = request["StreamName"].as_str().unwrap_or("noop");
            format!(
                "{{\"StreamDescriptionSummary\":{{\"StreamName\":\"{name}\",\"StreamStatus\":\"ACTIVE\",\"OpenShardCount\":1}},\"StreamDescription\":{{\"StreamName\":\"{name}\",\"StreamStatus\":\"ACTIVE\",\"Shards\":[],\"HasMoreShards\":false}}}}"
            )
        }
        "ListStreams" => "{\"StreamNames\":[],\"HasMoreStreams\":false}".into(),
        "GetShardIterator" => "{\"ShardIterator\":\"noop\"}".into(),
        "GetRecords" => {
            "{\"Records\":[],\"NextShardIterator\":\"noop\",\"MillisBehindLatest\":0}".into()
        }
        _ => "{}".into(),
    }
}

async fn handle(
    request: Request<Incoming>,
    journal: Option<Arc<Journal>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("Kinesis_20131202."))
        .unwrap_or_default()
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut decoded = Vec::new();
    let answer = answer(&target, &body, &mut decoded);
    if let Some(journal) = journal.filter(|_| !decoded.is_empty())
        && let Err(error) = journal.append(decoded).await
    {
        let mut response = Response::new(Full::new(Bytes::from(format!(
            "{{\"__type\":\"InternalFailure\",\"message\":\"{error}\"}}"
        ))));
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(response);
    }
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    Ok(response)
}

/// How the durable ceiling makes its writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// One thread syncs whatever was written while the previous sync ran (group commit).
    Group,
    /// Each put writes and syncs on its own blocking thread; syncs overlap.
    Each,
}

/// Bytes of the journal's room, written with zeros before serving so that a sync never has to
/// record a larger file; puts wrap around to its start.
const ROOM_BYTES: u64 = 64 << 20;

/// The durable ceiling's one file.
struct Journal {
    file: File,
    mode: SyncMode,
    waiting: Mutex<Waiting>,
    /// Group mode: wakes the syncer when a put is written.
    written: Condvar,
}

#[derive(Default)]
struct Waiting {
    /// Where the next put writes.
    offset: u64,
    /// Group mode: the puts written since the running sync began, for the next one to answer.
    replies: Vec<oneshot::Sender<io::Result<()>>>,
}

impl Waiting {
    /// Takes `length` bytes of the room for a put and says where they start.
    fn reserve(&mut self, length: u64) -> u64 {
        if self.offset + length > ROOM_BYTES {
            self.offset = 0;
        }
        self.offset += length;
        self.offset - length
    }
}

impl Journal {
    fn open(dir: &Path, mode: SyncMode) -> io::Result<Arc<Journal>> {
        std::fs::create_dir_all(dir)?;
        let journal = Arc::new(Journal {
            file: super::disk::zeroed_room(&dir.join("journal"), ROOM_BYTES)?,
            mode,
            waiting: Mutex::default(),
            written: Condvar::new(),
        });
        if mode == SyncMode::Group {
            let syncer = journal.clone();
            std::thread::Builder::new()
                .name("noop-syncer".into())
                .spawn(move || syncer.sync_rounds())?;
        }
        Ok(journal)
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once `data` is written and synced.
    async fn append(self: &Arc<Self>, mut data: Vec<u8>) -> io::Result<()> {
        data.truncate(ROOM_BYTES as usize);
        let length = data.len() as u64;
        match self.mode {
            SyncMode::Group => {
                let (reply, replied) = oneshot::channel();
                {
                    let mut waiting = self.waiting();
                    let offset = waiting.reserve(length);
                    self.file.write_all_at(&data, offset)?;
                    waiting.replies.push(reply);
                    self.written.notify_one();
                }
                replied
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::BrokenPipe.into()))
            }
            SyncMode::Each => {
                let offset = self.waiting().reserve(length);
                let journal = self.clone();
                tokio::task::spawn_blocking(move || {
                    journal.file.write_all_at(&data, offset)?;
                    journal.file.sync_data()
                })
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::BrokenPipe.into()))
            }
        }
    }

    /// The group syncer: takes every put written so far, syncs, answers them; again.
    fn sync_rounds(&self) {
        loop {
            let replies = {
                let mut waiting = self.waiting();
                while waiting.replies.is_empty() {
                    waiting = self
                        .written
                        .wait(waiting)
                        .unwrap_or_else(|e| e.into_inner());
                }
                std::mem::take(&mut waiting.replies)
            };
            let synced = self.file.sync_data();
            for reply in replies {
                let _ = reply.send(match &synced {
                    Ok(()) => Ok(()),
                    Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
                });
            }
        }
    }
}

/// Serves the no-op Kinesis API on `address` forever; with `journal_dir`, durably (see the
/// module's comment).
pub async fn serve(
    address: SocketAddr,
    journal_dir: Option<&Path>,
    mode: SyncMode,
) -> io::Result<()> {
    let journal = match journal_dir {
        Some(dir) => Some(Journal::open(dir, mode)?),
        None => None,
    };
    let listener = TcpListener::bind(address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let journal = journal.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, journal.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_durable_ceiling_answers_a_put_once_its_data_is_in_the_journal() {
        for mode in [SyncMode::Group, SyncMode::Each] {
            let dir = std::env::temp_dir().join(format!(
                "brook-noop-journal-{mode:?}-{}",
                std::process::id()
            ));
            let journal = Journal::open(&dir, mode).expect("the journal opens");
            let puts: Vec<_> = (0..8u8)
                .map(|i| {
                    let journal = journal.clone();
                    tokio::spawn(async move { journal.append(vec![b'a' + i; 100]).await })
                })
                .collect();
            for put in puts {
                put.await.expect("the put ran").expect("the put was synced");
            }
            let written = std::fs::read(dir.join("journal")).expect("the journal reads");
            assert_eq!(
                written.len() as u64,
                ROOM_BYTES,
                "{mode:?}: the room keeps its size"
            );
            let mut pieces: Vec<u8> = written[..800].chunks(100).map(|c| c[0]).collect();
            pieces.sort_unstable();
            assert_eq!(pieces, (b'a'..b'i').collect::<Vec<_>>(), "{mode:?}");
            assert!(
                written[..800]
                    .chunks(100)
                    .all(|c| c.iter().all(|b| *b == c[0]))
            );
            assert!(
                written[800..].iter().all(|b| *b == 0),
                "{mode:?}: nothing past the puts"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
