//! Passing a request on to another broker (a cluster pod relaying to a shard's owner, the
//! gateway to a stream's brokers) as its client signed it, and streaming the answer back.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Uri};
use hyper::body::Incoming;

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
