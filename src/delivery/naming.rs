//! Object keys of delivered batches, named as Kinesis Data Firehose names them:
//! `<prefix><name>-<version>-yyyy-MM-dd-HH-mm-ss-<random>` plus the compression's extension,
//! with `yyyy/MM/dd/HH/` (UTC) after the prefix when the prefix has no timestamp expression.
//! Prefix expressions: `!{timestamp:<Java date pattern>}`, `!{firehose:random-string}` and
//! `!{firehose:error-output-type}`.
//!
//! The "random" string is derived from the batch's identity (its source and the first and
//! last positions it holds), so a batch delivered again after a crash gets the same key and
//! overwrites its first delivery instead of duplicating it under another name.

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use md5::{Digest, Md5};

use crate::api::delivery::Compression;

/// Why a prefix cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// `!{` without its `}`.
    #[error("prefix {0:?}: an expression is not closed with `}}`")]
    Unclosed(String),
    /// An expression Firehose does not know.
    #[error(
        "prefix {prefix:?}: unknown expression `!{{{expression}}}` (timestamp:<pattern>, firehose:random-string or firehose:error-output-type)"
    )]
    Unknown {
        /// The prefix.
        prefix: String,
        /// The expression.
        expression: String,
    },
    /// `!{firehose:error-output-type}` outside the error output prefix.
    #[error("prefix {0:?}: !{{firehose:error-output-type}} is only for the error output prefix")]
    ErrorTypeOutsideErrors(String),
}

/// What a batch holds: where its records come from and the first and last of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchIdentity {
    /// A shard id of the source stream, or the direct-put journal.
    pub source: String,
    /// Position (sequence number or journal offset) of its first record.
    pub first: String,
    /// Position of its last record.
    pub last: String,
}

impl BatchIdentity {
    /// The MD5 of the batch's identity: what its object name and HTTP request id derive from.
    pub fn digest(&self) -> [u8; 16] {
        Md5::digest(format!("{}\n{}\n{}", self.source, self.first, self.last)).into()
    }
}

/// The batch's 11-character "random" string: the same for the same batch, every time.
pub fn batch_string(batch: &BatchIdentity) -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let digest = batch.digest();
    digest
        .iter()
        .take(11)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The extension of an object of `compression`.
pub fn extension(compression: Compression) -> &'static str {
    match compression {
        Compression::Uncompressed => "",
        Compression::Gzip => ".gz",
        Compression::Zip => ".zip",
        Compression::Snappy | Compression::HadoopSnappy => ".snappy",
        Compression::Zstd => ".zst",
    }
}

/// `at` in a Java `DateTimeFormatter` pattern (UTC): `yyyy`, `yy`, `MM`, `dd`, `HH`, `mm`,
/// `ss`, `SSS`, quoted literals; any other character stands for itself.
pub fn format_time(pattern: &str, at: Timestamp) -> String {
    let time = at.to_zoned(TimeZone::UTC);
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&q| q == '\'')
                .map_or(chars.len(), |p| i + 1 + p);
            out.extend(&chars[i + 1..end]);
            i = end + 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let field = match c {
            'y' if run == 2 => Some(format!("{:02}", time.year().rem_euclid(100))),
            'y' => Some(format!("{:04}", time.year())),
            'M' => Some(format!("{:02}", time.month())),
            'd' => Some(format!("{:02}", time.day())),
            'H' => Some(format!("{:02}", time.hour())),
            'm' => Some(format!("{:02}", time.minute())),
            's' => Some(format!("{:02}", time.second())),
            'S' => Some(format!("{:03}", time.millisecond())),
            _ => None,
        };
        match field {
            Some(text) => out.push_str(&text),
            None => out.extend(std::iter::repeat_n(c, run)),
        }
        i += run;
    }
    out
}

