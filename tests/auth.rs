//! SigV4 authentication against a broker given credentials: the real SDK's signatures pass
//! with the right key; a wrong secret, an unknown key, a tampered body, a stale date and an
//! unsigned request each fail with the error AWS gives, and never with data.

mod support;

use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_smithy_async::time::StaticTimeSource;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use support::broker::{BrokerBuilder, TempDir, error_code};

const KEY_ID: &str = "AKIDBROOKPRODUCER1";
const SECRET: &str = "brook-test-secret-0123456789abcdefghij";

fn config(endpoint: &str, key: &str, secret: &str) -> aws_sdk_kinesis::config::Builder {
    aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
}

fn client(endpoint: &str, key: &str, secret: &str) -> Client {
    Client::from_conf(config(endpoint, key, secret).build())
}

/// Replaces the body after the SDK signed the request, as a man in the middle would.
#[derive(Debug)]
struct TamperBody;

impl Intercept for TamperBody {
    fn name(&self) -> &'static str {
        "TamperBody"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *context.request_mut().body_mut() = SdkBody::from("{\"Limit\":1}");
        Ok(())
    }
}

fn credentials_folder(dir: &TempDir) -> std::path::PathBuf {
    // A mounted Secret: one file per access key id, its content the secret.
    let folder = dir.path().join("credentials");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join(KEY_ID), format!("{SECRET}\n")).expect("key file");
    folder
}

#[tokio::test]
async fn only_requests_signed_with_a_known_key_and_secret_get_through() {
    let dir = TempDir::new("auth");
    let data = TempDir::new("auth-data");
    let folder = credentials_folder(&dir);
    let broker = BrokerBuilder::default()
        .arg("--credentials")
        .arg(folder.to_string_lossy())
        .start(data.path());
    assert!(
        broker
            .log()
            .contains("every request must carry a valid SigV4 signature"),
        "{}",
        broker.log()
    );

    let good = client(&broker.endpoint, KEY_ID, SECRET);
    good.create_stream()
        .stream_name("private")
        .shard_count(1)
        .send()
        .await
        .expect("signed CreateStream");
    let listed = good
        .list_streams()
        .send()
        .await
        .expect("signed ListStreams");
    assert_eq!(listed.stream_names(), ["private"]);

    let wrong_secret = client(&broker.endpoint, KEY_ID, "not-the-secret")
        .list_streams()
        .send()
        .await;
    assert_eq!(
        error_code(&wrong_secret.expect_err("wrong secret")),
        "InvalidSignatureException"
    );

    let stranger = client(&broker.endpoint, "AKIDSTRANGER", SECRET)
        .list_streams()
        .send()
        .await;
    assert_eq!(
        error_code(&stranger.expect_err("unknown key")),
        "UnrecognizedClientException"
    );

    let tampering = Client::from_conf(
        config(&broker.endpoint, KEY_ID, SECRET)
            .interceptor(TamperBody)
            .build(),
    );
    let tampered = tampering.list_streams().send().await;
    assert_eq!(
        error_code(&tampered.expect_err("tampered body")),
        "InvalidSignatureException"
    );

    let ten_minutes_ago = SystemTime::now() - Duration::from_secs(600);
    let stale = Client::from_conf(
        config(&broker.endpoint, KEY_ID, SECRET)
            .time_source(StaticTimeSource::new(ten_minutes_ago))
            .build(),
    );
    assert_eq!(
        error_code(&stale.list_streams().send().await.expect_err("stale date")),
        "InvalidSignatureException"
    );

    let (status, body) = tokio::task::spawn_blocking({
        let endpoint = broker.endpoint.clone();
        move || {
            let answer = support::broker::raw_request(
                &endpoint,
                "POST",
                &[
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amz-Target", "Kinesis_20131202.ListStreams"),
                ],
                b"{}",
            );
            (
                answer.status,
                String::from_utf8_lossy(&answer.body).into_owned(),
            )
        }
    })
    .await
    .expect("raw request");
    assert_eq!(status, 400);
    assert!(
        body.contains("MissingAuthenticationTokenException"),
        "{body}"
    );
    assert!(
        !body.contains("private"),
        "an unsigned request saw data: {body}"
    );
}

#[tokio::test]
async fn rotated_credentials_take_effect_without_a_restart() {
    let dir = TempDir::new("auth-rotate");
    let data = TempDir::new("auth-rotate-data");
    let folder = credentials_folder(&dir);
    let broker = BrokerBuilder::default()
        .arg("--credentials")
        .arg(folder.to_string_lossy())
        .start(data.path());
    let next = client(&broker.endpoint, "AKIDROTATED", "rotated-secret");
    assert_eq!(
        error_code(&next.list_streams().send().await.expect_err("not yet known")),
        "UnrecognizedClientException"
    );
    std::fs::write(folder.join("AKIDROTATED"), "rotated-secret").expect("new key");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match next.list_streams().send().await {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(error) => panic!("the rotated key never took effect: {error:?}"),
        }
    }
}

