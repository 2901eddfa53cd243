//! AWS Signature Version 4 verification for service `kinesis`, as pure functions over a
//! request's method, path, query, headers and body.
//!
//! Credentials are access key id → secret access key, loaded from a folder (a mounted
//! Kubernetes Secret: one file per key id) or a file of `id=secret` lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::protocol::{ApiError, ErrorKind};

mod presigned;
mod signing;

pub use signing::{
    SigningKey, format_amz_date, sign, signed_json_request, signed_json_request_for,
    signed_request_as,
};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of a request signed without its body.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
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
#[derive(Default)]
pub struct Credentials {
    secrets: HashMap<String, String>,
    signing_keys: SigningKeys,
}

/// Names the access key ids only: a secret never reaches a log.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("Credentials")
            .field("access_key_ids", &ids)
            .finish_non_exhaustive()
    }
}

/// Signing keys already derived, per access key id: deriving one takes four HMACs, and a key
/// serves every request of its key id, day, region and service. Only key ids the credentials
/// hold get here, so the cache is as large as they are, times the scopes kept per key.
#[derive(Default)]
struct SigningKeys(Mutex<HashMap<String, Vec<DerivedKey>>>);

/// A signing key and the scope it was derived for.
struct DerivedKey {
    date: String,
    region: String,
    service: String,
    key: [u8; 32],
}

/// Scopes kept per access key id: the days around midnight, and more than one service.
const SCOPES_PER_KEY: usize = 4;

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeys(..)")
    }
}

impl SigningKeys {
    /// The signing key of `auth`'s scope, with `secret` as its access key's secret.
    fn get(&self, auth: &Authorization<'_>, secret: &str) -> [u8; 32] {
        let same_scope = |d: &&DerivedKey| {
            d.date == auth.date && d.region == auth.region && d.service == auth.service
        };
        let mut keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = keys
            .get(auth.access_key)
            .and_then(|derived| derived.iter().find(same_scope))
        {
            return found.key;
        }
        let key = signing_key(secret, auth.date, auth.region, auth.service);
        let derived = keys.entry(auth.access_key.to_owned()).or_default();
        if derived.len() >= SCOPES_PER_KEY {
            derived.remove(0);
        }
        derived.push(DerivedKey {
            date: auth.date.to_owned(),
            region: auth.region.to_owned(),
            service: auth.service.to_owned(),
            key,
        });
        key
    }
}

impl Credentials {
    /// Credentials from pairs.
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self {
            secrets: pairs.into_iter().collect(),
            signing_keys: SigningKeys::default(),
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
        Ok(Self {
            secrets,
            signing_keys: SigningKeys::default(),
        })
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
pub fn access_key_of(request: &SignedRequest<'_>) -> Option<String> {
    match request.header("authorization") {
        Some(header) => parse_authorization(header)
            .ok()
            .map(|auth| auth.access_key.to_owned()),
        None => {
            let query = presigned::parse(request.query).ok()?;
            let (access_key, _) = query.credential.split_once('/')?;
            Some(access_key.to_owned())
        }
    }
}

/// The parts of a request that its signature covers.
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, as sent.
    pub path: &'a str,
    /// Query string, as sent (without `?`).
    pub query: &'a str,
    /// Headers as (lowercase name, value) pairs, borrowed from the request where they can be.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The body.
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
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
    parse_scope(credential, signed, signature)
}

/// The credential scope, signed headers and signature, wherever the request carries them.
fn parse_scope<'a>(
    credential: &'a str,
    signed: &'a str,
    signature: &'a str,
) -> Result<Authorization<'a>, ApiError> {
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

