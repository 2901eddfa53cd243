//! A client of the Prometheus HTTP API for the autoscaler: instant and range queries over
//! HTTP or HTTPS (the system's roots, or a custom CA), with a bearer token or basic auth, each
//! call bounded by a timeout.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Empty;
use serde_json::Value;

use crate::autoscale::queries::{AnswerError, Series, parse};

/// Why a query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The URL is not an `http://` or `https://` URL.
    #[error("not a Prometheus URL: {0}")]
    Url(String),
    /// The CA bundle holds no usable certificate.
    #[error("the CA bundle cannot be used: {0}")]
    Ca(String),
    /// No connection, or it broke, or it took longer than the timeout.
    #[error("Prometheus at {url} cannot be reached: {message}")]
    Unreachable {
        /// The server.
        url: String,
        /// What failed.
        message: String,
    },
    /// Prometheus answered with an HTTP error.
    #[error("Prometheus answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was an API error, or not the documented shape.
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Not at all.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic ...`.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
}

/// Where Prometheus is and how to reach it.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL, such as `http://prometheus.monitoring.svc:9090` (a path prefix is kept).
    pub url: String,
    /// How requests authenticate.
    pub credentials: Credentials,
    /// PEM certificates to trust instead of the system's roots, for `https://`.
    pub ca_pem: Option<Vec<u8>>,
    /// Bound on each call.
    pub timeout: Duration,
}

/// A Prometheus HTTP API client.
#[derive(Clone)]
pub struct PrometheusClient {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    host: String,
    port: u16,
    prefix: String,
    authorization: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `value` as a URL query component.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, PrometheusError> {
    crate::http1::client_tls(ca_pem).map_err(PrometheusError::Ca)
}

impl PrometheusClient {
    /// A client for `settings`.
    pub fn new(settings: &ClientSettings) -> Result<Self, PrometheusError> {
        let uri: http::Uri = settings
            .url
            .parse()
            .map_err(|_| PrometheusError::Url(settings.url.clone()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(PrometheusError::Url(settings.url.clone())),
        };
        let host = uri
            .host()
            .ok_or_else(|| PrometheusError::Url(settings.url.clone()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authorization = match &settings.credentials {
            Credentials::None => None,
            Credentials::Bearer(token) => Some(format!("Bearer {}", token.trim())),
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
        };
        Ok(Self {
            url: settings.url.clone(),
            tls: if https {
                Some(Arc::new(tls_config(settings.ca_pem.as_deref())?))
            } else {
                None
            },
            host,
            port,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            authorization,
            timeout: settings.timeout,
        })
    }

    fn unreachable(&self, message: impl ToString) -> PrometheusError {
        PrometheusError::Unreachable {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }

    /// `query` at `at_ms` (now when absent).
    pub async fn instant(
        &self,
        query: &str,
        at_ms: Option<u64>,
    ) -> Result<Vec<Series>, PrometheusError> {
        let mut path = format!("/api/v1/query?query={}", percent_encode(query));
        if let Some(at) = at_ms {
            path.push_str(&format!("&time={:.3}", at as f64 / 1000.0));
        }
        Ok(parse(&self.get(&path).await?)?)
    }

    /// `query` from `start_ms` to `end_ms`, a sample every `step_seconds`.
    pub async fn range(
        &self,
        query: &str,
        start_ms: u64,
        end_ms: u64,
        step_seconds: u64,
    ) -> Result<Vec<Series>, PrometheusError> {
        let path = format!(
            "/api/v1/query_range?query={}&start={:.3}&end={:.3}&step={}",
            percent_encode(query),
            start_ms as f64 / 1000.0,
            end_ms as f64 / 1000.0,
            step_seconds.max(1)
        );
        Ok(parse(&self.get(&path).await?)?)
    }

    async fn get(&self, path: &str) -> Result<Value, PrometheusError> {
        match tokio::time::timeout(self.timeout, self.get_once(path)).await {
            Ok(result) => result,
            Err(_) => Err(self.unreachable(format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn get_once(&self, path: &str) -> Result<Value, PrometheusError> {
        let mut request = http::Request::get(format!("{}{path}", self.prefix))
            .header(http::header::HOST, format!("{}:{}", self.host, self.port))
            .header(http::header::ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.unreachable(e))?;
        let (status, body) =
            crate::http1::exchange(&self.host, self.port, self.tls.as_ref(), request)
                .await
                .map_err(|e| self.unreachable(e))?;
        // Prometheus answers API errors (a bad query) as 400 or 422 with a JSON body.
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) if value.get("status").is_some() => Ok(value),
            _ => Err(PrometheusError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"sum(rate(x{a="b c"}[60s]))"#),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B60s%5D%29%29"
        );
    }

    #[test]
    fn settings_are_checked_when_the_client_is_made() {
        let settings = |url: &str, ca: Option<&[u8]>| ClientSettings {
            url: url.to_owned(),
            credentials: Credentials::None,
            ca_pem: ca.map(<[u8]>::to_vec),
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            PrometheusClient::new(&settings("ftp://p:9090", None)),
            Err(PrometheusError::Url(_))
        ));
        assert!(matches!(
            PrometheusClient::new(&settings("https://p:9090", Some(b"not a certificate"))),
            Err(PrometheusError::Ca(_))
        ));
        let client = PrometheusClient::new(&settings("http://prometheus:9090/prom/", None))
            .expect("a client");
        assert_eq!((client.host.as_str(), client.port), ("prometheus", 9090));
        assert_eq!(client.prefix, "/prom");
    }

    #[test]
    fn credentials_become_the_authorization_header() {
        let with = |credentials: Credentials| {
            PrometheusClient::new(&ClientSettings {
                url: "http://prometheus:9090".into(),
                credentials,
                ca_pem: None,
                timeout: Duration::from_secs(1),
            })
            .expect("a client")
            .authorization
        };
        assert_eq!(with(Credentials::None), None);
        assert_eq!(
            with(Credentials::Bearer("token\n".into())).as_deref(),
            Some("Bearer token"),
            "a token file's trailing newline is not part of the token"
        );
        assert_eq!(
            with(Credentials::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            })
            .as_deref(),
            Some("Basic YWxpY2U6czNjcmV0")
        );
    }
}
