//! A lean Kinesis client for load generation: one HTTP/1.1 keep-alive connection per
//! producer, requests exactly as the AWS SDK shapes them (JSON 1.1, `X-Amz-Target`), bodies
//! prepared once so the client costs as little as possible.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a benchmark request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("connection: {0}")]
    Connect(#[from] std::io::Error),
    /// HTTP failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The broker answered with an error.
    #[error("status {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
}

/// A request body's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Json,
    Cbor,
}

/// One keep-alive connection to a broker.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    address: SocketAddr,
}

impl Connection {
    /// Connects to `address`.
    pub async fn open(address: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            host: address.to_string(),
            address,
        })
    }

    /// Calls `operation` with a JSON body and returns the response body.
    pub async fn call(&mut self, operation: &str, body: Bytes) -> Result<Bytes, ClientError> {
        self.call_in(operation, body, Body::Json).await
    }

    /// Calls `operation` with a CBOR body (as the AWS SDK for Java does) and returns the
    /// response body.
    pub async fn call_cbor(&mut self, operation: &str, body: Bytes) -> Result<Bytes, ClientError> {
        self.call_in(operation, body, Body::Cbor).await
    }

    async fn call_in(
        &mut self,
        operation: &str,
        body: Bytes,
        kind: Body,
    ) -> Result<Bytes, ClientError> {
        // A server that stops answering is a result to report, not a benchmark that hangs.
        match tokio::time::timeout(CALL_TIMEOUT, self.call_once(operation, body, kind)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(CALL_TIMEOUT)),
        }
    }

    async fn call_once(
        &mut self,
        operation: &str,
        body: Bytes,
        kind: Body,
    ) -> Result<Bytes, ClientError> {
        // Some servers close keep-alive connections (after an idle spell, or after every
        // response); reconnect once, as an SDK would.
        if self.sender.ready().await.is_err() {
            *self = Self::open(self.address).await?;
        }
        let response = match self
            .sender
            .send_request(self.request_in(operation, body.clone(), kind)?)
            .await
        {
            Ok(response) => response,
            Err(error)
                if error.is_closed() || error.is_incomplete_message() || error.is_canceled() =>
            {
                *self = Self::open(self.address).await?;
                self.sender.ready().await?;
                self.sender
                    .send_request(self.request_in(operation, body, kind)?)
                    .await?
            }
            Err(error) => return Err(error.into()),
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        if status != 200 {
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(body)
    }

    /// A JSON request as the AWS SDK sends it, signed with SigV4 (emulators check for a
    /// signature).
    fn request(&self, operation: &str, body: Bytes) -> Result<Request<Full<Bytes>>, ClientError> {
        self.request_in(operation, body, Body::Json)
    }

    fn request_in(
        &self,
        operation: &str,
        body: Bytes,
        kind: Body,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let content_type = match kind {
            Body::Json => "application/x-amz-json-1.1",
            Body::Cbor => crate::broker::protocol::cbor::CONTENT_TYPE,
        };
        Ok(crate::broker::auth::signed_request_as(
            content_type,
            &self.host,
            &format!("{}{operation}", crate::broker::protocol::TARGET_PREFIX),
            body,
            (BENCH_KEY, BENCH_SECRET),
            "us-east-1",
            crate::broker::shard::wall_clock_ms(),
        )?)
    }

    /// Calls `operation` and returns the streaming response body (for SubscribeToShard).
    pub async fn stream(
        &mut self,
        operation: &str,
        body: Bytes,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let request = self.request(operation, body)?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.into_body().collect().await?.to_bytes();
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(response.into_body())
    }
}

/// Longest wait for one answer.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The access key the load generator signs with.
pub const BENCH_KEY: &str = "AKIDBROOKBENCH";
/// Its secret.
pub const BENCH_SECRET: &str = "brook-bench-secret";

/// A PutRecords body of `count` records of `size` bytes, keys spread over the hash space.
pub fn put_records_body(stream: &str, count: usize, size: usize, seed: usize) -> Bytes {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; size]);
    let mut body = String::with_capacity(count * (data.len() + 48) + 64);
    body.push_str("{\"StreamName\":\"");
    body.push_str(stream);
    body.push_str("\",\"Records\":[");
    for i in 0..count {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"Data\":\"");
        body.push_str(&data);
        body.push_str("\",\"PartitionKey\":\"key-");
        body.push_str(&(seed * 100_003 + i).to_string());
        body.push_str("\"}");
    }
    body.push_str("]}");
    Bytes::from(body)
}
