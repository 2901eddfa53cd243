//! SigV4 verification tests.

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
    let signature = expected_signature(
        &request,
        &auth,
        "20150830T123600Z",
        &key_of(secret),
        &hash,
        "",
    )
    .expect("signs");
    request.headers.push((
        "authorization".into(),
        format!("{ALGORITHM} Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={signature}").into(),
    ));
    request
}

/// The signing key of the examples' scope (20150830, us-east-1, kinesis).
fn key_of(secret: &str) -> [u8; 32] {
    signing_key(secret, "20150830", "us-east-1", "kinesis")
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
    let key = signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20120215",
        "us-east-1",
        "iam",
    );
    assert_eq!(
        hex(&key),
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
        .push(("authorization".into(), authorization.into()));
    assert_eq!(
        verify(&request, &credentials(), "us-east-1", SIGNED_AT),
        Ok("AKIDEXAMPLE".to_owned())
    );
    assert_eq!(format_amz_date(SIGNED_AT), "20150830T123600Z");
}

#[test]
fn hardening_a_signature_scoped_to_another_region_is_refused_naming_the_scope() {
    let signed = sign(request(b"{}"), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    let refusal =
        verify(&signed, &credentials(), "eu-west-1", SIGNED_AT).expect_err("signed for us-east-1");
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

#[test]
fn a_request_signed_as_unsigned_payload_is_verified_against_that_literal_not_its_body() {
    // The signer put UNSIGNED-PAYLOAD in its canonical request (and says so in a header): the
    // signature covers the literal, so it holds whatever the body is.
    let mut request = request(b"{\"Limit\":5}");
    request
        .headers
        .push(("x-amz-content-sha256".into(), UNSIGNED_PAYLOAD.into()));
    let auth = Authorization {
        access_key: "AKIDEXAMPLE",
        date: "20150830",
        region: "us-east-1",
        service: "kinesis",
        signed_headers: vec![
            "content-type",
            "host",
            "x-amz-content-sha256",
            "x-amz-date",
            "x-amz-target",
        ],
        signature: "",
    };
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let signature = expected_signature(
        &request,
        &auth,
        "20150830T123600Z",
        &key_of(secret),
        UNSIGNED_PAYLOAD,
        "",
    )
    .expect("signs");
    request.headers.push((
        "authorization".into(),
        format!("{ALGORITHM} Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target, Signature={signature}").into(),
    ));
    assert_eq!(
        verify(&request, &credentials(), "us-east-1", SIGNED_AT),
        Ok("AKIDEXAMPLE".to_owned())
    );
    // Signed over the body's hash while declaring UNSIGNED-PAYLOAD: refused.
    let mut lying = self::request(b"{\"Limit\":5}");
    lying
        .headers
        .push(("x-amz-content-sha256".into(), UNSIGNED_PAYLOAD.into()));
    let body_hash = hex(&Sha256::digest(lying.body));
    let signature = expected_signature(
        &lying,
        &auth,
        "20150830T123600Z",
        &key_of(secret),
        &body_hash,
        "",
    )
    .expect("signs");
    lying.headers.push((
        "authorization".into(),
        format!("{ALGORITHM} Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target, Signature={signature}").into(),
    ));
    assert_eq!(
        verify(&lying, &credentials(), "us-east-1", SIGNED_AT).map_err(|e| e.kind),
        Err(ErrorKind::InvalidSignature)
    );
}

#[test]
fn a_request_signed_by_botocore_verifies() {
    // Signed by botocore's SigV4Auth (service kinesis), not by this module: the header whose
    // value has leading, trailing and repeated spaces checks the canonical form of values.
    let body = br#"{"StreamName":"orders","Data":"aGVsbG8=","PartitionKey":"a  b"}"#;
    let request = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: vec![
            ("content-type".into(), "application/x-amz-json-1.1".into()),
            ("x-amz-target".into(), "Kinesis_20131202.PutRecord".into()),
            ("x-custom".into(), "  two   spaces  ".into()),
            ("x-amz-date".into(), "20261203T200724Z".into()),
            ("host".into(), "kinesis.us-east-1.amazonaws.com".into()),
            ("authorization".into(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target;x-custom, Signature=6f00b5e77326a7bc7045042a6e9dfc7c137e27d0d4769a3cb04b7d50eea1fbcb".into()),
        ],
        body,
    };
    let signed_at = parse_amz_date("20261203T200724Z").expect("a valid date");
    assert_eq!(
        verify(&request, &credentials(), "us-east-1", signed_at),
        Ok("AKIDEXAMPLE".to_owned())
    );
    let mut altered = request;
    altered.headers[2].1 = "two spaces and more".into();
    assert_eq!(
        verify(&altered, &credentials(), "us-east-1", signed_at).map_err(|e| e.kind),
        Err(ErrorKind::InvalidSignature)
    );
}

#[test]
fn a_cached_signing_key_serves_only_its_own_day_region_and_service() {
    let credentials = credentials();
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    // Six days, more than the scopes kept per key, then the first again: each verifies with
    // its own day's key, whether derived now or found.
    let days = [
        "20150830", "20150831", "20150901", "20150902", "20150903", "20150904", "20150830",
    ];
    for day in days {
        let amz_date = format!("{day}T123600Z");
        let mut request = request(b"{}");
        request.headers[2].1 = amz_date.clone().into();
        let authorization = super::sign(&request, "AKIDEXAMPLE", secret, "us-east-1");
        request
            .headers
            .push(("authorization".into(), authorization.into()));
        let at = parse_amz_date(&amz_date).expect("a valid date");
        assert_eq!(
            verify(&request, &credentials, "us-east-1", at),
            Ok("AKIDEXAMPLE".to_owned()),
            "{day}"
        );
        // The same day's key is now cached: a wrong secret still fails.
        let mut forged = self::request(b"{}");
        forged.headers[2].1 = amz_date.clone().into();
        let authorization = super::sign(&forged, "AKIDEXAMPLE", "not the secret", "us-east-1");
        forged
            .headers
            .push(("authorization".into(), authorization.into()));
        assert_eq!(
            verify(&forged, &credentials, "us-east-1", at).map_err(|e| e.kind),
            Err(ErrorKind::InvalidSignature),
            "{day}"
        );
    }
    // Another service under the same key id and day gets its own key: a request signed for
    // firehose verifies as firehose and not as kinesis.
    let mut request = request(b"{}");
    let authorization = signing::sign_for(&request, "AKIDEXAMPLE", secret, "us-east-1", "firehose");
    request
        .headers
        .push(("authorization".into(), authorization.into()));
    assert_eq!(
        verify_for(&request, &credentials, "us-east-1", "firehose", SIGNED_AT),
        Ok("AKIDEXAMPLE".to_owned())
    );
    assert_eq!(
        verify(&request, &credentials, "us-east-1", SIGNED_AT).map_err(|e| e.kind),
        Err(ErrorKind::InvalidSignature)
    );
}

#[test]
fn credentials_print_their_key_ids_and_never_a_secret() {
    let credentials = Credentials::from_pairs([
        ("AKIDSECOND".to_owned(), "second-secret-value".to_owned()),
        ("AKIDFIRST".to_owned(), "first-secret-value".to_owned()),
    ]);
    let printed = format!("{credentials:?}");
    assert!(
        printed.contains(r#"["AKIDFIRST", "AKIDSECOND"]"#),
        "{printed}"
    );
    assert!(!printed.contains("secret-value"), "{printed}");
}
