//! HTTP front ends: the Kinesis API (HTTP/1.1 and cleartext HTTP/2 with prior knowledge on
//! one port) and the observability port (`/metrics`, `/healthz`, `/readyz`).
//!
//! The one place a request is decoded into an operation is [`handle_kinesis`].

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::auth;
use super::cluster;
use super::ops;
use super::protocol::body::Body;
use super::protocol::{
    ApiError, ErrorKind, JSON_CONTENT_TYPE, Operation, cbor, eventstream, front, validate,
};
use super::state::Broker;
use super::tls::ReloadingTls;

/// Largest request body accepted: a 10 MiB PutRecords in base64 with its JSON around it.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long a client gets to finish a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);
/// The process id, read once: `std::process::id()` is a system call every time.
static PROCESS_ID: std::sync::LazyLock<u32> = std::sync::LazyLock::new(std::process::id);
/// The length of a request id: 8, 4, 4 and 12 hex digits and three dashes.
const REQUEST_ID_LEN: usize = 31;

/// A request id in the shape of a UUID: the process id, then the request's number.
fn request_id() -> String {
    use std::fmt::Write as _;
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(REQUEST_ID_LEN);
    let _ = write!(
        id,
        "{:08x}-{:04x}-{:04x}-{:012x}",
        *PROCESS_ID,
        (n >> 48) as u16,
        (n >> 32) as u16,
        n & 0xffff_ffff_ffff
    );
    id
}

