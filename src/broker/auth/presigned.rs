//! SigV4 carried in the query string (a presigned request: `X-Amz-Algorithm`,
//! `X-Amz-Credential`, `X-Amz-SignedHeaders`, `X-Amz-Signature`, `X-Amz-Date` and
//! `X-Amz-Expires` as query parameters instead of an `Authorization` header), which Kinesis
//! accepts as an alternative to the header. Pure functions over the query string.

use super::{incomplete, percent_decode};
use crate::broker::protocol::ApiError;

/// The parameters a presigned request must carry, in the order Kinesis names missing ones.
const REQUIRED: [&str; 5] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
];

/// The longest validity a presigned request may claim: seven days, as in AWS.
pub const MAX_EXPIRES_SECONDS: u64 = 604_800;

/// A presigned request's signature parameters, percent-decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryAuth {
    /// `X-Amz-Algorithm`.
    pub algorithm: String,
    /// `X-Amz-Credential`: `ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request`.
    pub credential: String,
    /// `X-Amz-Signature`.
    pub signature: String,
    /// `X-Amz-SignedHeaders`.
    pub signed_headers: String,
    /// `X-Amz-Date`.
    pub amz_date: String,
    /// `X-Amz-Expires`, when given.
    pub expires: Option<String>,
}

fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

fn param(query: &str, name: &str) -> Option<String> {
    pairs(query)
        .find(|(key, _)| percent_decode(key) == name)
        .map(|(_, value)| percent_decode(value))
        .filter(|value| !value.is_empty())
}

/// Whether the request carries its signature in the query string.
pub fn carries_signature(query: &str) -> bool {
    !query.is_empty() && pairs(query).any(|(key, _)| percent_decode(key) == "X-Amz-Algorithm")
}

/// Reads the signature parameters; every missing one is named in one
/// `IncompleteSignatureException`, in Kinesis's words.
pub fn parse(query: &str) -> Result<QueryAuth, ApiError> {
    let missing: String = REQUIRED
        .iter()
        .filter(|name| param(query, name).is_none())
        .map(|name| format!("AWS query-string parameters must include '{name}'. "))
        .collect();
    if !missing.is_empty() {
        return Err(incomplete(format!(
            "{missing}Re-examine the query-string parameters."
        )));
    }
    let get = |name: &str| param(query, name).unwrap_or_default();
    Ok(QueryAuth {
        algorithm: get("X-Amz-Algorithm"),
        credential: get("X-Amz-Credential"),
        signature: get("X-Amz-Signature"),
        signed_headers: get("X-Amz-SignedHeaders"),
        amz_date: get("X-Amz-Date"),
        expires: param(query, "X-Amz-Expires"),
    })
}

/// The query string the signature covers: every parameter but `X-Amz-Signature`.
pub fn signed_query(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && percent_decode(key) != "X-Amz-Signature"
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// How long the signature stays valid, in milliseconds: `X-Amz-Expires` seconds (1 to seven
/// days), or `default_ms` without it.
pub fn validity_ms(expires: Option<&str>, default_ms: u64) -> Result<u64, ApiError> {
    let Some(text) = expires else {
        return Ok(default_ms);
    };
    match text.parse::<u64>() {
        Ok(seconds) if (1..=MAX_EXPIRES_SECONDS).contains(&seconds) => Ok(seconds * 1000),
        Ok(_) => Err(incomplete(format!(
            "X-Amz-Expires must be between 1 and {MAX_EXPIRES_SECONDS} seconds (seven days); got {text}."
        ))),
        Err(_) => Err(incomplete(format!(
            "X-Amz-Expires must be a whole number of seconds; got '{text}'."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261130%2Fus-east-1%2Fkinesis%2Faws4_request&X-Amz-Date=20261130T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=abc";

    #[test]
    fn the_parameters_are_read_decoded_and_the_signature_left_out_of_what_it_signs() {
        assert!(carries_signature(QUERY));
        assert!(!carries_signature("Action=ListStreams"));
        assert!(!carries_signature(""));
        let auth = parse(QUERY).expect("complete");
        assert_eq!(
            auth.credential,
            "AKID/20261130/us-east-1/kinesis/aws4_request"
        );
        assert_eq!(auth.expires.as_deref(), Some("60"));
        assert_eq!(
            signed_query(QUERY),
            QUERY.trim_end_matches("&X-Amz-Signature=abc")
        );
    }

    #[test]
    fn every_missing_parameter_is_named_in_one_answer() {
        let error = parse("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261130T000000Z")
            .expect_err("incomplete");
        assert_eq!(
            error.message,
            "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters."
        );
    }

    #[test]
    fn expiry_is_bounded_to_seven_days() {
        assert_eq!(validity_ms(None, 300_000).ok(), Some(300_000));
        assert_eq!(validity_ms(Some("60"), 300_000).ok(), Some(60_000));
        assert!(validity_ms(Some("0"), 300_000).is_err());
        assert!(validity_ms(Some("604801"), 300_000).is_err());
        assert!(validity_ms(Some("soon"), 300_000).is_err());
    }
}
