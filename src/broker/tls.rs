//! TLS for the Kinesis API with rustls: a certificate and key from PEM files, offered with
//! ALPN `h2` and `http/1.1`, and reloaded when the files change (cert-manager rotation).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the certificate and key.
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn pem_error(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Builds a server configuration from a certificate chain and a private key in PEM.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error(cert))?
        .collect::<Result<_, _>>()
        .map_err(pem_error(cert))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.display().to_string(),
            message: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The current TLS configuration, replaced when the PEM files change.
pub struct ReloadingTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<ServerConfig>, Option<SystemTime>)>,
}

fn modified(paths: [&Path; 2]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

impl ReloadingTls {
    /// Loads the certificate and key.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let config = server_config(&cert, &key)?;
        let stamp = modified([&cert, &key]);
        Ok(Self {
            cert,
            key,
            current: RwLock::new((Arc::new(config), stamp)),
        })
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// Reloads when a file changed; a broken pair keeps the previous configuration.
    pub fn refresh(&self) {
        let stamp = modified([&self.cert, &self.key]);
        if stamp
            == self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .1
        {
            return;
        }
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = (Arc::new(config), stamp);
                tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
            }
            Err(error) => tracing::warn!(%error, "keeping the previous TLS certificate"),
        }
    }

    /// Checks the files every few seconds, forever.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Duration::from_secs(2));
        loop {
            ticks.tick().await;
            self.refresh();
        }
    }
}
