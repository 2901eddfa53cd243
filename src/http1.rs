//! One request over a fresh HTTP/1.1 connection, plain or TLS: the operator's admin calls to the
//! brokers, its Prometheus queries and scrapes of delivery workers, a delivery worker's POSTs to
//! an HTTP endpoint, and `brook probe`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
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
    handshake(io).await?.send_request(request).await
}

/// The host of a `host:port` address.
pub fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(host, _)| host)
}

/// Opens TLS over `tcp` to the server named `host`.
pub async fn connect_tls(
    host: &str,
    tcp: tokio::net::TcpStream,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name =
        rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}

/// An HTTP/1.1 connection over `io` kept for many requests (the connection runs in its own
/// task until the sender is dropped).
pub async fn handshake<S, B>(
    io: S,
) -> Result<hyper::client::conn::http1::SendRequest<B>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `request` to `host:port` over a fresh connection (TLS with `tls`, the server named
/// `host`) and returns the status and the whole body; a failure is its message.
pub async fn exchange<B>(
    host: &str,
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    request: http::Request<B>,
) -> Result<(http::StatusCode, Bytes), String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let response = match tls {
        None => send(tcp, request).await,
        Some(config) => send(connect_tls(host, tcp, config).await?, request).await,
    }
    .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// A TLS client configuration trusting the PEM certificates in the file `ca_file`, or the
/// system's roots; a failure names the file.
pub fn client_tls_from_file(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    let pem = match ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };
    client_tls(pem.as_deref()).map_err(|e| match ca_file {
        Some(path) => format!("{}: {e}", path.display()),
        None => e,
    })
}

/// A TLS client configuration trusting the PEM certificates of `ca_pem`, or the system's roots.
pub fn client_tls(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            if roots.is_empty() {
                return Err("no certificate in it".into());
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot parse is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
