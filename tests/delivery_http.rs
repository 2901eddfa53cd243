//! Delivery to an HTTP endpoint in Firehose's protocol, against a receiver in the test that
//! checks every request's body and headers: errors for a while are retried with the same
//! request id until every record arrives; a 413 sends the batch to the backup bucket's error
//! output (a real S3-compatible server).

mod support;

use std::convert::Infallible;
use std::io::Read;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::broker::TempDir;
use support::delivery::{Worker, delivered_lines};
use support::s3::S3Server;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: http::HeaderMap,
    body: Value,
}

/// A Firehose HTTP endpoint that fails the first `failures` requests with `status`.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize, status: u16) -> Self {
        let address = support::unused_address();
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                let service = hyper::service::service_fn(
                    move |request: http::Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let bytes = body.collect().await.expect("body").to_bytes();
                            let json = if parts.headers.get("content-encoding").is_some() {
                                let mut text = Vec::new();
                                flate2::read::GzDecoder::new(bytes.as_ref())
                                    .read_to_end(&mut text)
                                    .expect("gzip body");
                                text
                            } else {
                                bytes.to_vec()
                            };
                            let body: Value = serde_json::from_slice(&json).expect("a JSON body");
                            let request_id =
                                body["requestId"].as_str().unwrap_or_default().to_owned();
                            let count = {
                                let mut log = log.lock().expect("log");
                                log.push(Received {
                                    headers: parts.headers,
                                    body,
                                });
                                log.len()
                            };
                            let (code, answer) = if count <= failures {
                                (
                                    status,
                                    json!({"requestId": request_id, "timestamp": 0, "errorMessage": "not now"}),
                                )
                            } else {
                                (200, json!({"requestId": request_id, "timestamp": 0}))
                            };
                            let mut response =
                                http::Response::new(Full::new(Bytes::from(answer.to_string())));
                            *response.status_mut() =
                                http::StatusCode::from_u16(code).expect("status");
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{address}/firehose"),
            received,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

async fn put(worker: &Worker, name: &str, texts: &[String]) {
    let records = texts
        .iter()
        .map(|t| support::delivery::firehose_record(t.as_bytes()))
        .collect();
    let answer = support::delivery::firehose_client(&worker.endpoint)
        .put_record_batch()
        .delivery_stream_name(name)
        .set_records(Some(records))
        .send()
        .await
        .expect("PutRecordBatch");
    assert_eq!(answer.failed_put_count(), 0);
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_http_endpoint_retries_with_the_same_request_id_until_it_recovers() {
    let dir = TempDir::new("delivery-http");
    let receiver = Receiver::start(3, 503).await;
    let spec = json!({
        "source": {"directPut": {}},
        "buffering": {"sizeMiB": 1, "intervalSeconds": 1},
        "destination": {"http": {
            "url": receiver.url,
            "contentEncoding": "GZIP",
            "retryDurationSeconds": 300,
            "commonAttributes": {"team": "platform"},
        }},
    });
    let mut worker = Worker::start(
        "to-collector",
        spec,
        &dir.path().join("worker"),
        &["--http-access-key", "collector-token"],
    );
    let texts: Vec<String> = (0..50).map(|i| format!("line-{i}")).collect();
    put(&worker, "to-collector", &texts).await;
    worker
        .wait_for_metric("brook_delivery_delivered_records_total", "", 50.0)
        .await;
    assert!(worker.metric("brook_delivery_retries_total", "") >= 3.0);

    let received = receiver.received();
    assert_eq!(received.len(), 4, "three failures, then the delivery");
    let id = header(&received[0], "x-amz-firehose-request-id");
    for request in &received {
        assert_eq!(
            header(request, "x-amz-firehose-request-id"),
            id,
            "the same id on every retry"
        );
        assert_eq!(request.body["requestId"], id);
        assert_eq!(
            header(request, "x-amz-firehose-access-key"),
            "collector-token"
        );
        assert_eq!(header(request, "x-amz-firehose-protocol-version"), "1.0");
        assert_eq!(header(request, "content-type"), "application/json");
        assert_eq!(header(request, "content-encoding"), "gzip");
        let attributes: Value =
            serde_json::from_str(header(request, "x-amz-firehose-common-attributes"))
                .expect("json");
        assert_eq!(
            attributes,
            json!({"commonAttributes": {"team": "platform"}})
        );
        assert!(request.body["timestamp"].as_u64().is_some());
        let data: Vec<String> = request.body["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(r["data"].as_str().expect("data"))
                    .expect("base64");
                String::from_utf8(bytes).expect("utf-8")
            })
            .collect();
        assert_eq!(data, texts, "every record, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_http_413_goes_to_the_backup_error_output() {
    let dir = TempDir::new("delivery-http-413");
    let receiver = Receiver::start(usize::MAX, 413).await;
    let s3 = S3Server::start(&dir.path().join("s3"), &["backup"]).await;
    let spec = json!({
        "source": {"directPut": {}},
        "buffering": {"sizeMiB": 1, "intervalSeconds": 1},
        "destination": {"http": {
            "url": receiver.url,
            "retryDurationSeconds": 300,
            "s3Backup": {
                "endpoint": s3.endpoint,
                "bucket": "backup",
                "errorOutputPrefix": "failed/!{firehose:error-output-type}/",
            },
        }},
    });
    let mut worker = Worker::start("too-big", spec, &dir.path().join("worker"), &[]);
    let texts: Vec<String> = (0..20).map(|i| format!("big-{i}")).collect();
    put(&worker, "too-big", &texts).await;
    worker
        .wait_for_metric(
            "brook_delivery_failed_records_total",
            "type=\"http-endpoint-failed\"",
            20.0,
        )
        .await;
    assert_eq!(receiver.received().len(), 1, "413 is not retried");
    assert_eq!(
        worker.metric("brook_delivery_delivered_records_total", ""),
        0.0,
        "what went to the error output was not delivered"
    );
    let objects = delivered_lines(
        &s3,
        "backup",
        "failed/http-endpoint-failed/",
        "UNCOMPRESSED",
    );
    assert_eq!(objects.len(), 1, "{objects:?}");
    let raw: Vec<String> = objects[0]
        .1
        .iter()
        .map(|line| {
            let error: Value = serde_json::from_str(line).expect("json line");
            assert!(
                error["errorMessage"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("413")
            );
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(error["rawData"].as_str().expect("rawData"))
                .expect("base64");
            String::from_utf8(bytes).expect("utf-8")
        })
        .collect();
    assert_eq!(raw, texts);
}