pub(crate) fn respond(
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// An error in the request's protocol: JSON, or CBOR when the request was CBOR.
pub(crate) fn error_response(error: &ApiError, is_cbor: bool) -> Response<ResponseBody> {
    let mut response = if is_cbor {
        respond(
            error.kind.status(),
            cbor::error_body(error),
            cbor::CONTENT_TYPE,
        )
    } else {
        respond(error.kind.status(), error.body(), JSON_CONTENT_TYPE)
    };
    if let Ok(value) = HeaderValue::from_str(error.kind.type_name()) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

/// The body of every response: a whole JSON document or a stream of events.
pub type ResponseBody = BoxBody<Bytes, Infallible>;

/// What an operation answers with.
enum Reply {
    /// A JSON document (transcoded for a CBOR request).
    Json(Vec<u8>),
    /// A CBOR document, for a CBOR request.
    Cbor(Vec<u8>),
    /// Event stream messages, sent as they come.
    Events(tokio::sync::mpsc::Receiver<Bytes>),
    /// What the front end answers before any operation runs.
    Front(front::Answer),
    /// Another pod's answer, passed through as it comes.
    Relayed(Response<ResponseBody>),
}

impl From<ops::Answer> for Reply {
    fn from(answer: ops::Answer) -> Self {
        match answer {
            ops::Answer::Json(json) => Self::Json(json),
            ops::Answer::Cbor(cbor) => Self::Cbor(cbor),
        }
    }
}

/// A response body fed by a channel; it ends when the sender goes.
struct ChannelBody {
    events: tokio::sync::mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// Serves one Kinesis API request.
pub async fn handle_kinesis(
    broker: Arc<Broker>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    handle(broker, request, cluster::Entry::Client).await
}

/// An internal request's whole body, or the 400 that answers a body that could not be read.
async fn collected(request: Request<Incoming>) -> Result<Bytes, Response<ResponseBody>> {
    match request.into_body().collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) => Err(respond(400, error.to_string().into_bytes(), "text/plain")),
    }
}

/// Serves one request on a clustered broker's internal port: the catalog for the other pods,
/// or a Kinesis request another pod relayed, with its caller's identity in a header.
pub async fn handle_peer(
    broker: Arc<Broker>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    if request.method() == http::Method::GET && request.uri().path() == cluster::CATALOG_PATH {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let (Some(cluster), Some(pod), Some(rate)) = (
            broker.cluster.get(),
            header(cluster::rates::POD_HEADER).and_then(|p| p.parse::<u32>().ok()),
            header(cluster::rates::RATE_HEADER).and_then(|r| r.parse::<f64>().ok()),
        ) {
            cluster.rates.record(pod, rate, std::time::Instant::now());
            if let Some(demand) =
                header(cluster::rates::DEMAND_HEADER).and_then(|d| cluster::rates::parse_demand(&d))
            {
                cluster.rates.record_demand(pod, demand);
            }
        }
        let document = cluster::replica::catalog_document(&broker).await;
        return Ok(respond(200, document, "application/json"));
    }
    let path = request.uri().path();
    if request.method() == http::Method::GET && path == cluster::silence::PING_PATH {
        return Ok(respond(200, b"ok\n".to_vec(), "text/plain"));
    }
    if request.method() == http::Method::POST
        && (path == cluster::closing::CLOSE_PATH || path == cluster::closing::REOPEN_PATH)
    {
        let path = path.to_owned();
        let body = match collected(request).await {
            Ok(body) => body,
            Err(refusal) => return Ok(refusal),
        };
        let (status, answer) = cluster::closing::serve(&broker, &path, &body).await;
        return Ok(respond(status, answer, "application/json"));
    }
    if request.method() == http::Method::POST && path == cluster::put_part::PUT_PATH {
        let caller = cluster::parse_caller(
            request
                .headers()
                .get(cluster::CALLER_HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        let body = match collected(request).await {
            Ok(body) => body,
            Err(refusal) => return Ok(refusal),
        };
        let (status, answer) = cluster::put_part::serve(&broker, caller, &body).await;
        return Ok(respond(status, answer, "application/octet-stream"));
    }
    if request.method() == http::Method::POST
        && (path == cluster::moving::LISTING_PATH || path == cluster::moving::BATCHES_PATH)
    {
        let path = path.to_owned();
        let body = match collected(request).await {
            Ok(body) => body,
            Err(refusal) => return Ok(refusal),
        };
        let (status, answer) = cluster::moving::serve_segments(&broker, &path, &body);
        return Ok(respond(status, answer, "application/octet-stream"));
    }
    if request.method() == http::Method::POST && path == cluster::moving::IMPORT_PATH {
        let body = match collected(request).await {
            Ok(body) => body,
            Err(refusal) => return Ok(refusal),
        };
        let (status, answer) = cluster::moving::serve_import(&broker, &body).await;
        return Ok(respond(status, answer, "application/json"));
    }
    if request.method() == http::Method::POST && path == cluster::shard_read::QUERY_PATH {
        let body = match collected(request).await {
            Ok(body) => body,
            Err(refusal) => return Ok(refusal),
        };
        let (status, answer) = cluster::shard_read::serve(&broker, &body).await;
        return Ok(respond(status, answer, "application/json"));
    }
    handle(broker, request, cluster::Entry::Peer).await
}

async fn handle(
    broker: Arc<Broker>,
    request: Request<Incoming>,
    entry: cluster::Entry,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let id = request_id();
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    if target.is_some_and(|t| t.starts_with(crate::delivery::firehose::TARGET_PREFIX)) {
        return Ok(handle_firehose(&broker, request).await);
    }
    if target.is_some_and(|t| t.starts_with(cluster::admin::TARGET_PREFIX)) {
        return Ok(handle_cluster_admin(&broker, request, entry).await);
    }
    let operation = Operation::from_target(target);
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let front_request = front::Request {
        method: parts.method.as_str(),
        content_type: header("content-type").map(|t| t.split(';').next().unwrap_or("").trim()),
        target: header("x-amz-target"),
        origin: parts.headers.contains_key(http::header::ORIGIN),
        preflight_headers: header("access-control-request-headers"),
        preflight_method: header("access-control-request-method"),
    };
    let cors = front::cors_headers(&front_request);
    if let Err(answer) = front::before_body(&front_request) {
        let mut response = front_response(answer);
        add_headers(&mut response, &[("x-amzn-RequestId", id)]);
        return Ok(response);
    }
    let mut is_cbor = front_request
        .content_type
        .is_some_and(|t| t.contains("cbor"));
    let result = async {
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(ApiError::new(
                    ErrorKind::RequestEntityTooLarge,
                    format!("Request body exceeds {MAX_BODY_BYTES} bytes."),
                ));
            }
            Err(error) => {
                return Err(ApiError::new(
                    ErrorKind::Serialization,
                    format!("Could not read the request body: {error}"),
                ));
            }
        };
        // As Kinesis does: the protocol, the body's shape and the operation first, then the
        // signature, then everything else.
        match front::after_body(&front_request, operation.is_ok(), &body) {
            Ok(protocol) => is_cbor = protocol == front::Protocol::Cbor,
            Err(answer) => return Ok(Reply::Front(answer)),
        }
        let caller = caller_of(&broker, entry, &parts, &body)?;
        let operation = operation.clone()?;
        ops::refuse_unmanaged_change(&broker, operation, &caller)?;
        // A clustered pod may relay the request as the client sent it.
        let raw = broker.cluster.get().map(|_| body.clone());
        // CBOR requests are transcoded to the JSON shapes the operations read, and their
        // answers back, so both protocols run the same code; the writes read a CBOR body as
        // it came.
        let reads_cbor = is_cbor && Body::reads_cbor(operation);
        let body = if is_cbor && !reads_cbor {
            Bytes::from(cbor::request_to_json(&body)?)
        } else {
            body
        };
        let body = if reads_cbor {
            Body::Cbor(&body)
        } else {
            Body::Json(&body)
        };
        ops::authorize(&broker, operation, body, &caller)?;
        let encoding = if is_cbor {
            ops::Encoding::Cbor
        } else {
            ops::Encoding::Json
        };
        if let (Some(cluster), Some(raw)) = (broker.cluster.get(), raw) {
            let relayed = cluster::relay::Relayed {
                operation,
                content_type: front_request.content_type.unwrap_or(JSON_CONTENT_TYPE),
                body: raw,
                caller: &caller,
            };
            // Boxed: the relay and split futures are large, and a request served here should
            // not carry their state.
            match Box::pin(cluster::serve(
                &broker, cluster, entry, body, relayed, encoding,
            ))
            .await?
            {
                cluster::Served::Here => {}
                cluster::Served::Answered(answer) => return Ok(Reply::from(answer)),
                cluster::Served::Relayed(answer) => return Ok(Reply::Relayed(answer)),
            }
        }
        if operation == Operation::SubscribeToShard {
            // Not dispatched (its answer is an event stream), so checked against the model here.
            let body = body.json()?;
            validate::check(operation.name(), &body)?;
            let events = ops::subscribe::subscribe(&broker, &body, is_cbor).await?;
            return Ok(Reply::Events(events));
        }
        ops::dispatch(&broker, operation, body, encoding)
            .await
            .map(Reply::from)
    }
    .await;
    // A pod that refused another pod's request under its own older map catches up before it
    // answers, so the sender's one retry finds it current.
    if entry == cluster::Entry::Peer
        && let Err(error) = &result
    {
        cluster::replica::catch_up_after_refusal(&broker, error).await;
    }
    let operation = operation.ok();
    let outcome = match &result {
        Ok(Reply::Front(answer)) => answer.outcome(),
        Ok(Reply::Relayed(answer)) if !answer.status().is_success() => "relayed_error".to_owned(),
        Ok(_) => "ok".to_owned(),
        Err(error) => error.kind.type_name().to_owned(),
    };
    let mut response = match result {
        Ok(Reply::Json(body)) if is_cbor => {
            respond(200, cbor::json_to_cbor(&body), cbor::CONTENT_TYPE)
        }
        Ok(Reply::Json(body)) => respond(200, body, JSON_CONTENT_TYPE),
        Ok(Reply::Cbor(body)) => respond(200, body, cbor::CONTENT_TYPE),
        Ok(Reply::Front(answer)) => front_response(answer),
        Ok(Reply::Relayed(answer)) => answer,
        Ok(Reply::Events(events)) => {
            let mut response = Response::new(ChannelBody { events }.boxed());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(eventstream::CONTENT_TYPE),
            );
            response
        }
        Err(error) => {
            if error.kind == ErrorKind::InternalFailure {
                tracing::warn!(request_id = %id, %error, "request failed");
            }
            error_response(&error, is_cbor)
        }
    };
    broker
        .metrics
        .observe(operation, &outcome, started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert("x-amzn-RequestId", value.clone());
        response.headers_mut().insert("x-amz-id-2", value);
    }
    add_headers(&mut response, &cors);
    Ok(response)
}

