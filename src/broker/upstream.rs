//! Passing a request on to another broker (a cluster pod relaying to a shard's owner, the
//! gateway to a stream's brokers) as its client signed it, and streaming the answer back.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use super::protocol::Operation;

/// How long connecting to another broker may take before it counts as unreachable (a pod
/// on a node that went away drops the connection attempt rather than refusing it).
pub(crate) const CONNECT_LIMIT: Duration = Duration::from_secs(3);
/// How long a connection to another broker may go silent before TCP keepalive probes start,
/// between probes, and how many unanswered probes close it: a broker whose node went away
/// is noticed in about 30 s even on a connection that only waits (a relayed subscription).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;

/// Headers that describe one connection and must not cross the hop.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The connector a broker and the gateway reach other brokers with: `http://` or `https://`
/// (trusting what `tls` trusts), no Nagle delay, a bounded connect and keepalive probes.
pub(crate) fn broker_connector(tls: rustls::ClientConfig) -> HttpsConnector<HttpConnector> {
    let mut plain = HttpConnector::new();
    plain.set_nodelay(true);
    plain.enforce_http(false);
    plain.set_connect_timeout(Some(CONNECT_LIMIT));
    plain.set_keepalive(Some(KEEPALIVE_IDLE));
    plain.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    plain.set_keepalive_retries(Some(KEEPALIVE_PROBES));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(plain)
}

/// How long the broker serving `operation` holds it before answering, by design: a
/// long-polling receive waits up to its longest wait for a record; every other call starts
/// its answer once it has done its work. A hop waits this long on top of its own limit.
pub(crate) fn held_by_design(operation: Option<Operation>) -> Duration {
    match operation {
        Some(Operation::ReceiveQueueRecords | Operation::ReceiveDeadLetterQueueRecords) => {
            Duration::from_secs(super::ops::queues::MAX_WAIT_S)
        }
        _ => Duration::ZERO,
    }
}

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
                tracing::warn!(%error, "another broker's answer broke off");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A stand-in for a broker that takes connections and never answers (one that is stopped,
/// or whose node froze): it holds every connection it took until the test ends.
#[cfg(test)]
pub(crate) async fn silent_broker() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    address
}
