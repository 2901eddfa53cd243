//! One request over a fresh HTTP/1.1 connection, plain or TLS: the operator's admin calls to the
//! brokers, its Prometheus queries, and `brook probe`.

use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Sends `request` over `io` and returns the answer's head with its body still to read; the
/// connection lives as long as the answer is being read.
pub async fn send<S, B>(
    io: S,
    request: http::Request<B>,
) -> Result<http::Response<Incoming>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}