fn add_headers(response: &mut Response<ResponseBody>, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
}

/// The answer the front end decided on, in the request's protocol.
fn front_response(answer: front::Answer) -> Response<ResponseBody> {
    let body = match answer.body {
        front::Body::Empty => Vec::new(),
        front::Body::Raw(text) => text.into_bytes(),
        front::Body::Document(document) => {
            let json = serde_json::to_vec(&document).unwrap_or_default();
            if answer.content_type == Some(cbor::CONTENT_TYPE) {
                cbor::json_to_cbor(&json)
            } else {
                json
            }
        }
    };
    let mut response = match answer.content_type {
        Some(content_type) => respond(answer.status, body, content_type),
        None => {
            let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
            *response.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
            response
        }
    };
    add_headers(&mut response, &answer.headers);
    response
}

/// Serves one call of the Firehose API (a standalone broker's delivery streams), signed and
/// checked as Kinesis calls are.
async fn handle_firehose(broker: &Broker, request: Request<Incoming>) -> Response<ResponseBody> {
    use crate::delivery::firehose::{self, FirehoseError};
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = request.into_parts();
    let body = match firehose::read_body(body).await {
        Ok(body) => body,
        Err(error) => return firehose::response(Err(error)),
    };
    if let Err(error) = authenticate(broker, &parts, &body, "firehose") {
        return error_response(&error, false);
    }
    let answer = async {
        let operation = firehose::operation(target.as_deref())?;
        // A managed broker runs delivery workers only for its channels.
        let control = broker
            .firehose
            .get()
            .filter(|_| broker.settings.managed_by.is_none())
            .ok_or_else(|| {
                FirehoseError::unavailable(
                    "this broker serves no Firehose API (an operator-managed broker: use DeliveryStream resources)",
                )
            })?;
        control
            .handle(operation, &body, |name| broker.stream(name).is_some())
            .await
    }
    .await;
    firehose::response(answer)
}

