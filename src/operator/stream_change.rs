//! The changes that bring a serving stream closer to its spec, one at a time, as a pure
//! decision over what the brokers report.

use super::kinesis::StreamSummary;
use super::status::next_shard_step;
use crate::api::stream::{StreamMode, StreamSpec};

/// One change that brings a serving stream closer to its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamChange {
    /// UpdateStreamMode from `from` (as the brokers name it) to `to`.
    Mode {
        /// The mode now.
        from: &'static str,
        /// The mode declared.
        to: StreamMode,
    },
    /// UpdateShardCount to `to` open shards on the way to `declared`.
    Reshard {
        /// Open shards now.
        from: i32,
        /// Open shards after this step.
        to: i32,
        /// Open shards declared.
        declared: i32,
    },
    /// Retention from `from` to `to` hours.
    Retention {
        /// Hours now.
        from: i32,
        /// Hours declared.
        to: i32,
    },
    /// Largest record from `from` to `to` KiB.
    MaxRecordSize {
        /// KiB now.
        from: i32,
        /// KiB declared.
        to: i32,
    },
}

impl StreamChange {
    /// The Event's reason, action and note.
    pub(super) fn event(self) -> (&'static str, &'static str, String) {
        match self {
            Self::Mode { from, to } => (
                "StreamModeChanged",
                "UpdateStreamMode",
                format!("capacity mode changed from {from} to {}", to.as_api()),
            ),
            Self::Reshard { from, to, declared } => (
                "Resharding",
                "UpdateShardCount",
                // Kubernetes folds repeats of an Event into a series that keeps the first note,
                // so the note names the declared count rather than this step's.
                format!(
                    "resharding from {from} toward {declared} open shards (at most double or half per step; next {to})"
                ),
            ),
            Self::Retention { from, to } => (
                "RetentionChanged",
                "ChangeRetention",
                format!("retention changed from {from} to {to} hours"),
            ),
            Self::MaxRecordSize { from, to } => (
                "MaxRecordSizeChanged",
                "UpdateMaxRecordSize",
                format!("largest record changed from {from} to {to} KiB"),
            ),
        }
    }

    /// The Progressing reason while the change is under way.
    pub(super) fn progress_reason(self) -> &'static str {
        match self {
            Self::Mode { .. } => "ChangingStreamMode",
            Self::Reshard { .. } => "Resharding",
            Self::Retention { .. } => "ChangingRetention",
            Self::MaxRecordSize { .. } => "ChangingMaxRecordSize",
        }
    }
}

/// The next change a serving stream needs — its capacity mode, then shards (a PROVISIONED
/// stream's: an ON_DEMAND stream's brokers scale it), retention, record size — or `None`
/// when it is as declared.
pub fn next_change(summary: &StreamSummary, spec: &StreamSpec) -> Option<StreamChange> {
    if summary.mode != spec.stream_mode.as_api() {
        return Some(StreamChange::Mode {
            from: if summary.mode == StreamMode::OnDemand.as_api() {
                StreamMode::OnDemand.as_api()
            } else {
                StreamMode::Provisioned.as_api()
            },
            to: spec.stream_mode,
        });
    }
    if spec.stream_mode == StreamMode::Provisioned && summary.open_shards != spec.shards {
        return Some(StreamChange::Reshard {
            from: summary.open_shards,
            to: next_shard_step(summary.open_shards, spec.shards),
            declared: spec.shards,
        });
    }
    if summary.retention_hours != spec.retention_hours {
        return Some(StreamChange::Retention {
            from: summary.retention_hours,
            to: spec.retention_hours,
        });
    }
    (summary.max_record_size_kib != spec.max_record_size_kib).then_some(
        StreamChange::MaxRecordSize {
            from: summary.max_record_size_kib,
            to: spec.max_record_size_kib,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(shards: i32, hours: i32, kib: i32) -> StreamSummary {
        StreamSummary {
            status: "ACTIVE".to_owned(),
            arn: "arn".to_owned(),
            open_shards: shards,
            retention_hours: hours,
            max_record_size_kib: kib,
            mode: "PROVISIONED".to_owned(),
        }
    }

    fn spec(shards: i32, hours: i32, kib: i32) -> StreamSpec {
        let mut spec: StreamSpec = serde_json::from_value(serde_json::json!({})).expect("defaults");
        spec.shards = shards;
        spec.retention_hours = hours;
        spec.max_record_size_kib = kib;
        spec
    }

    #[test]
    fn shards_change_first_then_retention_then_record_size() {
        assert_eq!(
            next_change(&summary(1, 24, 1024), &spec(5, 48, 2048)),
            Some(StreamChange::Reshard {
                from: 1,
                to: 2,
                declared: 5
            })
        );
        assert_eq!(
            next_change(&summary(5, 24, 1024), &spec(5, 48, 2048)),
            Some(StreamChange::Retention { from: 24, to: 48 })
        );
        assert_eq!(
            next_change(&summary(5, 48, 1024), &spec(5, 48, 2048)),
            Some(StreamChange::MaxRecordSize {
                from: 1024,
                to: 2048
            })
        );
        assert_eq!(next_change(&summary(5, 48, 2048), &spec(5, 48, 2048)), None);
    }

    #[test]
    fn the_mode_changes_first_and_an_on_demand_streams_shards_are_the_brokers() {
        let mut on_demand = spec(2, 48, 1024);
        on_demand.stream_mode = StreamMode::OnDemand;
        assert_eq!(
            next_change(&summary(5, 24, 1024), &on_demand),
            Some(StreamChange::Mode {
                from: "PROVISIONED",
                to: StreamMode::OnDemand
            })
        );
        let serving = StreamSummary {
            mode: "ON_DEMAND".to_owned(),
            ..summary(5, 24, 1024)
        };
        assert_eq!(
            next_change(&serving, &on_demand),
            Some(StreamChange::Retention { from: 24, to: 48 }),
            "5 open shards where 2 are declared: the brokers' count stands"
        );
        let settled = StreamSummary {
            retention_hours: 48,
            ..serving.clone()
        };
        assert_eq!(next_change(&settled, &on_demand), None);
        assert_eq!(
            next_change(&settled, &spec(2, 48, 1024)),
            Some(StreamChange::Mode {
                from: "ON_DEMAND",
                to: StreamMode::Provisioned
            }),
            "back to PROVISIONED, then to the declared count"
        );
        let provisioned = StreamSummary {
            mode: "PROVISIONED".to_owned(),
            ..settled
        };
        assert_eq!(
            next_change(&provisioned, &spec(2, 48, 1024)),
            Some(StreamChange::Reshard {
                from: 5,
                to: 3,
                declared: 2
            })
        );
    }
}
