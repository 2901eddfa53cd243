//! Object keys of a Kinesis channel's deliveries — pure. A channel names its objects with an
//! output key template of `!{variable}` expressions; Kinesis appends a unique suffix to every
//! key, so two objects never share one even when the template has no fine time component.
//!
//! Here the suffix is `-` and the batch's 11-character string (derived from the batch's
//! source shard and first and last sequence numbers, as for delivery streams), placed before
//! the extension when the template ends with `!{extension}` and at the end otherwise: a batch
//! delivered again after a crash gets the same key and overwrites its first delivery.

use k8s_openapi::jiff::Timestamp;

use super::naming::{BatchIdentity, batch_string, extension, format_time};
use crate::api::delivery::Compression;

/// The template of a channel created without one.
pub const DEFAULT_TEMPLATE: &str = "kinesis-channel/!{channel-name}/!{channel-id}/!{yyyy}/!{MM}/!{dd}/!{HH}/!{channel-name}-!{channel-id}-!{yyyy}-!{MM}-!{dd}-!{HH}-!{mm}!{extension}";

/// The variables a template may use.
pub const VARIABLES: [&str; 10] = [
    "channel-name",
    "channel-id",
    "stream-name",
    "yyyy",
    "YY",
    "MM",
    "dd",
    "HH",
    "mm",
    "extension",
];

/// Why an output key template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `!{` without its `}`.
    #[error("OutputKeyTemplate {0:?}: a `!{{` is not closed with `}}`")]
    Unclosed(String),
    /// A variable the channel does not know.
    #[error("OutputKeyTemplate {template:?}: unknown variable `!{{{variable}}}`; the variables are {known}", known = VARIABLES.map(|v| format!("!{{{v}}}")).join(", "))]
    Unknown {
        /// The template.
        template: String,
        /// The variable.
        variable: String,
    },
    /// A key that climbs out of its folder, starts at the root or ends as a folder.
    #[error(
        "OutputKeyTemplate {0:?} must not contain `..` or `./`, start with `/` or end with `/`"
    )]
    Path(String),
    /// Literals only.
    #[error("OutputKeyTemplate {0:?} has no variable: every template uses at least one")]
    NoVariable(String),
}

/// One piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("!{") {
        if start > 0 {
            out.push(Piece::Literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Unclosed(template.to_owned()))?;
        let variable = &after[..end];
        if !VARIABLES.contains(&variable) {
            return Err(TemplateError::Unknown {
                template: template.to_owned(),
                variable: variable.to_owned(),
            });
        }
        out.push(Piece::Variable(variable));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    Ok(out)
}

/// Checks a template before a channel is created with it.
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    let parsed = pieces(template)?;
    if template.contains("..")
        || template.contains("./")
        || template.starts_with('/')
        || template.ends_with('/')
    {
        return Err(TemplateError::Path(template.to_owned()));
    }
    if !parsed.iter().any(|p| matches!(p, Piece::Variable(_))) {
        return Err(TemplateError::NoVariable(template.to_owned()));
    }
    Ok(())
}

/// What a channel's keys are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// The output key template (checked).
    pub template: String,
    /// The channel's name.
    pub channel_name: String,
    /// Its id.
    pub channel_id: String,
    /// The source stream's name.
    pub stream_name: String,
}

impl ChannelKeys {
    /// The key of the object holding `batch`, whose first record arrived `at`.
    pub fn object_key(
        &self,
        at: Timestamp,
        batch: &BatchIdentity,
        compression: Compression,
    ) -> Result<String, TemplateError> {
        let parsed = pieces(&self.template)?;
        let suffix = format!("-{}", batch_string(batch));
        let ends_with_extension = parsed.last() == Some(&Piece::Variable("extension"));
        let mut key = String::with_capacity(self.template.len() + 64);
        for (index, piece) in parsed.iter().enumerate() {
            if ends_with_extension && index == parsed.len() - 1 {
                key.push_str(&suffix);
            }
            match piece {
                Piece::Literal(text) => key.push_str(text),
                Piece::Variable(name) => key.push_str(&match *name {
                    "channel-name" => self.channel_name.clone(),
                    "channel-id" => self.channel_id.clone(),
                    "stream-name" => self.stream_name.clone(),
                    "extension" => extension(compression).to_owned(),
                    "YY" => format_time("yy", at),
                    pattern => format_time(pattern, at),
                }),
            }
        }
        if !ends_with_extension {
            key.push_str(&suffix);
        }
        Ok(key)
    }
}