/// Who sent a Kinesis request: its SigV4 signature says, at the pod the client reached;
/// a request another pod relayed carries the caller that pod verified.
fn caller_of(
    broker: &Broker,
    entry: cluster::Entry,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<ops::Caller, ApiError> {
    match entry {
        cluster::Entry::Client => authenticate(broker, parts, body, "kinesis"),
        cluster::Entry::Peer => cluster::parse_caller(
            parts
                .headers
                .get(cluster::CALLER_HEADER)
                .and_then(|v| v.to_str().ok()),
        )
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::MissingAuthenticationToken,
                "Missing Authentication Token",
            )
        }),
    }
}

/// Serves a placement operation of the operator (`cluster::admin`).
async fn handle_cluster_admin(
    broker: &Arc<Broker>,
    request: Request<Incoming>,
    entry: cluster::Entry,
) -> Response<ResponseBody> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (parts, body) = request.into_parts();
    let answer = async {
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorKind::Serialization,
                    format!("Could not read the request body: {e}"),
                )
            })?
            .to_bytes();
        let caller = caller_of(broker, entry, &parts, &body)?;
        cluster::admin::serve(broker, &target, &body, &caller).await
    }
    .await;
    match answer {
        Ok(cluster::admin::Answered::Json(body)) => respond(200, body, JSON_CONTENT_TYPE),
        Ok(cluster::admin::Answered::Relayed(answer)) => answer,
        Err(error) => error_response(&error, false),
    }
}

/// Checks the request's SigV4 signature: against the operator's admin keys when it names
/// one, otherwise against the clients' keys when the broker has any.
fn authenticate(
    broker: &Broker,
    parts: &http::request::Parts,
    body: &[u8],
    service: &str,
) -> Result<ops::Caller, ApiError> {
    let admin = broker.admin_credentials();
    let clients = broker.credentials();
    if admin.is_none() && clients.is_none() {
        let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let has_date = header("x-amz-date").is_some() || header("date").is_some();
        auth::check_form(
            header("authorization"),
            has_date,
            parts.uri.query().unwrap_or(""),
        )?;
        return Ok(ops::Caller::Anonymous);
    }
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                Cow::Borrowed(name.as_str()),
                String::from_utf8_lossy(value.as_bytes()),
            )
        })
        .chain(
            parts
                .uri
                .authority()
                .filter(|_| !parts.headers.contains_key(http::header::HOST))
                .map(|a| (Cow::Borrowed("host"), Cow::Borrowed(a.as_str()))),
        )
        .collect();
    let request = auth::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        body,
    };
    // Signatures carry the client's real time: a test clock moved for retention does not
    // move it.
    let now_ms = crate::broker::shard::wall_clock_ms();
    let region = broker.settings.region.as_str();
    // The Authorization header is parsed once to see whose key signs; `verify` checks it all.
    let signer = auth::access_key_of(&request);
    if let Some(internal) = broker.internal_credentials.get()
        && signer.as_deref().is_some_and(|key| internal.contains(key))
    {
        return auth::verify(&request, internal, region, now_ms).map(|_| ops::Caller::Admin);
    }
    if let Some(admin) = admin
        && signer.as_deref().is_some_and(|key| admin.contains(key))
    {
        return auth::verify_for(&request, &admin, region, service, now_ms)
            .map(|_| ops::Caller::Admin);
    }
    match clients {
        Some(clients) => {
            auth::verify_for(&request, &clients, region, service, now_ms).map(ops::Caller::Client)
        }
        None => Ok(ops::Caller::Anonymous),
    }
}

