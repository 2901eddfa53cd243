//! Reading a Brook stream's shards for delivery over the Kinesis API (ListShards,
//! GetShardIterator, GetRecords, SigV4-signed), one kept-alive connection per shard, and the
//! lineage rule that a child shard is read only once its parents are finished.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::batch::SourceRecord;
use crate::api::delivery::StartingPosition;
use crate::broker::auth;
use crate::broker::protocol::json::{FailedAnswer, failed_answer};

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most records one GetRecords returns.
const GET_LIMIT: u32 = 10_000;

/// Why reading the source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No connection, or it broke.
    #[error("the stream's brokers at {address} are unreachable: {message}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// What failed.
        message: String,
    },
    /// The brokers answered with a Kinesis error.
    #[error("{operation}: {code}: {message}")]
    Api {
        /// The operation.
        operation: &'static str,
        /// The error code, such as `ExpiredIteratorException`.
        code: String,
        /// Its message.
        message: String,
    },
    /// The answer was not what the operation returns.
    #[error("{operation} answered with an unreadable body: {message}")]
    Decode {
        /// The operation.
        operation: &'static str,
        /// What could not be read.
        message: String,
    },
}

impl SourceError {
    /// The Kinesis error code of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Orders positions: sequence numbers and journal offsets are decimal numbers without
/// leading zeros, so the longer is the larger.
pub fn compare_positions(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A shard as ListShards reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its id.
    pub shard_id: String,
    /// The shard(s) it was split or merged from.
    pub parents: Vec<String>,
}

/// The shards to start reading now: not finished, not running, and every parent that is
/// still listed finished (parents before children).
pub fn ready_shards(
    shards: &[ShardInfo],
    finished: &BTreeSet<String>,
    running: &BTreeSet<String>,
) -> Vec<String> {
    let listed: BTreeSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    shards
        .iter()
        .filter(|s| !finished.contains(&s.shard_id) && !running.contains(&s.shard_id))
        .filter(|s| {
            s.parents
                .iter()
                .all(|p| !listed.contains(p.as_str()) || finished.contains(p))
        })
        .map(|s| s.shard_id.clone())
        .collect()
}

/// Where a shard without progress starts: after its parents a child is read from its start,
/// so nothing between them is skipped; any other shard from the configured position.
pub fn first_position(
    shard: &ShardInfo,
    shards: &[ShardInfo],
    configured: StartingPosition,
) -> StartingPosition {
    let has_listed_parent = shard
        .parents
        .iter()
        .any(|p| shards.iter().any(|s| &s.shard_id == p));
    if has_listed_parent {
        StartingPosition::TrimHorizon
    } else {
        configured
    }
}

/// Where an iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorStart {
    /// At a position (inclusive).
    At(String),
    /// After a position.
    After(String),
    /// The oldest record.
    TrimHorizon,
    /// After the newest record.
    Latest,
    /// Records arrived at or after this Unix time in milliseconds.
    Timestamp(u64),
}

/// A client of the source stream's Kinesis API.
#[derive(Clone)]
pub struct StreamClient {
    address: String,
    stream: String,
    access_key: String,
    secret: String,
    region: String,
    /// For brokers serving TLS: whom their certificate is trusted by.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// One GetRecords answer.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The records.
    pub records: Vec<SourceRecord>,
    /// The iterator for the next call; none once a closed shard is read to its end.
    pub next: Option<String>,
    /// How far the reader is behind the shard's newest record.
    pub behind_ms: u64,
}

