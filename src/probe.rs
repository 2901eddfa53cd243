//! `brook probe`: one HTTP GET, for health checks from inside the image (which has no shell and
//! no curl) such as the Helm chart's `helm test` hook.

use bytes::Bytes;
use http_body_util::Empty;
use tokio::net::TcpStream;

/// Why a probe got no status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not an `http://host[:port]/path` URL.
    #[error("not an http:// URL: {0}")]
    Url(String),
    /// No connection, or it broke before an answer.
    #[error("{url}: {message}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
}

/// GETs `url` and returns the answer's status code.
pub async fn get_status(url: &str) -> Result<u16, ProbeError> {
    let uri: http::Uri = url.parse().map_err(|_| ProbeError::Url(url.to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(ProbeError::Url(url.to_owned()));
    }
    let host = uri.host().ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let port = uri.port_u16().unwrap_or(80);
    let unreachable = |e: &dyn std::fmt::Display| ProbeError::Unreachable {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| unreachable(&e))?;
    let authority = uri.authority().map_or(host, |a| a.as_str()).to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    let response = crate::http1::send(stream, request)
        .await
        .map_err(|e| unreachable(&e))?;
    Ok(response.status().as_u16())
}