/// Serves the observability endpoints; with `test_clock`, also the test hooks
/// `POST /debug/freeze-clock`, `/debug/advance-clock?ms=N` and `/debug/hold-catalog-follow`.
pub async fn handle_observability(
    broker: Arc<Broker>,
    ready: watch::Receiver<bool>,
    test_clock: bool,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let text = "text/plain; charset=utf-8";
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            broker.refresh_gauges();
            let mut body = broker.metrics.render();
            if let Some(control) = broker.firehose.get() {
                body.extend(
                    control
                        .render_metrics(crate::broker::shard::wall_clock_ms())
                        .await,
                );
            }
            respond(200, body, "text/plain; version=0.0.4")
        }
        (&Method::GET, "/healthz") => match broker.store.failure() {
            None => respond(200, b"ok\n".to_vec(), text),
            Some(reason) => respond(
                503,
                format!("storage failed: {reason}\n").into_bytes(),
                text,
            ),
        },
        (&Method::GET, "/readyz") if *ready.borrow() && broker.store.failure().is_none() => {
            respond(200, b"ready\n".to_vec(), text)
        }
        (&Method::GET, "/readyz") => respond(503, b"not ready\n".to_vec(), text),
        (&Method::POST, "/debug/freeze-clock") if test_clock => {
            broker.clock.freeze();
            respond(
                200,
                format!("{}\n", broker.clock.now_ms()).into_bytes(),
                text,
            )
        }
        (&Method::POST, "/debug/advance-clock") if test_clock => {
            let ms = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse::<i64>().ok());
            match ms {
                Some(ms) => {
                    broker.clock.advance(ms);
                    respond(
                        200,
                        format!("{}\n", broker.clock.now_ms()).into_bytes(),
                        text,
                    )
                }
                None => respond(400, b"expected ?ms=<milliseconds>\n".to_vec(), text),
            }
        }
        (&Method::POST, "/debug/hold-catalog-follow") if test_clock => match broker.cluster.get() {
            Some(cluster) => {
                cluster
                    .follow_held
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                respond(200, b"held\n".to_vec(), text)
            }
            None => respond(409, b"not a cluster pod\n".to_vec(), text),
        },
        _ => respond(404, b"not found\n".to_vec(), text),
    };
    Ok(response)
}

/// Accepts connections on `listener` and serves each with `handler` over HTTP/1.1 or h2c,
/// until `shutdown` flips; then lets in-flight requests finish for up to [`DRAIN_TIMEOUT`].
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(1024);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(handler);
            let result = match tls {
                Some(tls) => {
                    // The handshake runs in the connection's own task, so a slow client
                    // never holds up the accept loop.
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(secured)) => {
                            let connection = builder
                                .serve_connection(TokioIo::new(secured), service)
                                .into_owned();
                            watcher.watch(connection).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish before the drain timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_name_the_process_and_differ_per_request() {
        let first = request_id();
        let second = request_id();
        assert_ne!(first, second);
        for id in [&first, &second] {
            assert_eq!(id.len(), REQUEST_ID_LEN, "{id}");
            let groups: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 12], "{id}");
            assert!(
                id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(
                id.starts_with(&format!("{:08x}-", std::process::id())),
                "{id}"
            );
        }
    }
}
