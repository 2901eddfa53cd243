//! Forwarding mode: a broker pod that is not its stream's home passes every Kinesis request,
//! unchanged, to the home broker and streams the answer back (event streams included).
//! The request keeps its `Host` header so SigV4 signatures still verify at home; the home
//! broker alone authenticates, stores and answers. Every pod behind the client Service thus
//! serves one consistent stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use super::protocol::{ApiError, ErrorKind};
use super::server::{ResponseBody, error_response, respond, serve};
use super::{BrokerError, bind};

/// Headers that describe one connection and must not cross the hop.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Points a request at `base` for the next hop, as it was signed: its path and query stay,
/// the host it was signed for stays in `Host` (an HTTP/2 request names it in its URI only),
/// and headers that describe one connection go.
pub(crate) fn retarget(parts: &mut http::request::Parts, base: &Uri) -> Result<(), String> {
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(http::header::HOST, value);
    }
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let mut uri = base.clone().into_parts();
    uri.path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .or_else(|| "/".parse().ok());
    parts.uri = Uri::from_parts(uri).map_err(|e| e.to_string())?;
    parts.version = http::Version::HTTP_11;
    Ok(())
}

/// Passes requests to the home broker.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Incoming>,
    home: Uri,
}

/// A response body from another broker; a broken upstream ends it early rather than
/// surfacing an error type the server's bodies do not carry.
pub(crate) struct Upstream(pub(crate) Incoming);

impl http_body::Body for Upstream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(%error, "the home broker's answer broke off");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Forwarder {
    /// A forwarder to the home broker at `home` (`http://host:port`).
    pub fn new(home: Uri) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            home,
        }
    }

    /// Forwards one request and returns the home broker's answer, or ServiceUnavailable.
    pub async fn forward(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let is_cbor = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("cbor"));
        let (mut parts, body) = request.into_parts();
        if let Err(error) = retarget(&mut parts, &self.home) {
            return self.unavailable(&error, is_cbor);
        }
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(answer) => answer.map(|body| Upstream(body).boxed()),
            Err(error) => self.unavailable(&error.to_string(), is_cbor),
        }
    }

    fn unavailable(&self, message: &str, is_cbor: bool) -> Response<ResponseBody> {
        error_response(
            &ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "The stream's home broker at {} is unreachable: {message}",
                    self.home
                ),
            ),
            is_cbor,
        )
    }
}

/// Whether the home broker accepts connections: a forwarder is ready only when it can serve.
async fn home_reachable(home: &Uri) -> bool {
    let host = home.host().unwrap_or("localhost");
    let port = home.port_u16().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
}

async fn observability(
    home: Uri,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let text = "text/plain; charset=utf-8";
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => respond(200, b"ok\n".to_vec(), text),
        (&Method::GET, "/readyz") if home_reachable(&home).await => {
            respond(200, b"ready\n".to_vec(), text)
        }
        (&Method::GET, "/readyz") => respond(503, b"home broker unreachable\n".to_vec(), text),
        (&Method::GET, "/metrics") => respond(
            200,
            b"# forwarding broker: its home broker serves the stream's metrics\n".to_vec(),
            text,
        ),
        _ => respond(404, b"not found\n".to_vec(), text),
    })
}

/// Runs a forwarding broker until SIGTERM or Ctrl-C.
pub async fn run(
    listen: SocketAddr,
    metrics_listen: SocketAddr,
    home: Uri,
) -> Result<(), BrokerError> {
    let api = bind(listen).await?;
    let metrics = bind(metrics_listen).await?;
    let api_address = api.local_addr().map_err(|e| BrokerError::Listen {
        address: listen,
        message: e.to_string(),
    })?;
    let metrics_address = metrics.local_addr().map_err(|e| BrokerError::Listen {
        address: metrics_listen,
        message: e.to_string(),
    })?;
    let (stop, stopped) = watch::channel(false);
    let forwarder = Forwarder::new(home.clone());
    let api_task = tokio::spawn(serve(
        api,
        None,
        move |request| {
            let forwarder = forwarder.clone();
            async move { Ok::<_, Infallible>(forwarder.forward(request).await) }
        },
        stopped.clone(),
    ));
    let probe_home = home.clone();
    let metrics_task = tokio::spawn(serve(
        metrics,
        None,
        move |request| observability(probe_home.clone(), request),
        stopped,
    ));
    tracing::info!(api = %api_address, home = %home, "forwarding broker started: every request goes to the stream's home broker");
    println!(
        "brook broker listening on http://{api_address} (metrics on http://{metrics_address}/metrics)"
    );
    super::wait_for_signal().await;
    let _ = stop.send(true);
    let _ = api_task.await;
    let _ = metrics_task.await;
    Ok(())
}
