//! `brook gateway`: one endpoint for every stream of its scope, as a Kinesis region has one.
//! Each request is sent, unchanged (its `Host` header and body as signed), to the brokers of
//! the stream it names (`StreamName`, `StreamARN`, `ConsumerARN`, `ResourceARN`, or the
//! stream a shard iterator names); SigV4 is verified there. ListStreams asks every stream's
//! brokers and merges their answers.
//!
//! The routing table is a Kubernetes namespace's `Stream` resources (their
//! `status.endpoint`), watched and refreshed on every change, or fixed `--route` pairs for
//! brokers outside Kubernetes.

pub mod metrics;
pub mod route;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::Stream;
use crate::broker::protocol::{ApiError, ErrorKind, cbor};
use crate::broker::server::{ResponseBody, error_response, respond, serve};
use crate::broker::upstream::{Upstream, broker_connector, held_by_design, retarget};
use route::Target;

/// Largest request body the gateway reads (Kinesis's largest PutRecords, with room).
const MAX_BODY_BYTES: usize = 12 * 1024 * 1024;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {message}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The Kubernetes client could not be made.
    #[error("Kubernetes: {0}")]
    Kube(String),
    /// The metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The CA bundle for `https://` brokers could not be read.
    #[error("--broker-ca {0}")]
    Ca(String),
    /// The gateway's own certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::broker::tls::TlsError),
}

/// Where the routes come from.
pub enum Routes {
    /// Fixed stream name → broker URL pairs.
    Fixed(BTreeMap<String, Uri>),
    /// The `Stream` resources of a namespace.
    Streams(Store<Stream>),
}

impl Routes {
    /// Every stream's name and its brokers' URL.
    pub fn all(&self) -> BTreeMap<String, Uri> {
        match self {
            Routes::Fixed(routes) => routes.clone(),
            Routes::Streams(store) => store
                .state()
                .iter()
                .filter(|s| s.metadata.deletion_timestamp.is_none())
                .filter_map(|s| {
                    let name = s.metadata.name.clone()?;
                    let endpoint = s.status.as_ref()?.endpoint.as_deref()?.parse().ok()?;
                    Some((name, endpoint))
                })
                .collect(),
        }
    }

    /// The URL of `stream`'s brokers.
    pub fn endpoint(&self, stream: &str) -> Option<Uri> {
        match self {
            Routes::Fixed(routes) => routes.get(stream).cloned(),
            Routes::Streams(store) => store
                .state()
                .iter()
                .find(|s| {
                    s.metadata.name.as_deref() == Some(stream)
                        && s.metadata.deletion_timestamp.is_none()
                })
                .and_then(|s| s.status.as_ref()?.endpoint.as_deref()?.parse().ok()),
        }
    }
}

/// How long the gateway waits for a stream's brokers to start answering (beyond what a call
/// waits by design): longer than a broker waits for another pod, so that a broker's own
/// retryable answer about a silent pod reaches the client rather than the gateway's.
pub const ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The gateway's state.
pub struct Gateway {
    routes: Routes,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// How long it waits for brokers to start answering ([`ANSWER_LIMIT`]).
    pub answer_limit: std::time::Duration,
    /// Requests, their durations and the routed streams.
    pub metrics: metrics::GatewayMetrics,
}

fn gateway_error(kind: ErrorKind, message: impl Into<String>) -> ApiError {
    ApiError::new(kind, message)
}

impl Gateway {
    /// A gateway over `routes`, trusting `https://` brokers whose certificates `tls`
    /// trusts.
    pub fn new(routes: Routes, tls: rustls::ClientConfig) -> Result<Self, GatewayError> {
        Ok(Self {
            routes,
            client: Client::builder(TokioExecutor::new()).build(broker_connector(tls)),
            answer_limit: ANSWER_LIMIT,
            metrics: metrics::GatewayMetrics::new()
                .map_err(|e| GatewayError::Metrics(e.to_string()))?,
        })
    }

    /// The metrics in Prometheus's text format.
    pub fn render_metrics(&self) -> Vec<u8> {
        self.metrics.render(self.routes.all().len())
    }

