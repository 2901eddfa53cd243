//! Delivery to an HTTP endpoint in Firehose's protocol: a POST of
//! `{"requestId", "timestamp", "records": [{"data": <base64>}]}` with the
//! `X-Amz-Firehose-*` headers; only a 200 whose body echoes the request id is a delivery,
//! 413 is permanent, anything else is retried with exponential backoff and full jitter.
//! The request id is derived from the batch, so it is the same on every retry.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use super::naming::BatchIdentity;
use crate::api::delivery::{ContentEncoding, HttpDestination};

/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first pause.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Why an endpoint is unusable, or a POST failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL is not an http(s) URL with a host.
    #[error("endpoint URL {0:?} is not http(s)://host[:port]/path")]
    Url(String),
    /// The TLS configuration could not be built.
    #[error("TLS for {url}: {message}")]
    Tls {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// No connection or no answer.
    #[error("{url}: {message}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
}

/// What an answer means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Accepted,
    /// Never retried: the endpoint refused the batch as too large.
    Permanent(String),
    /// Retried until the retry duration runs out.
    Retry(String),
}

/// The request id of a batch: UUID-shaped, the same for the same batch every time.
pub fn request_id(batch: &BatchIdentity) -> String {
    let digest = batch.digest();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The JSON body of one POST.
pub fn request_body(request_id: &str, timestamp_ms: u64, records: &[Bytes]) -> Vec<u8> {
    let engine = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = records
        .iter()
        .map(|data| json!({"data": engine.encode(data)}))
        .collect();
    json!({"requestId": request_id, "timestamp": timestamp_ms, "records": records})
        .to_string()
        .into_bytes()
}

/// What an answer with `status` and `body` means for the request `request_id`.
pub fn verdict(status: u16, body: &[u8], request_id: &str) -> Verdict {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let message = answer
        .as_ref()
        .and_then(|a| a["errorMessage"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    match status {
        200 => match answer.as_ref().and_then(|a| a["requestId"].as_str()) {
            Some(id) if id == request_id => Verdict::Accepted,
            Some(id) => Verdict::Retry(format!(
                "200 answered for request {id:?}, not {request_id:?}"
            )),
            None => Verdict::Retry("200 without the request id in its body".into()),
        },
        413 => Verdict::Permanent(format!("413 Payload Too Large: {message}")),
        other => Verdict::Retry(format!("HTTP {other}: {message}")),
    }
}

/// The pause before retry number `attempt` (1 for the first retry): exponential, capped,
/// scaled by `jitter` in [0, 1] (full jitter).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exponential = FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exponential.min(MAX_BACKOFF).mul_f64(jitter.clamp(0.0, 1.0))
}

/// A random number in [0, 1), for jitter.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// An endpoint batches are POSTed to.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    access_key: Option<String>,
    gzip: bool,
    common_attributes: String,
    source_arn: String,
}

impl Endpoint {
    /// An endpoint for `destination`, sending `access_key`, on behalf of `source_arn`.
    pub fn new(
        destination: &HttpDestination,
        access_key: Option<String>,
        source_arn: String,
    ) -> Result<Self, EndpointError> {
        let url = destination.url.clone();
        let uri: http::Uri = url.parse().map_err(|_| EndpointError::Url(url.clone()))?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(EndpointError::Url(url)),
        };
        let host = uri
            .host()
            .ok_or_else(|| EndpointError::Url(url.clone()))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let tls = if secure {
            let config = crate::http1::client_tls(None).map_err(|message| EndpointError::Tls {
                url: url.clone(),
                message,
            })?;
            Some(Arc::new(config))
        } else {
            None
        };
        let attributes: BTreeMap<&str, &str> = destination
            .common_attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Ok(Self {
            url,
            host,
            port,
            path,
            tls,
            access_key,
            gzip: destination.content_encoding == ContentEncoding::Gzip,
            common_attributes: json!({"commonAttributes": attributes}).to_string(),
            source_arn,
        })
    }

    fn unreachable(&self, message: impl ToString) -> EndpointError {
        EndpointError::Unreachable {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }

    /// POSTs one batch once and says what the answer means.
    pub async fn post(
        &self,
        request_id: &str,
        timestamp_ms: u64,
        records: &[Bytes],
    ) -> Result<Verdict, EndpointError> {
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.post_once(request_id, timestamp_ms, records),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(self.unreachable(format!("no answer within {REQUEST_TIMEOUT:?}"))),
        }
    }

    async fn post_once(
        &self,
        request_id: &str,
        timestamp_ms: u64,
        records: &[Bytes],
    ) -> Result<Verdict, EndpointError> {
        let mut body = request_body(request_id, timestamp_ms, records);
        if self.gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&body).map_err(|e| self.unreachable(e))?;
            body = encoder.finish().map_err(|e| self.unreachable(e))?;
        }
        let mut request = http::Request::post(self.path.as_str())
            .header(http::header::HOST, format!("{}:{}", self.host, self.port))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "Brook-Firehose")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", request_id)
            .header("X-Amz-Firehose-Source-Arn", self.source_arn.as_str())
            .header(
                "X-Amz-Firehose-Common-Attributes",
                self.common_attributes.as_str(),
            );
        if let Some(key) = &self.access_key {
            request = request.header("X-Amz-Firehose-Access-Key", key.as_str());
        }
        if self.gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.unreachable(e))?;
        let (status, body) =
            crate::http1::exchange(&self.host, self.port, self.tls.as_ref(), request)
                .await
                .map_err(|e| self.unreachable(e))?;
        Ok(verdict(status.as_u16(), &body, request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> BatchIdentity {
        BatchIdentity {
            source: "journal".into(),
            first: "10".into(),
            last: "19".into(),
        }
    }

    #[test]
    fn delivery_request_id_is_stable_and_uuid_shaped() {
        let id = request_id(&batch());
        assert_eq!(id, request_id(&batch()));
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        let mut other = batch();
        other.last = "20".into();
        assert_ne!(request_id(&other), id);
    }

    #[test]
    fn delivery_http_body_is_firehose_shaped() {
        let body = request_body("id-1", 1234, &[Bytes::from_static(b"hi"), Bytes::new()]);
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            value,
            json!({"requestId": "id-1", "timestamp": 1234,
                   "records": [{"data": "aGk="}, {"data": ""}]})
        );
    }

    #[test]
    fn delivery_http_only_an_echoed_200_counts_and_413_is_permanent() {
        let ok = br#"{"requestId":"abc","timestamp":1}"#;
        assert_eq!(verdict(200, ok, "abc"), Verdict::Accepted);
        assert!(matches!(verdict(200, ok, "xyz"), Verdict::Retry(_)));
        assert!(matches!(verdict(200, b"ok", "abc"), Verdict::Retry(_)));
        assert!(matches!(verdict(413, b"", "abc"), Verdict::Permanent(_)));
        let busy = br#"{"requestId":"abc","errorMessage":"busy"}"#;
        assert_eq!(
            verdict(503, busy, "abc"),
            Verdict::Retry("HTTP 503: busy".into())
        );
    }

    #[test]
    fn delivery_backoff_grows_to_a_cap_and_jitter_scales_it() {
        assert_eq!(backoff(1, 1.0), FIRST_BACKOFF);
        assert_eq!(backoff(2, 1.0), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, 0.5), FIRST_BACKOFF * 2);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn delivery_endpoint_urls_are_checked() {
        let destination = |url: &str| HttpDestination {
            url: url.into(),
            access_key_secret_ref: None,
            content_encoding: ContentEncoding::None,
            retry_duration_seconds: 1,
            common_attributes: BTreeMap::new(),
            s3_backup: None,
        };
        assert!(Endpoint::new(&destination("ftp://x/y"), None, String::new()).is_err());
        let endpoint = Endpoint::new(
            &destination("http://collector:8080/in?x=1"),
            None,
            String::new(),
        )
        .expect("endpoint");
        assert_eq!((endpoint.port, endpoint.path.as_str()), (8080, "/in?x=1"));
    }
}