/// What a channel's worker does besides what a delivery stream's does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOutput {
    /// How objects are named.
    pub keys: ChannelKeys,
    /// The S3 storage class of delivered objects.
    pub storage_class: Option<String>,
    /// The account that must own the destination bucket.
    pub expected_owner: Option<String>,
    /// The dead-letter bucket, when it is not the destination bucket.
    pub dead_letter_bucket: Option<DeadLetterBucket>,
    /// For a channel to an Iceberg table: the table (the worker's S3 destination is then
    /// the dead-letter bucket) and how to reach its catalog.
    pub table: Option<ChannelTable>,
}

/// A channel's Iceberg table and the endpoints its worker reaches it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTable {
    /// The table.
    pub target: super::table::TableTarget,
    /// The S3 Tables API; AWS's when absent (filled in by the worker's runner).
    pub tables_endpoint: Option<String>,
    /// The Glue Schema Registry; AWS's when absent (filled in by the worker's runner).
    pub glue_endpoint: Option<String>,
    /// Abort right after a commit, before the delivery's progress is saved (tests).
    pub crash_after_commit: bool,
}

/// A channel's dead-letter bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterBucket {
    /// Its name.
    pub name: String,
    /// The account that must own it.
    pub expected_owner: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(template: &str) -> ChannelKeys {
        ChannelKeys {
            template: template.to_owned(),
            channel_name: "clicks-to-lake".to_owned(),
            channel_id: "0a1b2c".to_owned(),
            stream_name: "clicks".to_owned(),
        }
    }

    fn batch() -> BatchIdentity {
        BatchIdentity {
            source: "shardId-000000000000".into(),
            first: "1".into(),
            last: "9".into(),
        }
    }

    fn at() -> Timestamp {
        "2026-11-30T06:49:12.345Z".parse().expect("time")
    }

    #[test]
    fn channel_default_keys_are_by_channel_and_hour_with_the_suffix_before_the_extension() {
        let suffix = batch_string(&batch());
        let key = keys(DEFAULT_TEMPLATE)
            .object_key(at(), &batch(), Compression::Gzip)
            .expect("key");
        assert_eq!(
            key,
            format!(
                "kinesis-channel/clicks-to-lake/0a1b2c/2026/11/30/06/clicks-to-lake-0a1b2c-2026-11-30-06-49-{suffix}.gz"
            )
        );
        let plain = keys(DEFAULT_TEMPLATE)
            .object_key(at(), &batch(), Compression::Uncompressed)
            .expect("key");
        assert!(plain.ends_with(&format!("-49-{suffix}")), "{plain}");
    }

    #[test]
    fn channel_keys_end_with_the_suffix_when_the_template_has_no_extension() {
        let key = keys("logs/!{stream-name}/YY=!{YY}/!{channel-id}")
            .object_key(at(), &batch(), Compression::Zstd)
            .expect("key");
        assert_eq!(
            key,
            format!("logs/clicks/YY=26/0a1b2c-{}", batch_string(&batch()))
        );
    }

    #[test]
    fn channel_templates_are_checked() {
        assert_eq!(check_template(DEFAULT_TEMPLATE), Ok(()));
        assert_eq!(check_template("a/!{yyyy}/b"), Ok(()));
        assert!(matches!(
            check_template("a/!{yyyy"),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            check_template("a/!{timestamp:yyyy}"),
            Err(TemplateError::Unknown { variable, .. }) if variable == "timestamp:yyyy"
        ));
        for bad in ["../!{yyyy}", "/!{yyyy}", "!{yyyy}/", "a/./!{yyyy}"] {
            assert!(
                matches!(check_template(bad), Err(TemplateError::Path(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_template("plain/name"),
            Err(TemplateError::NoVariable(_))
        ));
    }
}
