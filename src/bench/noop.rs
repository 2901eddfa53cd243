//! The ceiling of the comparison: a server that does what any Kinesis server must for each
//! request (HTTP, JSON parsing, base64 decoding of every record) and answers well-formed
//! responses, but stores nothing. The gap between it and a real server is the server's cost.

use std::convert::Infallible;
use std::net::SocketAddr;

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

const SEQUENCE: &str = "49000000000000000000000000000000000000000000000000000001";

fn answer(target: &str, body: &[u8]) -> String {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match target {
        "PutRecords" => {
            let records = request["Records"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut decoded = 0usize;
            let results: Vec<String> = records
                .iter()
                .map(|r| {
                    decoded += STANDARD
                        .decode(r["Data"].as_str().unwrap_or_default())
                        .map_or(0, |d| d.len());
                    format!(
                        "{{\"SequenceNumber\":\"{SEQUENCE}\",\"ShardId\":\"shardId-000000000000\"}}"
                    )
                })
                .collect();
            std::hint::black_box(decoded);
            format!(
                "{{\"FailedRecordCount\":0,\"Records\":[{}]}}",
                results.join(",")
            )
        }
        "PutRecord" => {
            std::hint::black_box(
                STANDARD
                    .decode(request["Data"].as_str().unwrap_or_default())
                    .map_or(0, |d| d.len()),
            );
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

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
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
    let mut response = Response::new(Full::new(Bytes::from(answer(&target, &body))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    Ok(response)
}

/// Serves the no-op Kinesis API on `address` forever.
pub async fn serve(address: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
