//! Pure validation of the three resources' specs: the operator's own copy of every rule the
//! CRD schema states, so a resource admitted under an older CRD is still refused clearly.
//!
//! Each check returns every problem found, not just the first, as `kubectl apply` would.

use super::consumer::ConsumerSpec;
use super::delivery::{DeliveryStreamSpec, StartingPosition};
use super::stream::{MAX_STREAM_NAME_LENGTH, StreamSpec};

/// The problems of a spec as one message, as an InvalidSpec status shows them.
pub fn describe(problems: &[ValidationError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One problem with a resource's spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A number lies outside the range the field allows.
    #[error("{field}: {value} is outside {min}..={max}")]
    OutOfRange {
        /// The field's path, such as `spec.shards`.
        field: &'static str,
        /// The value given.
        value: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A string does not have the form the field needs.
    #[error("{field}: {value:?} is not {expected}")]
    Malformed {
        /// The field's path.
        field: &'static str,
        /// The value given.
        value: String,
        /// What the field needs, for humans.
        expected: &'static str,
    },
    /// Fields that contradict each other or a required choice that was not made.
    #[error("{0}")]
    Inconsistent(&'static str),
}

impl ValidationError {
    /// Stable short label for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::OutOfRange { .. } => "OutOfRange",
            Self::Malformed { .. } => "Malformed",
            Self::Inconsistent(_) => "Inconsistent",
        }
    }
}

/// Collects problems while a spec is checked.
#[derive(Default)]
struct Problems(Vec<ValidationError>);

impl Problems {
    fn range(&mut self, field: &'static str, value: impl Into<i64>, min: i64, max: i64) {
        let value = value.into();
        if value < min || value > max {
            self.0.push(ValidationError::OutOfRange {
                field,
                value,
                min,
                max,
            });
        }
    }

    fn form(&mut self, field: &'static str, value: &str, ok: bool, expected: &'static str) {
        if !ok {
            self.0.push(ValidationError::Malformed {
                field,
                value: value.to_owned(),
                expected,
            });
        }
    }

    fn kinesis_name(&mut self, field: &'static str, value: &str) {
        self.form(
            field,
            value,
            is_kinesis_name(value),
            "1 to 128 letters, digits, '_', '.' or '-'",
        );
    }

    fn require(&mut self, ok: bool, message: &'static str) {
        if !ok {
            self.0.push(ValidationError::Inconsistent(message));
        }
    }

    fn finish(self) -> Result<(), Vec<ValidationError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Checks a Stream named `name`.
pub fn validate_stream(name: &str, spec: &StreamSpec) -> Result<(), Vec<ValidationError>> {
    let mut problems = Problems::default();
    problems.form(
        "metadata.name",
        name,
        name.len() <= MAX_STREAM_NAME_LENGTH,
        "at most 52 characters",
    );
    problems.range("spec.shards", spec.shards, 1, 10_000);
    problems.range("spec.retentionHours", spec.retention_hours, 24, 8760);
    problems.range(
        "spec.maxRecordSizeKiB",
        spec.max_record_size_kib,
        1024,
        10_240,
    );
    let limits = &spec.limits;
    problems.range(
        "spec.limits.writeBytesPerSecond",
        limits.write_bytes_per_second,
        1,
        i64::MAX,
    );
    problems.range(
        "spec.limits.writeRecordsPerSecond",
        limits.write_records_per_second,
        1,
        i64::MAX,
    );
    problems.range(
        "spec.limits.readBytesPerSecond",
        limits.read_bytes_per_second,
        1,
        i64::MAX,
    );
    problems.range(
        "spec.limits.readCallsPerSecond",
        limits.read_calls_per_second,
        1,
        i64::MAX,
    );
    if let Some(auto) = &spec.autoscaling {
        problems.range("spec.autoscaling.minShards", auto.min_shards, 1, 10_000);
        problems.range("spec.autoscaling.maxShards", auto.max_shards, 1, 10_000);
        problems.range(
            "spec.autoscaling.targetUtilizationPercent",
            auto.target_utilization_percent,
            1,
            100,
        );
        problems.range(
            "spec.autoscaling.scaleUpStabilizationSeconds",
            auto.scale_up_stabilization_seconds,
            0,
            3600,
        );
        problems.range(
            "spec.autoscaling.scaleDownStabilizationSeconds",
            auto.scale_down_stabilization_seconds,
            0,
            86_400,
        );
        problems.require(
            auto.min_shards <= auto.max_shards,
            "minShards must not exceed maxShards",
        );
        problems.require(
            !auto.enabled || auto.prometheus.is_some(),
            "autoscaling needs a prometheus source when enabled",
        );
        problems.require(
            !auto.enabled || spec.stream_mode != crate::api::stream::StreamMode::OnDemand,
            "an ON_DEMAND stream scales itself: autoscaling applies to PROVISIONED streams",
        );
        if let Some(prometheus) = &auto.prometheus {
            problems.form(
                "spec.autoscaling.prometheus.url",
                &prometheus.url,
                is_http_url(&prometheus.url),
                "an http:// or https:// URL",
            );
            problems.range(
                "spec.autoscaling.prometheus.windowSeconds",
                prometheus.window_seconds,
                5,
                3600,
            );
            problems.range(
                "spec.autoscaling.prometheus.timeoutSeconds",
                prometheus.timeout_seconds,
                1,
                120,
            );
            problems.require(
                prometheus.bearer_token_secret_ref.is_none()
                    || prometheus.basic_auth_secret_ref.is_none(),
                "use bearerTokenSecretRef or basicAuthSecretRef, not both",
            );
        }
        problems.range(
            "spec.autoscaling.periodSeconds",
            auto.period_seconds,
            1,
            3600,
        );
    }
    problems.range("spec.brokers.replicas", spec.brokers.replicas, 1, 100);
    problems.form(
        "spec.brokers.storage.size",
        &spec.brokers.storage.size,
        is_quantity(&spec.brokers.storage.size),
        "a quantity such as 10Gi",
    );
    problems.finish()
}

/// Checks a DeliveryStream.
pub fn validate_delivery_stream(spec: &DeliveryStreamSpec) -> Result<(), Vec<ValidationError>> {
    let mut problems = Problems::default();
    let source = &spec.source;
    problems.require(
        source.stream.is_some() != source.direct_put.is_some(),
        "set exactly one of stream and directPut",
    );
    if let Some(stream) = &source.stream {
        problems.form(
            "spec.source.stream.name",
            &stream.name,
            is_kinesis_name(&stream.name),
            "1 to 128 letters, digits, '_', '.' or '-'",
        );
        problems.require(
            stream.starting_position != StartingPosition::AtTimestamp || stream.timestamp.is_some(),
            "startingPosition AT_TIMESTAMP needs a timestamp",
        );
    }
    problems.range("spec.buffering.sizeMiB", spec.buffering.size_mib, 1, 128);
    problems.range(
        "spec.buffering.intervalSeconds",
        spec.buffering.interval_seconds,
        0,
        900,
    );
    let destination = &spec.destination;
    problems.require(
        destination.s3.is_some() != destination.http.is_some(),
        "set exactly one of s3 and http",
    );
    if let Some(s3) = &destination.s3 {
        problems.form(
            "spec.destination.s3.bucket",
            &s3.bucket,
            is_bucket_name(&s3.bucket),
            "a bucket name: 3 to 63 lowercase letters, digits, '.' or '-'",
        );
        if let Some(endpoint) = &s3.endpoint {
            problems.form(
                "spec.destination.s3.endpoint",
                endpoint,
                is_http_url(endpoint),
                "an http:// or https:// URL",
            );
        }
    }
    if let Some(http) = &destination.http {
        problems.form(
            "spec.destination.http.url",
            &http.url,
            is_http_url(&http.url),
            "an http:// or https:// URL",
        );
        problems.range(
            "spec.destination.http.retryDurationSeconds",
            http.retry_duration_seconds,
            0,
            7200,
        );
    }
    problems.finish()
}

/// Checks a Consumer.
pub fn validate_consumer(spec: &ConsumerSpec) -> Result<(), Vec<ValidationError>> {
    let mut problems = Problems::default();
    problems.kinesis_name("spec.streamName", &spec.stream_name);
    if let Some(name) = &spec.consumer_name {
        problems.kinesis_name("spec.consumerName", name);
    }
    problems.finish()
}

/// Checks a Queue's spec as the schema does, for objects that bypassed it.
pub fn validate_queue(spec: &crate::api::QueueSpec) -> Result<(), Vec<ValidationError>> {
    use crate::api::queue::{DeadLetterTarget, StartingPositionType};
    let mut problems = Problems::default();
    problems.kinesis_name("spec.streamName", &spec.stream_name);
    if let Some(name) = &spec.queue_name {
        problems.kinesis_name("spec.queueName", name);
    }
    problems.range(
        "spec.visibilityTimeoutSeconds",
        spec.visibility_timeout_seconds,
        0,
        43_200,
    );
    if let Some(count) = spec.dead_letters.max_receive_count {
        problems.range("spec.deadLetters.maxReceiveCount", count, 1, 1000);
    }
    problems.require(
        spec.dead_letters.target_type == DeadLetterTarget::BuiltIn
            || spec.dead_letters.max_receive_count.is_none(),
        "maxReceiveCount applies to BUILT_IN dead-letter handling",
    );
    problems.require(
        (spec.starting_position.kind == StartingPositionType::AtTimestamp)
            == spec.starting_position.timestamp.is_some(),
        "timestamp is required with AT_TIMESTAMP and only with it",
    );
    problems.finish()
}

/// A stream or consumer name as Kinesis accepts it: `[a-zA-Z0-9_.-]{1,128}`.
pub fn is_kinesis_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.chars().any(char::is_whitespace))
}