/// `bytes` as lowercase hexadecimal digits.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` to `out` as lowercase hexadecimal digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// Appends a header value as SigV4 canonicalizes it: trimmed, runs of spaces as one.
fn push_canonical_value(out: &mut String, value: &str) {
    for (i, word) in value.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// The key a request signed on `date` (YYYYMMDD) for `region` and `service` is signed with.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut first_key = String::with_capacity(4 + secret.len());
    first_key.push_str("AWS4");
    first_key.push_str(secret);
    let k_date = hmac(first_key.as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The signature a request should carry, given the signing key of its scope (`signing_key`).
fn expected_signature(
    request: &SignedRequest<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    signing_key: &[u8; 32],
    payload_hash: &str,
    signed_query: &str,
) -> Result<String, ApiError> {
    let mut canonical_request = String::with_capacity(512);
    canonical_request.push_str(request.method);
    canonical_request.push('\n');
    canonical_request.push_str(&uri_encode(&percent_decode(request.path), false));
    canonical_request.push('\n');
    canonical_request.push_str(&canonical_query(signed_query));
    canonical_request.push('\n');
    for name in &auth.signed_headers {
        canonical_request.push_str(name);
        canonical_request.push(':');
        let mut values = request.headers.iter().filter(|(n, _)| n == name);
        let Some((_, first)) = values.next() else {
            return Err(invalid(format!(
                "The request signature covers header '{name}', which the request lacks."
            )));
        };
        push_canonical_value(&mut canonical_request, first);
        for (_, value) in values {
            canonical_request.push(',');
            push_canonical_value(&mut canonical_request, value);
        }
        canonical_request.push('\n');
    }
    canonical_request.push('\n');
    for (i, name) in auth.signed_headers.iter().enumerate() {
        if i > 0 {
            canonical_request.push(';');
        }
        canonical_request.push_str(name);
    }
    canonical_request.push('\n');
    canonical_request.push_str(payload_hash);

    let mut string_to_sign = String::with_capacity(160);
    for part in [
        ALGORITHM,
        "\n",
        amz_date,
        "\n",
        auth.date,
        "/",
        auth.region,
        "/",
        auth.service,
        "/aws4_request\n",
    ] {
        string_to_sign.push_str(part);
    }
    push_hex(
        &mut string_to_sign,
        &Sha256::digest(canonical_request.as_bytes()),
    );
    Ok(hex(&hmac(signing_key, string_to_sign.as_bytes())))
}

/// Whether two signatures are equal, compared in constant time: how long the comparison
/// takes says nothing about how much of a forged signature was right.
fn same_signature(expected: &str, provided: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Lengths are public (a SigV4 signature is always 64 hex digits).
    expected.len() == provided.len() && bool::from(expected.as_bytes().ct_eq(provided.as_bytes()))
}

/// Where a request carries its signature: Kinesis takes the `Authorization` header or the
/// query string (a presigned request), not both and not neither.
enum Carrier<'a> {
    Header(&'a str),
    Query,
}

fn carrier<'a>(authorization: Option<&'a str>, query: &str) -> Result<Carrier<'a>, ApiError> {
    match (authorization, presigned::carries_signature(query)) {
        (Some(_), true) => Err(invalid(
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
        )),
        (Some(header), false) => Ok(Carrier::Header(header)),
        (None, true) => Ok(Carrier::Query),
        (None, false) => Err(missing_token()),
    }
}

/// Without keys to verify against, a request must still look signed, as Kinesis requires:
/// an `Authorization` header (else `MissingAuthenticationTokenException`) of the SigV4 form
/// with a credential scope, signed headers and a signature, and an `X-Amz-Date` or `Date`
/// header (else `IncompleteSignatureException`) — or, presigned, every signature parameter
/// in the query string. The signature itself is not checked.
pub fn check_form(
    authorization: Option<&str>,
    has_date: bool,
    query: &str,
) -> Result<(), ApiError> {
    match carrier(authorization, query)? {
        Carrier::Header(header) => {
            parse_authorization(header)?;
            if !has_date {
                return Err(incomplete(format!(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={header}"
                )));
            }
        }
        Carrier::Query => {
            let query = presigned::parse(query)?;
            parse_scope(&query.credential, &query.signed_headers, &query.signature)?;
        }
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
    let presigned_auth;
    let (auth, amz_date, validity_ms, signed_query, is_presigned) =
        match carrier(request.header("authorization"), request.query)? {
            Carrier::Header(header) => (
                parse_authorization(header)?,
                request.header("x-amz-date"),
                MAX_SKEW_MS,
                Cow::Borrowed(request.query),
                false,
            ),
            Carrier::Query => {
                presigned_auth = presigned::parse(request.query)?;
                let query = &presigned_auth;
                if query.algorithm != ALGORITHM {
                    return Err(incomplete(format!(
                        "X-Amz-Algorithm must be {ALGORITHM}, not '{}'.",
                        query.algorithm
                    )));
                }
                (
                    parse_scope(&query.credential, &query.signed_headers, &query.signature)?,
                    Some(query.amz_date.as_str()),
                    presigned::validity_ms(query.expires.as_deref(), MAX_SKEW_MS)?,
                    Cow::Owned(presigned::signed_query(request.query)),
                    true,
                )
            }
        };
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
    if !auth.signed_headers.contains(&"host") {
        return Err(invalid(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let amz_date = amz_date.ok_or_else(|| {
        incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
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
    if signed_at + validity_ms < now_ms {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is now earlier than the allowed {} seconds before the broker's time.",
            validity_ms / 1000
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
    let key = credentials.signing_keys.get(&auth, secret);
    let claimed = request.header("x-amz-content-sha256");
    // A request that declares its body unsigned is signed over that declaration: its body's
    // hash (0.8 µs per KiB here) is then of no use.
    let body_hash = match claimed {
        Some(UNSIGNED_PAYLOAD) => String::new(),
        _ => hex(&Sha256::digest(request.body)),
    };
    if let Some(claimed) = claimed
        && claimed != UNSIGNED_PAYLOAD
        && claimed != body_hash
    {
        return Err(invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    // The payload hash the signer put in its canonical request: the one it declares, else
    // the body's; a presigned request is signed before its body is known, so the AWS SDKs
    // sign it as UNSIGNED-PAYLOAD, which is taken too.
    let payloads: &[&str] = match (claimed, is_presigned) {
        (Some(claimed), _) => &[claimed],
        (None, false) => &[&body_hash],
        (None, true) => &[UNSIGNED_PAYLOAD, &body_hash],
    };
    let mut matches = false;
    for payload in payloads {
        let expected = expected_signature(request, &auth, amz_date, &key, payload, &signed_query)?;
        matches |= same_signature(&expected, auth.signature);
    }
    if !matches {
        return Err(invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(auth.access_key.to_owned())
}

#[cfg(test)]
mod tests;