/// A kept-alive connection to the brokers.
pub struct Connection {
    client: StreamClient,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl StreamClient {
    /// A client for `stream` at `address` (`host:port`), signing with the given key.
    pub fn new(address: String, stream: String, access_key: String, secret: String) -> Self {
        Self {
            address,
            stream,
            access_key,
            secret,
            region: "us-east-1".into(),
            tls: None,
        }
    }

    /// The same client over TLS, trusting `tls` (plain when `None`).
    pub fn with_tls(mut self, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// A new connection (opened on first use).
    pub fn connect(&self) -> Connection {
        Connection {
            client: self.clone(),
            sender: None,
        }
    }

    fn unreachable(&self, message: impl ToString) -> SourceError {
        SourceError::Unreachable {
            address: self.address.clone(),
            message: message.to_string(),
        }
    }

    /// Every shard of the stream with its parents.
    pub async fn list_shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        let mut connection = self.connect();
        let mut shards = Vec::new();
        let mut request = json!({"StreamName": self.stream});
        loop {
            let answer = connection.call("ListShards", &request).await?;
            for shard in answer["Shards"].as_array().into_iter().flatten() {
                let parents = ["ParentShardId", "AdjacentParentShardId"]
                    .iter()
                    .filter_map(|field| shard[*field].as_str().map(str::to_owned))
                    .collect();
                if let Some(id) = shard["ShardId"].as_str() {
                    shards.push(ShardInfo {
                        shard_id: id.to_owned(),
                        parents,
                    });
                }
            }
            match answer["NextToken"].as_str() {
                Some(token) => request = json!({"NextToken": token}),
                None => return Ok(shards),
            }
        }
    }
}

impl Connection {
    async fn call(&mut self, operation: &'static str, body: &Value) -> Result<Value, SourceError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_once(operation, body)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if matches!(error, SourceError::Unreachable { .. }) {
                    self.sender = None;
                }
                Err(error)
            }
            Err(_) => {
                self.sender = None;
                Err(self
                    .client
                    .unreachable(format!("no answer within {CALL_TIMEOUT:?}")))
            }
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, SourceError> {
        let usable = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let client = &self.client;
            let tcp = TcpStream::connect(&client.address)
                .await
                .map_err(|e| client.unreachable(e))?;
            let _ = tcp.set_nodelay(true);
            let sender = match &client.tls {
                None => crate::http1::handshake(tcp).await,
                Some(tls) => {
                    let host = crate::http1::host_of(&client.address);
                    let stream = crate::http1::connect_tls(host, tcp, tls)
                        .await
                        .map_err(|e| client.unreachable(e))?;
                    crate::http1::handshake(stream).await
                }
            }
            .map_err(|e| client.unreachable(e))?;
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| self.client.unreachable("no connection"))
    }

    async fn call_once(
        &mut self,
        operation: &'static str,
        body: &Value,
    ) -> Result<Value, SourceError> {
        let client = self.client.clone();
        let request = auth::signed_json_request(
            &client.address,
            &format!("{}{operation}", crate::broker::protocol::TARGET_PREFIX),
            Bytes::from(body.to_string()),
            &client.access_key,
            &client.secret,
            &client.region,
            crate::broker::shard::wall_clock_ms(),
        )
        .map_err(|e| client.unreachable(e))?;
        let response = self
            .sender()
            .await?
            .send_request(request)
            .await
            .map_err(|e| client.unreachable(e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| client.unreachable(e))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| SourceError::Decode {
            operation,
            message: e.to_string(),
        })?;
        if status.is_success() {
            return Ok(value);
        }
        match failed_answer(status, &value) {
            FailedAnswer::Unavailable(message) => Err(client.unreachable(message)),
            FailedAnswer::Api { code, message } => Err(SourceError::Api {
                operation,
                code,
                message,
            }),
        }
    }

    /// An iterator for `shard` starting at `start`.
    pub async fn iterator(
        &mut self,
        shard: &str,
        start: &IteratorStart,
    ) -> Result<String, SourceError> {
        let mut body = json!({"StreamName": self.client.stream, "ShardId": shard});
        let (kind, extra) = match start {
            IteratorStart::At(p) => (
                "AT_SEQUENCE_NUMBER",
                Some(("StartingSequenceNumber", json!(p))),
            ),
            IteratorStart::After(p) => (
                "AFTER_SEQUENCE_NUMBER",
                Some(("StartingSequenceNumber", json!(p))),
            ),
            IteratorStart::TrimHorizon => ("TRIM_HORIZON", None),
            IteratorStart::Latest => ("LATEST", None),
            IteratorStart::Timestamp(ms) => (
                "AT_TIMESTAMP",
                Some(("Timestamp", json!(*ms as f64 / 1000.0))),
            ),
        };
        body["ShardIteratorType"] = json!(kind);
        if let Some((field, value)) = extra {
            body[field] = value;
        }
        let answer = self.call("GetShardIterator", &body).await?;
        answer["ShardIterator"]
            .as_str()
            .map(str::to_owned)
            .ok_or(SourceError::Decode {
                operation: "GetShardIterator",
                message: "no ShardIterator".into(),
            })
    }

    /// One page of records.
    pub async fn get_records(&mut self, iterator: &str) -> Result<Page, SourceError> {
        let operation = "GetRecords";
        let answer = self
            .call(
                operation,
                &json!({"ShardIterator": iterator, "Limit": GET_LIMIT}),
            )
            .await?;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut records = Vec::new();
        for record in answer["Records"].as_array().into_iter().flatten() {
            let decode = |message: &str| SourceError::Decode {
                operation,
                message: message.to_owned(),
            };
            let position = record["SequenceNumber"]
                .as_str()
                .ok_or_else(|| decode("a record without SequenceNumber"))?;
            let data = engine
                .decode(record["Data"].as_str().unwrap_or_default())
                .map_err(|e| decode(&e.to_string()))?;
            let arrival_ms = (record["ApproximateArrivalTimestamp"]
                .as_f64()
                .unwrap_or(0.0)
                * 1000.0) as u64;
            records.push(SourceRecord {
                position: position.to_owned(),
                arrival_ms,
                data: Bytes::from(data),
            });
        }
        Ok(Page {
            records,
            next: answer["NextShardIterator"].as_str().map(str::to_owned),
            behind_ms: answer["MillisBehindLatest"].as_u64().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn delivery_reads_parents_before_children() {
        // 0 split into 1 and 2; 1 and 2 merged into 3; 4 is a child of a trimmed shard.
        let shards = [
            shard("s0", &[]),
            shard("s1", &["s0"]),
            shard("s2", &["s0"]),
            shard("s3", &["s1", "s2"]),
            shard("s4", &["gone"]),
        ];
        let none = BTreeSet::new();
        let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(ready_shards(&shards, &none, &none), ["s0", "s4"]);
        assert_eq!(ready_shards(&shards, &none, &set(&["s0"])), ["s4"]);
        assert_eq!(
            ready_shards(&shards, &set(&["s0"]), &set(&["s4"])),
            ["s1", "s2"]
        );
        assert!(ready_shards(&shards, &set(&["s0", "s1"]), &set(&["s2", "s4"])).is_empty());
        assert_eq!(
            ready_shards(&shards, &set(&["s0", "s1", "s2"]), &set(&["s4"])),
            ["s3"]
        );
    }

    #[test]
    fn delivery_children_start_at_their_beginning() {
        let shards = [
            shard("s0", &[]),
            shard("s1", &["s0"]),
            shard("s2", &["gone"]),
        ];
        let latest = StartingPosition::Latest;
        assert_eq!(first_position(&shards[0], &shards, latest), latest);
        assert_eq!(
            first_position(&shards[1], &shards, latest),
            StartingPosition::TrimHorizon
        );
        assert_eq!(first_position(&shards[2], &shards, latest), latest);
    }

    #[test]
    fn delivery_positions_compare_as_numbers() {
        assert_eq!(compare_positions("9", "10"), Ordering::Less);
        assert_eq!(compare_positions("49000", "49000"), Ordering::Equal);
        assert_eq!(compare_positions("49001", "49000"), Ordering::Greater);
    }
}