    /// Sends the request (`parts`, `body`) to `base`, keeping its headers as signed.
    async fn send(
        &self,
        base: &Uri,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Incoming>, ApiError> {
        let mut head = parts.clone();
        retarget(&mut head, base).map_err(|e| gateway_error(ErrorKind::InternalFailure, e))?;
        let operation = crate::broker::protocol::Operation::from_target(
            parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok()),
        )
        .ok();
        let limit = self.answer_limit + held_by_design(operation);
        let request = Request::from_parts(head, Full::new(body));
        let answer = tokio::time::timeout(limit, self.client.request(request))
            .await
            .map_err(|_| {
                gateway_error(
                    ErrorKind::ServiceUnavailable,
                    format!(
                        "The stream's brokers at {base} did not answer within {} ms; retry.",
                        limit.as_millis()
                    ),
                )
            })?;
        answer.map_err(|error| {
            // The client's error names the stage; its sources say why (refused, a
            // certificate not trusted, …).
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            gateway_error(
                ErrorKind::ServiceUnavailable,
                format!("The stream's brokers at {base} cannot be reached ({reason}); retry."),
            )
        })
    }

    /// Serves one Kinesis request, and counts it.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let started = std::time::Instant::now();
        let operation = crate::broker::protocol::Operation::from_target(
            request
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok()),
        )
        .map_or("unknown", |operation| operation.name());
        let response = self.answer(request).await;
        self.metrics.observe(
            operation,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        response
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        let is_cbor = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("cbor"));
        let answer = async {
            let body = Limited::new(body, MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| gateway_error(ErrorKind::Serialization, e.to_string()))?
                .to_bytes();
            let operation = parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .and_then(|t| t.strip_prefix("Kinesis_20131202."))
                .unwrap_or("")
                .to_owned();
            let json = if is_cbor {
                cbor::request_to_json(&body).unwrap_or_default()
            } else {
                body.to_vec()
            };
            let document: Value = serde_json::from_slice(&json).unwrap_or(Value::Null);
            match route::target(&operation, &document) {
                Target::Stream(name) => {
                    let base = self.routes.endpoint(&name).ok_or_else(|| {
                        gateway_error(
                            ErrorKind::ResourceNotFound,
                            format!("Stream {name} not found."),
                        )
                    })?;
                    let answer = self.send(&base, &parts, body).await?;
                    Ok(answer.map(|b| Upstream(b).boxed()))
                }
                Target::Any => {
                    let (_, base) = self.routes.all().into_iter().next().ok_or_else(|| {
                        gateway_error(
                            ErrorKind::ServiceUnavailable,
                            "The gateway knows no stream's brokers yet; retry.",
                        )
                    })?;
                    let answer = self.send(&base, &parts, body).await?;
                    Ok(answer.map(|b| Upstream(b).boxed()))
                }
                Target::Every => self.list_streams(&parts, body, &document, is_cbor).await,
                // A broker words the missing member exactly as Kinesis does: send it to one.
                Target::Unnamed => match self.routes.all().into_iter().next() {
                    Some((_, base)) => {
                        let answer = self.send(&base, &parts, body).await?;
                        Ok(answer.map(|b| Upstream(b).boxed()))
                    }
                    None => Err(gateway_error(
                        ErrorKind::InvalidArgument,
                        "Either StreamName or StreamARN should be provided.",
                    )),
                },
            }
        }
        .await;
        answer.unwrap_or_else(|error| error_response(&error, is_cbor))
    }

    /// ListStreams: asks every stream's brokers (each checks the signature) and merges.
    async fn list_streams(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        document: &Value,
        is_cbor: bool,
    ) -> Result<Response<ResponseBody>, ApiError> {
        let limit = document
            .get("Limit")
            .and_then(Value::as_u64)
            .map_or(100, |l| l as usize);
        let mut names = Vec::new();
        let mut summaries = Vec::new();
        let mut any_has_more = false;
        // Each broker once, however many of its streams the table names.
        let mut endpoints: Vec<Uri> = self.routes.all().into_values().collect();
        endpoints.sort_by_key(Uri::to_string);
        endpoints.dedup();
        for base in endpoints {
            let answer = self.send(&base, parts, body.clone()).await?;
            let status = answer.status();
            let bytes = answer
                .into_body()
                .collect()
                .await
                .map_err(|e| gateway_error(ErrorKind::ServiceUnavailable, e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                // An error (a signature refused, say) is the answer, as the broker gave it.
                let content_type = if is_cbor {
                    cbor::CONTENT_TYPE
                } else {
                    crate::broker::protocol::JSON_CONTENT_TYPE
                };
                return Ok(respond(status.as_u16(), bytes.to_vec(), content_type));
            }
            let json = if is_cbor {
                cbor::request_to_json(&bytes).unwrap_or_default()
            } else {
                bytes.to_vec()
            };
            let page: Value = serde_json::from_slice(&json).unwrap_or(Value::Null);
            any_has_more |= page["HasMoreStreams"].as_bool().unwrap_or(false);
            names.extend(
                page["StreamNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned)),
            );
            summaries.extend(
                page["StreamSummaries"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        let (names, has_more) = route::merge_names(names, limit, any_has_more);
        summaries.retain(|s| {
            s["StreamName"]
                .as_str()
                .is_some_and(|n| names.iter().any(|kept| kept == n))
        });
        summaries.sort_by(|a, b| a["StreamName"].as_str().cmp(&b["StreamName"].as_str()));
        let mut page = json!({
            "StreamNames": names,
            "HasMoreStreams": has_more,
            "StreamSummaries": summaries,
        });
        // A token every broker reads as "after this name": the client sends it back
        // unchanged (it is signed), and each broker continues where the merged page ended.
        if let (true, Some(last)) = (has_more, names.last()) {
            page["NextToken"] = json!(crate::broker::ops::list_streams_token(
                last,
                crate::broker::shard::wall_clock_ms()
            ));
        }
        let merged = serde_json::to_vec(&page).unwrap_or_default();
        Ok(if is_cbor {
            respond(200, cbor::json_to_cbor(&merged), cbor::CONTENT_TYPE)
        } else {
            respond(200, merged, crate::broker::protocol::JSON_CONTENT_TYPE)
        })
    }
}

/// Everything `brook gateway` can be told.
pub struct GatewayOptions {
    /// Address of the Kinesis API.
    pub listen: SocketAddr,
    /// Address of `/healthz` and `/readyz`.
    pub metrics_listen: SocketAddr,
    /// Fixed routes; when empty, the `Stream` resources of `namespace`.
    pub routes: BTreeMap<String, Uri>,
    /// The namespace whose Streams the gateway serves (the client's default when absent).
    pub namespace: Option<String>,
    /// A PEM bundle of the CAs `https://` brokers' certificates are trusted by (the system's
    /// roots when absent).
    pub broker_ca: Option<std::path::PathBuf>,
    /// The gateway's own certificate and key: clients then reach it over HTTPS.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// After SIGTERM, how long the gateway keeps serving with `/readyz` failing before it
    /// stops taking connections (a second signal ends it).
    pub shutdown_delay: std::time::Duration,
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, GatewayError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| GatewayError::Listen {
            address,
            message: e.to_string(),
        })
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub async fn run(options: GatewayOptions) -> Result<(), GatewayError> {
    let (routes, ready) = if options.routes.is_empty() {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| GatewayError::Kube(e.to_string()))?;
        let namespace = options
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let api: kube::Api<Stream> = kube::Api::namespaced(client, &namespace);
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "watching Streams failed; retrying");
                }
            }
        });
        tracing::info!(%namespace, "routing by the namespace's Stream resources");
        let listed = Arc::new(AtomicBool::new(false));
        let waiting = reader.clone();
        let flag = listed.clone();
        tokio::spawn(async move {
            if waiting.wait_until_ready().await.is_ok() {
                flag.store(true, Ordering::Relaxed);
            }
        });
        (Routes::Streams(reader), listed)
    } else {
        (
            Routes::Fixed(options.routes.clone()),
            Arc::new(AtomicBool::new(true)),
        )
    };
    let client_tls = crate::http1::client_tls_from_file(options.broker_ca.as_deref())
        .map_err(GatewayError::Ca)?;
    let gateway = Arc::new(Gateway::new(routes, client_tls)?);
    let tls = match &options.tls {
        Some((cert, key)) => {
            let reloading = Arc::new(crate::broker::tls::ReloadingTls::load(
                cert.clone(),
                key.clone(),
            )?);
            tokio::spawn(reloading.clone().watch());
            Some(reloading)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let api = bind(options.listen).await?;
    let observability = bind(options.metrics_listen).await?;
    let api_address = api.local_addr().map_err(|e| GatewayError::Listen {
        address: options.listen,
        message: e.to_string(),
    })?;
    let metrics_address = observability
        .local_addr()
        .map_err(|e| GatewayError::Listen {
            address: options.metrics_listen,
            message: e.to_string(),
        })?;
    let (stop, stopped) = watch::channel(false);
    let stopping = Arc::new(AtomicBool::new(false));
    let api_gateway = gateway.clone();
    let api_task = tokio::spawn(serve(
        api,
        tls,
        move |request| {
            let gateway = api_gateway.clone();
            async move { Ok::<_, Infallible>(gateway.handle(request).await) }
        },
        stopped.clone(),
    ));
    let obs_gateway = gateway.clone();
    let obs_stopping = stopping.clone();
    let obs_task = tokio::spawn(serve(
        observability,
        None,
        move |request: Request<Incoming>| {
            let ready = ready.clone();
            let stopping = obs_stopping.clone();
            let gateway = obs_gateway.clone();
            async move {
                let text = "text/plain; charset=utf-8";
                let is_stopping = stopping.load(Ordering::Relaxed);
                let is_ready = ready.load(Ordering::Relaxed) && !is_stopping;
                Ok::<_, Infallible>(match (request.method(), request.uri().path()) {
                    (&Method::GET, "/healthz") => respond(200, b"ok\n".to_vec(), text),
                    (&Method::GET, "/metrics") => respond(
                        200,
                        gateway.render_metrics(),
                        "text/plain; version=0.0.4; charset=utf-8",
                    ),
                    (&Method::GET, "/readyz") if is_ready => {
                        respond(200, b"ready\n".to_vec(), text)
                    }
                    (&Method::GET, "/readyz") if is_stopping => {
                        respond(503, b"stopping\n".to_vec(), text)
                    }
                    (&Method::GET, "/readyz") => {
                        respond(503, b"the Streams are not listed yet\n".to_vec(), text)
                    }
                    _ => respond(404, b"not found\n".to_vec(), text),
                })
            }
        },
        stopped,
    ));
    println!(
        "brook gateway listening on {scheme}://{api_address} (health on http://{metrics_address}/healthz)"
    );
    crate::broker::wait_for_signal().await;
    stopping.store(true, Ordering::Relaxed);
    crate::broker::serve_on_while_steered_away(options.shutdown_delay).await;
    let _ = stop.send(true);
    let _ = api_task.await;
    let _ = obs_task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gateway_brokers_that_never_answer_get_a_retryable_error() {
        let address = crate::broker::upstream::silent_broker().await;
        let base: Uri = format!("http://{address}").parse().expect("url");
        let routes = Routes::Fixed(BTreeMap::from([("frozen".to_owned(), base.clone())]));
        let tls = crate::http1::client_tls_from_file(None).expect("tls");
        let mut gateway = Gateway::new(routes, tls).expect("gateway");
        gateway.answer_limit = Duration::from_millis(200);
        let (parts, ()) = Request::post("/")
            .header("x-amz-target", "Kinesis_20131202.DescribeStream")
            .body(())
            .expect("request")
            .into_parts();
        let sent = gateway.send(
            &base,
            &parts,
            Bytes::from_static(b"{\"StreamName\":\"frozen\"}"),
        );
        let refused = tokio::time::timeout(Duration::from_secs(60), sent)
            .await
            .expect("the gateway stopped waiting")
            .map(|_| ())
            .expect_err("no answer came");
        assert_eq!(refused.kind, ErrorKind::ServiceUnavailable);
        assert!(refused.message.contains("within 200 ms"), "{refused:?}");
    }
}
