//! Signing with SigV4, as the AWS SDKs do: the `Authorization` header of a request, and whole
//! signed JSON requests for an `X-Amz-Target` (the operator's admin client, the delivery
//! worker, the load generator). The same canonical request as verification builds.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{
    ALGORITHM, Authorization, SERVICE, SignedRequest, expected_signature, hex, signing_key,
};

/// Signs a request as the AWS SDK does: returns the `Authorization` header value for a
/// request whose headers (lowercase names) already include `host` and `x-amz-date`.
pub fn sign(request: &SignedRequest<'_>, access_key: &str, secret: &str, region: &str) -> String {
    sign_for(request, access_key, secret, region, SERVICE)
}

/// The `Authorization` header of `request` to AWS service `service` (its signing name, such
/// as `glue`), signed with SigV4.
pub(super) fn sign_for(
    request: &SignedRequest<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
) -> String {
    let amz_date = request.header("x-amz-date").unwrap_or_default().to_owned();
    let mut names: Vec<&str> = request
        .headers
        .iter()
        .map(|(n, _)| n.as_ref())
        .filter(|n| *n != "authorization")
        .collect();
    names.sort_unstable();
    names.dedup();
    let date = amz_date.get(..8).unwrap_or_default();
    let auth = Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: names.clone(),
        signature: "",
    };
    let key = signing_key(secret, date, region, service);
    let body_hash = hex(&Sha256::digest(request.body));
    let signature = expected_signature(request, &auth, &amz_date, &key, &body_hash, request.query)
        .unwrap_or_default();
    format!(
        "{ALGORITHM} Credential={access_key}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={signature}",
        names.join(";")
    )
}

/// A JSON 1.1 request for `target` (an `X-Amz-Target` such as `Kinesis_20131202.ListStreams`)
/// to `host` as the AWS SDK shapes it, signed with SigV4 at `now_ms`: what the operator's
/// admin client, the delivery worker and the load generator send.
#[allow(clippy::too_many_arguments)]
pub fn signed_json_request(
    host: &str,
    target: &str,
    body: bytes::Bytes,
    access_key: &str,
    secret: &str,
    region: &str,
    now_ms: u64,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, http::Error> {
    signed_request_as(
        "application/x-amz-json-1.1",
        host,
        target,
        body,
        (access_key, secret),
        region,
        now_ms,
    )
}

/// [`signed_json_request`] with a body of `content_type`, such as CBOR
/// (`application/x-amz-cbor-1.1`), which the AWS SDK for Java sends Kinesis.
pub fn signed_request_as(
    content_type: &str,
    host: &str,
    target: &str,
    body: bytes::Bytes,
    (access_key, secret): (&str, &str),
    region: &str,
    now_ms: u64,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, http::Error> {
    let key = SigningKey {
        access_key,
        secret,
        session_token: None,
    };
    let request = TargetRequest {
        host,
        target,
        content_type,
    };
    signed_target_request(SERVICE, &request, body, &key, region, now_ms)
}

/// A key pair to sign with, and its session token when the key is temporary.
pub struct SigningKey<'a> {
    /// The access key id.
    pub access_key: &'a str,
    /// The secret access key.
    pub secret: &'a str,
    /// The session token (sent as `x-amz-security-token`, and signed).
    pub session_token: Option<&'a str>,
}

/// [`signed_json_request`] to AWS service `service` (its signing name, such as `glue`).
pub fn signed_json_request_for(
    service: &str,
    host: &str,
    target: &str,
    body: bytes::Bytes,
    key: &SigningKey<'_>,
    region: &str,
    now_ms: u64,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, http::Error> {
    let request = TargetRequest {
        host,
        target,
        content_type: "application/x-amz-json-1.1",
    };
    signed_target_request(service, &request, body, key, region, now_ms)
}

/// Where an `X-Amz-Target` request goes and what its body is.
struct TargetRequest<'a> {
    host: &'a str,
    target: &'a str,
    content_type: &'a str,
}

fn signed_target_request(
    service: &str,
    request: &TargetRequest<'_>,
    body: bytes::Bytes,
    key: &SigningKey<'_>,
    region: &str,
    now_ms: u64,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, http::Error> {
    let TargetRequest {
        host,
        target,
        content_type,
    } = *request;
    let mut headers: Vec<(Cow<'_, str>, Cow<'_, str>)> = vec![
        ("content-type".into(), content_type.into()),
        ("host".into(), host.into()),
        ("x-amz-date".into(), format_amz_date(now_ms).into()),
        ("x-amz-target".into(), target.into()),
    ];
    if let Some(token) = key.session_token {
        headers.push(("x-amz-security-token".into(), token.into()));
    }
    let signed = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers,
        body: &body,
    };
    let authorization = sign_for(&signed, key.access_key, key.secret, region, service);
    let mut request = http::Request::post("/");
    for (name, value) in &signed.headers {
        request = request.header(name.as_ref(), value.as_ref());
    }
    request
        .header("authorization", authorization)
        .body(http_body_util::Full::new(body))
}

/// Formats epoch milliseconds as an `x-amz-date`.
pub fn format_amz_date(epoch_ms: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(epoch_ms as i64)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}