fn is_bucket_name(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.first().copied().is_some_and(edge_ok)
        && bytes.last().copied().is_some_and(edge_ok)
        && bytes.iter().all(|&b| edge_ok(b) || b == b'.' || b == b'-')
}

fn is_quantity(quantity: &str) -> bool {
    const SUFFIXES: [&str; 12] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|suffix| quantity.strip_suffix(suffix))
        .unwrap_or(quantity);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && parts.next().is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinesis_names_allow_only_the_documented_characters() {
        assert!(is_kinesis_name("clicks.v2_raw-1"));
        assert!(!is_kinesis_name(""));
        assert!(!is_kinesis_name("has space"));
        assert!(!is_kinesis_name(&"a".repeat(129)));
    }

    #[test]
    fn urls_need_an_http_scheme_and_a_host() {
        assert!(is_http_url("http://prometheus:9090"));
        assert!(is_http_url("https://example.com/path"));
        assert!(!is_http_url("prometheus:9090"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("http://a b"));
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!(is_bucket_name("brook-events.2026"));
        assert!(!is_bucket_name("ab"));
        assert!(!is_bucket_name("Upper"));
        assert!(!is_bucket_name("-leading"));
        assert!(!is_bucket_name("trailing."));
    }

    #[test]
    fn quantities_take_a_number_and_an_optional_suffix() {
        for good in ["10Gi", "500M", "1.5Ti", "1073741824"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "Gi", "ten", "10 Gi", "1.Gi", "10GB"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
