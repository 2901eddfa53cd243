//! AWS Signature Version 4 verification for service `kinesis`, as pure functions over a
//! request's method, path, query, headers and body.
//!
//! Credentials are access key id → secret access key, loaded from a folder (a mounted
//! Kubernetes Secret: one file per key id) or a file of `id=secret` lines.

use std::collections::HashMap;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::protocol::{ApiError, ErrorKind};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "kinesis";
/// Largest clock difference between a signer and the broker.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file or folder could not be read.
    #[error("reading credentials from {path}: {message}")]
    Read {
        /// Where.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A line is not `id=secret`.
    #[error("credentials line {line} is not of the form ACCESS_KEY_ID=SECRET")]
    Malformed {
        /// The line number.
        line: usize,
    },
}

/// Access key ids and their secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    secrets: HashMap<String, String>,
}

impl Credentials {
    /// Credentials from pairs.
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self {
            secrets: pairs.into_iter().collect(),
        }
    }

    /// Loads a folder (file name = key id, content = secret) or a file of `id=secret` lines.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let read_error = |e: std::io::Error| CredentialsError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut secrets = HashMap::new();
        if path.is_dir() {
            for entry in std::fs::read_dir(path).map_err(read_error)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Kubernetes mounts keep their real files behind `..data`; skip the machinery.
                if name.starts_with('.') || !entry.path().is_file() {
                    continue;
                }
                let secret = std::fs::read_to_string(entry.path()).map_err(read_error)?;
                secrets.insert(name, secret.trim().to_owned());
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(read_error)?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (id, secret) = line
                    .split_once('=')
                    .ok_or(CredentialsError::Malformed { line: number + 1 })?;
                secrets.insert(id.trim().to_owned(), secret.trim().to_owned());
            }
        }
        // An empty source holds no keys, which revokes every key; it is not an error.
        Ok(Self { secrets })
    }

    /// How many access keys there are.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether `access_key` is one of these keys.
    pub fn contains(&self, access_key: &str) -> bool {
        self.secrets.contains_key(access_key)
    }
}

/// The access key id a request claims to be signed with, if its Authorization header parses.
pub fn access_key_of<'a>(request: &'a SignedRequest<'_>) -> Option<&'a str> {
    let header = request.header("authorization")?;
    parse_authorization(header).ok().map(|auth| auth.access_key)
}

/// The parts of a request that its signature covers.
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, as sent.
    pub path: &'a str,
    /// Query string, as sent (without `?`).
    pub query: &'a str,
    /// Headers as (lowercase name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::IncompleteSignature, message)
}

fn missing_token() -> ApiError {
    ApiError::new(
        ErrorKind::MissingAuthenticationToken,
        "Missing Authentication Token",
    )
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidSignature, message)
}

struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, ApiError> {
    let rest = header.strip_prefix(ALGORITHM).ok_or_else(|| {
        incomplete(format!(
            "Authorization header requires the {ALGORITHM} algorithm."
        ))
    })?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let missing = |what: &str| {
        incomplete(format!(
            "Authorization header requires '{what}' parameter. Authorization={header}"
        ))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" || scope.iter().any(|p| p.is_empty()) {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, not '{credential}'. Credential should have the form ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request."
        )));
    }
    Ok(Authorization {
        access_key: scope[0],
        date: scope[1],
        region: scope[2],
        service: scope[3],
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// Epoch milliseconds of an `x-amz-date` (`20261129T040000Z`).
pub fn parse_amz_date(text: &str) -> Option<u64> {
    if text.len() != 16 || &text[8..9] != "T" || !text.ends_with('Z') {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hour, minute, second) = (n(9..11)?, n(11..13)?, n(13..15)?);
    let narrow = |v: i64| i8::try_from(v).ok();
    let time = k8s_openapi::jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        narrow(month)?,
        narrow(day)?,
        narrow(hour)?,
        narrow(minute)?,
        narrow(second)?,
        0,
    )
    .ok()?;
    let zoned = time.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).ok()?;
    u64::try_from(zoned.timestamp().as_millisecond()).ok()
}

fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(value) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature a request should carry, given the secret and the parsed scope.
fn expected_signature(
    request: &SignedRequest<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    secret: &str,
    payload_hash: &str,
) -> Result<String, ApiError> {
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<&str> = request
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            return Err(invalid(format!(
                "The request signature covers header '{name}', which the request lacks."
            )));
        }
        let joined = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(",");
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&joined);
        canonical_headers.push('\n');
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        uri_encode(&percent_decode(request.path), false),
        canonical_query(request.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    Ok(hex(&hmac(&k_signing, string_to_sign.as_bytes())))
}

/// Signs a request as the AWS SDK does: returns the `Authorization` header value for a
/// request whose headers (lowercase names) already include `host` and `x-amz-date`.
pub fn sign(request: &SignedRequest<'_>, access_key: &str, secret: &str, region: &str) -> String {
    let amz_date = request.header("x-amz-date").unwrap_or_default().to_owned();
    let mut names: Vec<&str> = request
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "authorization")
        .collect();
    names.sort_unstable();
    names.dedup();
    let date = amz_date.get(..8).unwrap_or_default();
    let auth = Authorization {
        access_key,
        date,
        region,
        service: SERVICE,
        signed_headers: names.clone(),
        signature: "",
    };
    let body_hash = hex(&Sha256::digest(request.body));
    let signature =
        expected_signature(request, &auth, &amz_date, secret, &body_hash).unwrap_or_default();
    format!(
        "{ALGORITHM} Credential={access_key}/{date}/{region}/{SERVICE}/aws4_request, SignedHeaders={}, Signature={signature}",
        names.join(";")
    )
}

/// A Kinesis JSON 1.1 request to `host` as the AWS SDK shapes it, signed with SigV4 at
/// `now_ms`: what the operator's admin client and the load generator send.
#[allow(clippy::too_many_arguments)]
pub fn signed_json_request(
    host: &str,
    operation: &str,
    body: bytes::Bytes,
    access_key: &str,
    secret: &str,
    region: &str,
    now_ms: u64,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, http::Error> {
    const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
    let target = format!("Kinesis_20131202.{operation}");
    let amz_date = format_amz_date(now_ms);
    let signed = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: vec![
            ("content-type".into(), CONTENT_TYPE.into()),
            ("host".into(), host.into()),
            ("x-amz-date".into(), amz_date.clone()),
            ("x-amz-target".into(), target.clone()),
        ],
        body: &body,
    };
    let authorization = sign(&signed, access_key, secret, region);
    http::Request::post("/")
        .header("host", host)
        .header("x-amz-target", target)
        .header("x-amz-date", amz_date)
        .header("authorization", authorization)
        .header("content-type", CONTENT_TYPE)
        .body(http_body_util::Full::new(body))
}

/// Formats epoch milliseconds as an `x-amz-date`.
pub fn format_amz_date(epoch_ms: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(epoch_ms as i64)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

/// Whether two signatures are equal, compared in constant time: how long the comparison
/// takes says nothing about how much of a forged signature was right.
fn same_signature(expected: &str, provided: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Lengths are public (a SigV4 signature is always 64 hex digits).
    expected.len() == provided.len() && bool::from(expected.as_bytes().ct_eq(provided.as_bytes()))
}

/// Without keys to verify against, a request must still look signed, as Kinesis requires:
/// an `Authorization` header (else `MissingAuthenticationTokenException`) of the SigV4 form
/// with a credential scope, signed headers and a signature, and an `X-Amz-Date` or `Date`
/// header (else `IncompleteSignatureException`). The signature itself is not checked.
pub fn check_form(authorization: Option<&str>, has_date: bool) -> Result<(), ApiError> {
    let header = authorization.ok_or_else(missing_token)?;
    parse_authorization(header)?;
    if !has_date {
        return Err(incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={header}"
        )));
    }
    Ok(())
}

/// Verifies a request's SigV4 signature at `now_ms` for this endpoint's `region`; returns the
/// caller's access key id.
pub fn verify(
    request: &SignedRequest<'_>,
    credentials: &Credentials,
    region: &str,
    now_ms: u64,
) -> Result<String, ApiError> {
    verify_for(request, credentials, region, SERVICE, now_ms)
}

