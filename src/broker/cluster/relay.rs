//! Relaying a request whole to the pod that serves it, over the internal port, and streaming
//! its answer back (event streams included) as it comes.

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;

use super::{CALLER_HEADER, Cluster, caller_header};
use crate::broker::ops::Caller;
use crate::broker::protocol::{ApiError, ErrorKind, Operation};
use crate::broker::server::ResponseBody;
use crate::broker::upstream::Upstream;

/// What a relayed request carries: the client's own body and content type, so the serving
/// pod answers in the client's protocol (JSON or CBOR) and the answer passes through as is.
#[derive(Clone)]
pub struct Relayed<'a> {
    /// The operation.
    pub operation: Operation,
    /// The request's content type.
    pub content_type: &'a str,
    /// The body as the client sent it.
    pub body: Bytes,
    /// Who sent it, as its signature showed.
    pub caller: &'a Caller,
}

/// Sends `request` to pod `ordinal` and returns its answer, or a retryable
/// `ServiceUnavailable` when the pod cannot be reached.
pub async fn relay(
    cluster: &Cluster,
    ordinal: u32,
    request: Relayed<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let target = format!("Kinesis_20131202.{}", request.operation.name());
    let request = Request {
        target: &target,
        content_type: request.content_type,
        body: request.body,
        caller: request.caller,
    };
    send(cluster, ordinal, request).await
}

/// Any request to relay: its target, content type, body and caller.
pub struct Request<'a> {
    /// Its `X-Amz-Target`.
    pub target: &'a str,
    /// Its content type.
    pub content_type: &'a str,
    /// Its body.
    pub body: Bytes,
    /// Who sent it.
    pub caller: &'a Caller,
}

/// Sends `request` to pod `ordinal`'s internal port and returns its answer, or a retryable
/// `ServiceUnavailable` when the pod cannot be reached.
pub async fn send(
    cluster: &Cluster,
    ordinal: u32,
    request: Request<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let builder = http::Request::post("/")
        .header(http::header::CONTENT_TYPE, request.content_type)
        .header("x-amz-target", request.target)
        .header(CALLER_HEADER, caller_header(request.caller));
    match cluster.send(ordinal, builder, "/", request.body).await {
        Ok(answer) => Ok(answer.map(|body| Upstream(body).boxed())),
        Err(error) => {
            tracing::warn!(%error, "relay failed");
            Err(ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!("The pod serving this request is unavailable ({error}); retry."),
            ))
        }
    }
}