/// Expands `prefix`; returns the expansion and whether it held a timestamp expression.
fn expand(
    prefix: &str,
    at: Timestamp,
    batch: &str,
    error_type: Option<&str>,
) -> Result<(String, bool), NamingError> {
    let mut out = String::new();
    let mut has_time = false;
    let mut rest = prefix;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| NamingError::Unclosed(prefix.to_owned()))?;
        let expression = &after[..end];
        match expression.split_once(':') {
            Some(("timestamp", pattern)) if !pattern.is_empty() => {
                out.push_str(&format_time(pattern, at));
                has_time = true;
            }
            Some(("firehose", "random-string")) => out.push_str(batch),
            Some(("firehose", "error-output-type")) => match error_type {
                Some(kind) => out.push_str(kind),
                None => return Err(NamingError::ErrorTypeOutsideErrors(prefix.to_owned())),
            },
            _ => {
                return Err(NamingError::Unknown {
                    prefix: prefix.to_owned(),
                    expression: expression.to_owned(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, has_time))
}

/// Checks a prefix (the error output prefix when `errors`) before anything is delivered.
pub fn check_prefix(prefix: &str, errors: bool) -> Result<(), NamingError> {
    expand(
        prefix,
        Timestamp::UNIX_EPOCH,
        "",
        errors.then_some("processing-failed"),
    )
    .map(drop)
}

/// Where one object goes.
#[derive(Debug, Clone, Copy)]
pub struct ObjectName<'a> {
    /// The prefix (the error output prefix for failed records).
    pub prefix: &'a str,
    /// The DeliveryStream's name.
    pub stream: &'a str,
    /// Its version (the Firehose `DeliveryStreamVersion`; the resource's generation).
    pub version: i64,
    /// When the batch's first record arrived.
    pub at: Timestamp,
    /// What the batch holds.
    pub batch: &'a BatchIdentity,
    /// The compression of its content.
    pub compression: Compression,
    /// For the error output: why delivery failed, such as `processing-failed`.
    pub error_type: Option<&'a str>,
}

/// The object key of a batch.
pub fn object_key(name: &ObjectName<'_>) -> Result<String, NamingError> {
    let batch = batch_string(name.batch);
    let (mut key, has_time) = expand(name.prefix, name.at, &batch, name.error_type)?;
    if !has_time {
        key.push_str(&format_time("yyyy/MM/dd/HH/", name.at));
    }
    key.push_str(&format!(
        "{}-{}-{}-{batch}{}",
        name.stream,
        name.version,
        format_time("yyyy-MM-dd-HH-mm-ss", name.at),
        extension(name.compression)
    ));
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        "2026-11-30T06:49:12.345Z".parse().expect("time")
    }

    fn batch(first: &str) -> BatchIdentity {
        BatchIdentity {
            source: "shardId-000000000001".into(),
            first: first.into(),
            last: "49000000000000000000000000000000000000000000000000000099".into(),
        }
    }

    fn key(prefix: &str, compression: Compression, error_type: Option<&str>) -> String {
        let batch = batch("49000000000000000000000000000000000000000000000000000001");
        object_key(&ObjectName {
            prefix,
            stream: "clicks-to-s3",
            version: 3,
            at: at(),
            batch: &batch,
            compression,
            error_type,
        })
        .expect("a key")
    }

    #[test]
    fn delivery_object_keys_are_named_as_firehose_names_them() {
        let random = batch_string(&batch(
            "49000000000000000000000000000000000000000000000000000001",
        ));
        assert_eq!(random.len(), 11);
        assert_eq!(
            key("", Compression::Gzip, None),
            format!("2026/11/30/06/clicks-to-s3-3-2026-11-30-06-49-12-{random}.gz")
        );
        assert_eq!(
            key("logs/", Compression::Uncompressed, None),
            format!("logs/2026/11/30/06/clicks-to-s3-3-2026-11-30-06-49-12-{random}")
        );
        // A timestamp expression replaces the default time folders.
        assert_eq!(
            key(
                "year=!{timestamp:yyyy}/month=!{timestamp:MM}/!{firehose:random-string}/",
                Compression::Snappy,
                None
            ),
            format!(
                "year=2026/month=11/{random}/clicks-to-s3-3-2026-11-30-06-49-12-{random}.snappy"
            )
        );
        assert_eq!(
            key(
                "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/",
                Compression::Zip,
                Some("processing-failed")
            ),
            format!(
                "errors/processing-failed/2026/11/30/clicks-to-s3-3-2026-11-30-06-49-12-{random}.zip"
            )
        );
        assert_eq!(
            format_time("yy-MM-dd'T'HH:mm:ss.SSS", at()),
            "26-11-30T06:49:12.345"
        );
    }

    #[test]
    fn delivery_object_keys_are_the_same_for_the_same_batch_and_differ_otherwise() {
        let one = batch("49000000000000000000000000000000000000000000000000000001");
        let other = batch("49000000000000000000000000000000000000000000000000000002");
        assert_eq!(batch_string(&one), batch_string(&one.clone()));
        assert_ne!(batch_string(&one), batch_string(&other));
    }

    #[test]
    fn delivery_prefixes_with_unknown_or_misplaced_expressions_are_refused() {
        assert_eq!(
            check_prefix("logs/!{timestamp:yyyy", false),
            Err(NamingError::Unclosed("logs/!{timestamp:yyyy".into()))
        );
        assert!(matches!(
            check_prefix("!{partitionKeyFromQuery:customer}/", false),
            Err(NamingError::Unknown { .. })
        ));
        assert!(matches!(
            check_prefix("!{timestamp:}/", false),
            Err(NamingError::Unknown { .. })
        ));
        assert_eq!(
            check_prefix("!{firehose:error-output-type}/", false),
            Err(NamingError::ErrorTypeOutsideErrors(
                "!{firehose:error-output-type}/".into()
            ))
        );
        assert_eq!(
            check_prefix("errors/!{firehose:error-output-type}/", true),
            Ok(())
        );
        assert_eq!(check_prefix("plain/prefix/", false), Ok(()));
    }
}
