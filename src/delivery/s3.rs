//! Writing objects to an S3-compatible bucket through the AWS SDK for Rust: path-style or
//! virtual-hosted addressing, static credentials (from a Secret) or the environment's, one
//! PutObject for small objects and a multipart upload for large ones.

use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::api::delivery::S3Destination;

/// Objects at least this large go up in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each part but the last (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Why an object could not be written.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// No access key in the Secret nor in the environment.
    #[error(
        "no S3 credentials: set credentialsSecretRef, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials,
    /// The server refused or did not answer.
    #[error("{operation} s3://{bucket}/{key}: {message}")]
    Request {
        /// The S3 operation.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The SDK's error with its context.
        message: String,
    },
}

/// An access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id.
    pub id: String,
    /// The secret access key.
    pub secret: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AccessKey {
    /// The key pair of the standard AWS environment variables, if set.
    pub fn from_environment() -> Option<Self> {
        let id = std::env::var("AWS_ACCESS_KEY_ID").ok()?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok()?;
        Some(Self {
            id,
            secret,
            session_token: std::env::var("AWS_SESSION_TOKEN").ok(),
        })
    }
}

/// The bucket an `arn:<partition>:s3:::<bucket>` ARN names, if it is one.
pub fn bucket_in_arn(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":s3:::"))
        .filter(|(partition, _)| partition.starts_with("aws") && !partition.contains(':'))
        .map(|(_, bucket)| bucket)
        .filter(|b| (3..=63).contains(&b.len()) && !b.contains('/'))
}

/// What every AWS SDK client of a destination shares: credentials, TLS and time limits.
struct Connection {
    credentials: Credentials,
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    timeouts: TimeoutConfig,
}

impl Connection {
    fn new(key: Option<AccessKey>) -> Result<Self, S3Error> {
        let key = key
            .or_else(AccessKey::from_environment)
            .ok_or(S3Error::NoCredentials)?;
        Ok(Self {
            credentials: Credentials::new(key.id, key.secret, key.session_token, None, "brook"),
            http: aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
            timeouts: TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        })
    }
}

/// A bucket objects are written to.
#[derive(Clone, Debug)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
    /// The storage class objects are written with; the bucket's default when absent.
    storage_class: Option<String>,
    /// The account that must own the bucket (`x-amz-expected-bucket-owner`), if any.
    expected_owner: Option<String>,
}

impl Bucket {
    /// A client for `destination`'s bucket, signing with `key`.
    pub fn new(destination: &S3Destination, key: Option<AccessKey>) -> Result<Self, S3Error> {
        let connection = Connection::new(key)?;
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(destination.region.clone()))
            .credentials_provider(connection.credentials.clone())
            // Checksums only where S3 requires them: not every S3-compatible server checks
            // the newer ones, and a body's MD5 is not needed over a checked connection.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(connection.timeouts.clone())
            .http_client(connection.http.clone());
        if let Some(endpoint) = &destination.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let path_style = destination
            .force_path_style
            .unwrap_or(destination.endpoint.is_some());
        config = config.force_path_style(path_style);
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            name: destination.bucket.clone(),
            storage_class: None,
            expected_owner: None,
        })
    }

    /// A client of the S3 Tables API at `endpoint` (AWS's when absent), in `destination`'s
    /// region, signing with `key` (or the environment's).
    pub fn tables_client(
        destination: &S3Destination,
        endpoint: Option<&str>,
        key: Option<AccessKey>,
    ) -> Result<aws_sdk_s3tables::Client, S3Error> {
        let connection = Connection::new(key)?;
        let mut config = aws_sdk_s3tables::Config::builder()
            .behavior_version(aws_sdk_s3tables::config::BehaviorVersion::latest())
            .region(aws_sdk_s3tables::config::Region::new(
                destination.region.clone(),
            ))
            .credentials_provider(connection.credentials)
            .retry_config(aws_sdk_s3tables::config::retry::RetryConfig::standard())
            .timeout_config(connection.timeouts)
            .http_client(connection.http);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(aws_sdk_s3tables::Client::from_conf(config.build()))
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bytes of `key` in `range` (the whole object when absent).
    pub async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes, S3Error> {
        if range.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(Bytes::new());
        }
        let object = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)))
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
            .map_err(|e| self.failed("GetObject", key, e))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| self.failed("GetObject", key, e))?;
        Ok(body.into_bytes())
    }

    /// The size of the object at `key`; `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(&self.name)
            .key(key)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(self.failed("HeadObject", key, error)),
        }
    }

    /// Removes the object at `key` (nothing when there is none).
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(&self.name)
            .key(key)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
            .map_err(|e| self.failed("DeleteObject", key, e))?;
        Ok(())
    }

    /// The same bucket, written with `storage_class` and only if `expected_owner` owns it.
    pub fn with_object_settings(
        mut self,
        storage_class: Option<String>,
        expected_owner: Option<String>,
    ) -> Self {
        self.storage_class = storage_class;
        self.expected_owner = expected_owner;
        self
    }

    /// The same client, for another bucket.
    pub fn other(&self, name: &str, expected_owner: Option<String>) -> Self {
        Self {
            client: self.client.clone(),
            name: name.to_owned(),
            storage_class: None,
            expected_owner,
        }
    }

    fn storage_class(&self) -> Option<aws_sdk_s3::types::StorageClass> {
        self.storage_class
            .as_deref()
            .map(aws_sdk_s3::types::StorageClass::from)
    }

    fn failed(&self, operation: &'static str, key: &str, error: impl std::error::Error) -> S3Error {
        S3Error::Request {
            operation,
            bucket: self.name.clone(),
            key: key.to_owned(),
            message: DisplayErrorContext(error).to_string(),
        }
    }

    /// Writes `body` at `key` (replacing what is there), in parts when it is large.
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), S3Error> {
        if body.len() >= MULTIPART_THRESHOLD {
            return self.put_in_parts(key, body).await;
        }
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .set_storage_class(self.storage_class())
            .set_expected_bucket_owner(self.expected_owner.clone())
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.failed("PutObject", key, e))?;
        Ok(())
    }

    async fn put_in_parts(&self, key: &str, body: Bytes) -> Result<(), S3Error> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .set_storage_class(self.storage_class())
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
            .map_err(|e| self.failed("CreateMultipartUpload", key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(key, &upload_id, body).await;
        if result.is_err() {
            // Best effort: a bucket's lifecycle rule removes what an abort does not.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.name)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(&self, key: &str, upload_id: &str, body: Bytes) -> Result<(), S3Error> {
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < body.len() {
            let end = (offset + PART_SIZE).min(body.len());
            let part = self
                .client
                .upload_part()
                .bucket(&self.name)
                .key(key)
                .upload_id(upload_id)
                .set_expected_bucket_owner(self.expected_owner.clone())
                .part_number(number)
                .body(ByteStream::from(body.slice(offset..end)))
                .send()
                .await
                .map_err(|e| self.failed("UploadPart", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .part_number(number)
                    .build(),
            );
            offset = end;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .upload_id(upload_id)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.failed("CompleteMultipartUpload", key, e))?;
        Ok(())
    }
}