/// [`verify`] for a request to `service` (the Firehose API is signed for `firehose`).
pub fn verify_for(
    request: &SignedRequest<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    now_ms: u64,
) -> Result<String, ApiError> {
    let header = request.header("authorization").ok_or_else(missing_token)?;
    let auth = parse_authorization(header)?;
    if auth.service != service {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: '{service}'. The credential scope {}/{}/{} names service '{}'.",
            auth.date, auth.region, auth.service, auth.service
        )));
    }
    if auth.region != region {
        return Err(invalid(format!(
            "Credential should be scoped to a valid region: this endpoint serves '{region}', the credential scope {}/{}/{} names '{}'.",
            auth.date, auth.region, auth.service, auth.region
        )));
    }
    for required in ["host", "x-amz-date"] {
        if required == "x-amz-date" && request.header("x-amz-date").is_none() {
            return Err(incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            ));
        }
        if required == "host" && !auth.signed_headers.contains(&"host") {
            return Err(invalid(
                "'Host' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
    }
    let amz_date = request.header("x-amz-date").unwrap_or_default();
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        ))
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            &amz_date[..8.min(amz_date.len())]
        )));
    }
    if signed_at + MAX_SKEW_MS < now_ms {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is now earlier than the allowed five minutes before the broker's time."
        )));
    }
    if signed_at > now_ms + MAX_SKEW_MS {
        return Err(invalid(format!(
            "Signature not yet current: {amz_date} is more than five minutes after the broker's time."
        )));
    }
    let secret = credentials.secrets.get(auth.access_key).ok_or_else(|| {
        ApiError::new(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        )
    })?;
    let body_hash = hex(&Sha256::digest(request.body));
    if let Some(claimed) = request.header("x-amz-content-sha256")
        && claimed != "UNSIGNED-PAYLOAD"
        && claimed != body_hash
    {
        return Err(invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let expected = expected_signature(request, &auth, amz_date, secret, &body_hash)?;
    if !same_signature(&expected, auth.signature) {
        return Err(invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(auth.access_key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of AWS's SigV4 documentation (service iam, GET ListUsers), adapted
    // to service kinesis by recomputing with the documented algorithm.
    fn request(body: &'static [u8]) -> SignedRequest<'static> {
        SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("host".into(), "kinesis.us-east-1.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
                ("x-amz-target".into(), "Kinesis_20131202.ListStreams".into()),
            ],
            body,
        }
    }

    fn sign(mut request: SignedRequest<'static>, secret: &str) -> SignedRequest<'static> {
        let auth = Authorization {
            access_key: "AKIDEXAMPLE",
            date: "20150830",
            region: "us-east-1",
            service: "kinesis",
            signed_headers: vec!["content-type", "host", "x-amz-date", "x-amz-target"],
            signature: "",
        };
        let hash = hex(&Sha256::digest(request.body));
        let signature =
            expected_signature(&request, &auth, "20150830T123600Z", secret, &hash).expect("signs");
        request.headers.push((
            "authorization".into(),
            format!("{ALGORITHM} Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={signature}"),
        ));
        request
    }

    fn credentials() -> Credentials {
        Credentials::from_pairs([(
            "AKIDEXAMPLE".to_owned(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        )])
    }

    const SIGNED_AT: u64 = 1_440_938_160_000;

    #[test]
    fn the_signing_key_derivation_matches_the_aws_documentation() {
        // From AWS's "Examples of how to derive a signing key for Signature Version 4".
        let k_date = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        let k_region = hmac(&k_date, b"us-east-1");
        let k_service = hmac(&k_region, b"iam");
        let k_signing = hmac(&k_service, b"aws4_request");
        assert_eq!(
            hex(&k_signing),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn a_correctly_signed_request_passes_and_names_its_key() {
        let signed = sign(request(b"{}"), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert_eq!(
            verify(&signed, &credentials(), "us-east-1", SIGNED_AT + 1000),
            Ok("AKIDEXAMPLE".to_owned())
        );
    }

    #[test]
    fn a_wrong_secret_a_tampered_body_or_a_stale_date_fail() {
        let wrong = sign(request(b"{}"), "not-the-secret");
        assert_eq!(
            verify(&wrong, &credentials(), "us-east-1", SIGNED_AT).map_err(|e| e.kind),
            Err(ErrorKind::InvalidSignature)
        );
        let mut tampered = sign(request(b"{}"), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        tampered.body = b"{\"Limit\":1}";
        assert_eq!(
            verify(&tampered, &credentials(), "us-east-1", SIGNED_AT).map_err(|e| e.kind),
            Err(ErrorKind::InvalidSignature)
        );
        let fine = sign(request(b"{}"), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert_eq!(
            verify(
                &fine,
                &credentials(),
                "us-east-1",
                SIGNED_AT + MAX_SKEW_MS + 1
            )
            .map_err(|e| e.kind),
            Err(ErrorKind::InvalidSignature)
        );
        assert_eq!(
            verify(
                &fine,
                &credentials(),
                "us-east-1",
                SIGNED_AT - MAX_SKEW_MS - 1
            )
            .map_err(|e| e.kind),
            Err(ErrorKind::InvalidSignature)
        );
    }

    #[test]
    fn missing_malformed_or_unknown_credentials_get_their_own_errors() {
        assert_eq!(
            verify(&request(b"{}"), &credentials(), "us-east-1", SIGNED_AT).map_err(|e| e.kind),
            Err(ErrorKind::MissingAuthenticationToken)
        );
        let mut malformed = request(b"{}");
        malformed.headers.push((
            "authorization".into(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE".into(),
        ));
        assert_eq!(
            verify(&malformed, &credentials(), "us-east-1", SIGNED_AT).map_err(|e| e.kind),
            Err(ErrorKind::IncompleteSignature)
        );
        let stranger = sign(request(b"{}"), "x");
        let others = Credentials::from_pairs([("SOMEONEELSE".to_owned(), "x".to_owned())]);
        assert_eq!(
            verify(&stranger, &others, "us-east-1", SIGNED_AT).map_err(|e| e.kind),
            Err(ErrorKind::UnrecognizedClient)
        );
    }

    #[test]
    fn what_sign_produces_verify_accepts() {
        let mut request = request(b"{\"Limit\":5}");
        let authorization = super::sign(
            &request,
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        request
            .headers
            .push(("authorization".into(), authorization));
        assert_eq!(
            verify(&request, &credentials(), "us-east-1", SIGNED_AT),
            Ok("AKIDEXAMPLE".to_owned())
        );
        assert_eq!(format_amz_date(SIGNED_AT), "20150830T123600Z");
    }

    #[test]
    fn hardening_a_signature_scoped_to_another_region_is_refused_naming_the_scope() {
        let signed = sign(request(b"{}"), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let refusal = verify(&signed, &credentials(), "eu-west-1", SIGNED_AT)
            .expect_err("signed for us-east-1");
        assert_eq!(refusal.kind, ErrorKind::InvalidSignature);
        assert!(
            refusal.message.contains("20150830/us-east-1/kinesis")
                && refusal.message.contains("'eu-west-1'"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn hardening_signatures_compare_whole_and_in_constant_time() {
        let signature = "a".repeat(64);
        assert!(same_signature(&signature, &signature.clone()));
        let mut last_wrong = signature.clone();
        last_wrong.replace_range(63.., "b");
        assert!(!same_signature(&signature, &last_wrong));
        assert!(!same_signature(&signature, &signature[..63]));
        assert!(!same_signature(&signature, ""));
    }

    #[test]
    fn hardening_an_emptied_source_revokes_every_key_and_an_unreadable_one_keeps_them() {
        let dir = std::env::temp_dir().join(format!("brook-auth-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("folder");
        let empty = Credentials::load(&dir).expect("an empty source loads");
        assert!(empty.is_empty(), "an empty source must revoke every key");
        let file = dir.join("keys");
        std::fs::write(&file, "AKIDEXAMPLE=secret\nnot a key line\n").expect("file");
        assert!(
            matches!(
                Credentials::load(&file),
                Err(CredentialsError::Malformed { line: 2 })
            ),
            "a half-written source is an error: the last good keys stay"
        );
        assert!(matches!(
            Credentials::load(&dir.join("missing")),
            Err(CredentialsError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("clean up");
        let request = sign(request(b"{}"), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert_eq!(
            verify(&request, &empty, "us-east-1", SIGNED_AT).map_err(|e| e.kind),
            Err(ErrorKind::UnrecognizedClient),
            "no keys: nothing gets through"
        );
    }

    #[test]
    fn amz_dates_parse_to_epoch_milliseconds() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(SIGNED_AT));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }
}
