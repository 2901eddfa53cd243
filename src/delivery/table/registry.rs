//! A channel table's record schema, read from the Glue Schema Registry (`GetSchemaVersion`
//! of the channel's `GSRSchemaARN`, latest version) at the broker's Glue endpoint: AWS's, or
//! an S3-compatible server's that serves the registry.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::broker::auth::{SigningKey, signed_json_request_for};
use crate::delivery::s3::AccessKey;

/// Why a schema could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The endpoint is not an http(s) URL.
    #[error("Glue endpoint {0}: not an http:// or https:// URL")]
    Endpoint(String),
    /// No credentials to sign with.
    #[error(
        "no credentials for the Glue Schema Registry: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials,
    /// The registry did not answer.
    #[error("Glue GetSchemaVersion {arn}: {reason}")]
    Request {
        /// The schema ARN.
        arn: String,
        /// What happened.
        reason: String,
    },
    /// The registry answered with an error.
    #[error("Glue GetSchemaVersion {arn}: {code}: {message}")]
    Refused {
        /// The schema ARN.
        arn: String,
        /// The error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The schema is not JSON Schema.
    #[error("schema {arn} has data format {format}: a channel's table needs a JSON schema")]
    Format {
        /// The schema ARN.
        arn: String,
        /// Its data format.
        format: String,
    },
}

impl RegistryError {
    /// Whether asking again cannot help: an endpoint that is not a URL, a schema that is
    /// missing or not JSON, a refusal other than throttling.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Endpoint(_) | Self::Format { .. } => true,
            Self::Refused { code, .. } => !code.contains("Throttling"),
            Self::NoCredentials | Self::Request { .. } => false,
        }
    }
}

/// Where an endpoint URL points.
#[derive(Debug, PartialEq, Eq)]
struct Address<'a> {
    /// `host[:port]`, as the Host header says it.
    authority: &'a str,
    host: &'a str,
    port: u16,
    tls: bool,
}

/// The address of `endpoint` (`http://host[:port]` or `https://host[:port]`).
fn address_of(endpoint: &str) -> Result<Address<'_>, RegistryError> {
    let refused = || RegistryError::Endpoint(endpoint.to_owned());
    let (tls, rest) = match endpoint.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, endpoint.strip_prefix("http://").ok_or_else(refused)?),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(refused());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| refused())?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    Ok(Address {
        authority,
        host,
        port,
        tls,
    })
}

/// The JSON Schema of the latest version of schema `arn`, from the registry at `endpoint`
/// (`https://glue.<region>.amazonaws.com` when absent).
pub async fn latest_json_schema(
    endpoint: Option<&str>,
    region: &str,
    key: Option<AccessKey>,
    arn: &str,
    now_ms: u64,
) -> Result<Value, RegistryError> {
    let endpoint = endpoint
        .map(str::to_owned)
        .unwrap_or_else(|| format!("https://glue.{region}.amazonaws.com"));
    let address = address_of(&endpoint)?;
    let key = key
        .or_else(AccessKey::from_environment)
        .ok_or(RegistryError::NoCredentials)?;
    let body = Bytes::from(
        json!({"SchemaId": {"SchemaArn": arn}, "SchemaVersionNumber": {"LatestVersion": true}})
            .to_string(),
    );
    let failed = |reason: String| RegistryError::Request {
        arn: arn.to_owned(),
        reason,
    };
    let signing = SigningKey {
        access_key: &key.id,
        secret: &key.secret,
        session_token: key.session_token.as_deref(),
    };
    let request = signed_json_request_for(
        "glue",
        address.authority,
        "AWSGlue.GetSchemaVersion",
        body,
        &signing,
        region,
        now_ms,
    )
    .map_err(|e| failed(e.to_string()))?;
    let tls = match address.tls {
        true => Some(Arc::new(crate::http1::client_tls(None).map_err(failed)?)),
        false => None,
    };
    let exchange = crate::http1::exchange(address.host, address.port, tls.as_ref(), request);
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
        .await
        .map_err(|_| failed("no answer within 30 s".to_owned()))?
        .map_err(failed)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("HTTP {status}, not JSON: {e}")))?;
    if !status.is_success() {
        let code = value["__type"].as_str().unwrap_or("error");
        return Err(RegistryError::Refused {
            arn: arn.to_owned(),
            code: code.rsplit('#').next().unwrap_or(code).to_owned(),
            message: value["Message"]
                .as_str()
                .or(value["message"].as_str())
                .unwrap_or_default()
                .to_owned(),
        });
    }
    let format = value["DataFormat"].as_str().unwrap_or("JSON");
    if format != "JSON" {
        return Err(RegistryError::Format {
            arn: arn.to_owned(),
            format: format.to_owned(),
        });
    }
    let definition = value["SchemaDefinition"].as_str().unwrap_or_default();
    serde_json::from_str(definition)
        .map_err(|e| failed(format!("SchemaDefinition is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glue_endpoints_are_urls() {
        let address = address_of("http://127.0.0.1:5000").expect("plain");
        assert_eq!(
            (address.authority, address.host, address.port, address.tls),
            ("127.0.0.1:5000", "127.0.0.1", 5000, false)
        );
        let address = address_of("https://glue.eu-west-1.amazonaws.com/").expect("tls");
        assert_eq!(
            (address.host, address.port, address.tls),
            ("glue.eu-west-1.amazonaws.com", 443, true)
        );
        assert!(address_of("glue.amazonaws.com").is_err());
        assert!(address_of("http://host/path").is_err());
        assert!(address_of("http://host:port").is_err());
    }
}