/// Polls `list_streams` with `client` until `accepted(result)` holds, for up to 20 s (the
/// broker re-reads its credentials every 5 s).
async fn until_reloaded(
    client: &Client,
    what: &str,
    accepted: impl Fn(Result<(), String>) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let outcome = client
            .list_streams()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| error_code(&e));
        if accepted(outcome.clone()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never took effect: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn hardening_a_removed_key_and_an_emptied_secret_are_revoked_within_the_reload_period() {
    let dir = TempDir::new("auth-revoke");
    let data = TempDir::new("auth-revoke-data");
    let folder = credentials_folder(&dir);
    std::fs::write(folder.join("AKIDSECOND"), "second-secret").expect("second key");
    let broker = BrokerBuilder::default()
        .arg("--credentials")
        .arg(folder.to_string_lossy())
        .start(data.path());
    let first = client(&broker.endpoint, KEY_ID, SECRET);
    let second = client(&broker.endpoint, "AKIDSECOND", "second-secret");
    first.list_streams().send().await.expect("first key works");
    second
        .list_streams()
        .send()
        .await
        .expect("second key works");

    std::fs::remove_file(folder.join("AKIDSECOND")).expect("remove the second key");
    until_reloaded(&second, "removing AKIDSECOND", |outcome| {
        outcome == Err("UnrecognizedClientException".to_owned())
    })
    .await;
    first
        .list_streams()
        .send()
        .await
        .expect("the key left in place still works");

    // An emptied Secret means no keys at all, not the keys it had before.
    std::fs::remove_file(folder.join(KEY_ID)).expect("empty the folder");
    until_reloaded(&first, "emptying the credentials", |outcome| {
        outcome == Err("UnrecognizedClientException".to_owned())
    })
    .await;
}

#[tokio::test]
async fn hardening_a_signature_for_another_region_is_refused() {
    let dir = TempDir::new("auth-region");
    let data = TempDir::new("auth-region-data");
    let folder = credentials_folder(&dir);
    let broker = BrokerBuilder::default()
        .arg("--credentials")
        .arg(folder.to_string_lossy())
        .start(data.path());
    let elsewhere = Client::from_conf(
        config(&broker.endpoint, KEY_ID, SECRET)
            .region(Region::new("eu-west-1"))
            .build(),
    );
    let error = elsewhere
        .list_streams()
        .send()
        .await
        .expect_err("signed for eu-west-1, served in us-east-1");
    assert_eq!(error_code(&error), "InvalidSignatureException");
    let message = format!("{:?}", error);
    assert!(message.contains("eu-west-1/kinesis"), "{message}");
    client(&broker.endpoint, KEY_ID, SECRET)
        .list_streams()
        .send()
        .await
        .expect("signed for the broker's region");
}

/// Sends `operation` presigned by botocore (`tests/python/presigned.py`); returns the status,
/// the body and the query string it carried.
fn presigned(
    endpoint: &str,
    operation: &str,
    body: &str,
    secret: &str,
    extra_headers: &[&str],
) -> (u16, String, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(support::helm::python())
        .arg(root.join("tests/python/presigned.py"))
        .args([endpoint, operation, body, KEY_ID, secret, "60"])
        .args(extra_headers)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    (
        answer["status"].as_u64().unwrap_or(0) as u16,
        answer["body"].as_str().unwrap_or_default().to_owned(),
        answer["query"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn fidelity_presigned_requests_are_verified_like_signed_headers() {
    let dir = TempDir::new("auth-presigned");
    let data = TempDir::new("auth-presigned-data");
    let folder = credentials_folder(&dir);
    let broker = BrokerBuilder::default()
        .arg("--credentials")
        .arg(folder.to_string_lossy())
        .start(data.path());
    let endpoint = &broker.endpoint;
    let created = presigned(
        endpoint,
        "CreateStream",
        r#"{"StreamName":"presigned","ShardCount":1}"#,
        SECRET,
        &[],
    );
    assert_eq!((created.0, created.1.as_str()), (200, ""), "{created:?}");
    assert!(created.2.contains("X-Amz-Signature="), "{created:?}");
    let listed = presigned(endpoint, "ListStreams", "{}", SECRET, &[]);
    assert_eq!(listed.0, 200, "{listed:?}");
    assert!(
        listed.1.contains(r#""StreamNames":["presigned"]"#),
        "{listed:?}"
    );

    let forged = presigned(endpoint, "ListStreams", "{}", "not-the-secret", &[]);
    assert_eq!(forged.0, 400, "{forged:?}");
    assert!(forged.1.contains("InvalidSignatureException"), "{forged:?}");
    // A tampered body fails: the signature covers the body's hash.
    let tampered = presigned(
        endpoint,
        "ListStreams",
        "{}",
        SECRET,
        &[r#"--send={"Limit":1}"#],
    );
    assert_eq!(tampered.0, 400, "{tampered:?}");
    assert!(
        tampered.1.contains("InvalidSignatureException"),
        "{tampered:?}"
    );
    // Signed as UNSIGNED-PAYLOAD, the signature covers everything but the body.
    let unsigned = presigned(
        endpoint,
        "ListStreams",
        "{}",
        SECRET,
        &["--unsigned-payload", r#"--send={"Limit":1}"#],
    );
    assert_eq!(unsigned.0, 200, "{unsigned:?}");
    assert!(
        unsigned.1.contains(r#""StreamNames":["presigned"]"#),
        "{unsigned:?}"
    );
    let both = presigned(
        endpoint,
        "ListStreams",
        "{}",
        SECRET,
        &[
            "Authorization=AWS4-HMAC-SHA256 Credential=AKIDBROOKPRODUCER1/20261130/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00",
        ],
    );
    assert_eq!(
        (both.0, both.1.as_str()),
        (
            400,
            r#"{"__type":"InvalidSignatureException","message":"Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."}"#
        ),
        "{both:?}"
    );
}
