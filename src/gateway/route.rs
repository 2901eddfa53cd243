//! Which stream a Kinesis request names, decided from its operation and body alone (pure).

use serde_json::Value;

use crate::broker::iterator::IteratorCodec;
use crate::broker::ops::consumers::parse_consumer_arn;
use crate::broker::ops::queues::parse_queue_arn;
use crate::broker::routing::stream_name_from_arn;

/// Where the gateway sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// To the brokers of this stream.
    Stream(String),
    /// To every stream's brokers, answers merged (ListStreams).
    Every,
    /// To any one stream's brokers (account-wide calls: DescribeLimits, account settings).
    Any,
    /// The request names no stream: the answer says which member is missing.
    Unnamed,
}

fn stream_of_arn(arn: &str) -> Option<String> {
    if let Some((stream, _)) = parse_queue_arn(arn) {
        return Some(stream.to_owned());
    }
    if let Some((stream_arn, _, _)) = parse_consumer_arn(arn) {
        return stream_name_from_arn(stream_arn).map(str::to_owned);
    }
    stream_name_from_arn(arn).map(str::to_owned)
}

/// The target of `operation` (its name, as in `Kinesis_20131202.<name>`) with JSON `body`.
pub fn target(operation: &str, body: &Value) -> Target {
    match operation {
        "ListStreams" => return Target::Every,
        "DescribeLimits" | "DescribeAccountSettings" | "UpdateAccountSettings" => {
            return Target::Any;
        }
        _ => {}
    }
    let text = |member: &str| body.get(member).and_then(Value::as_str);
    // CreateQueue and ListQueues name their stream inside a list.
    let listed = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
    let named = text("StreamName")
        .map(str::to_owned)
        .or_else(|| text("StreamARN").and_then(stream_of_arn))
        .or_else(|| text("ConsumerARN").and_then(stream_of_arn))
        .or_else(|| text("ResourceARN").and_then(stream_of_arn))
        .or_else(|| text("QueueARN").and_then(stream_of_arn))
        .or_else(|| listed("/StreamConfigurationList/0/StreamARN").and_then(stream_of_arn))
        .or_else(|| listed("/StreamFilter/0/StreamARN").and_then(stream_of_arn))
        .or_else(|| {
            text("ShardIterator")
                .and_then(IteratorCodec::peek)
                .map(|(name, _)| name)
        });
    named.map_or(Target::Unnamed, Target::Stream)
}

/// The names the merged answer of a ListStreams keeps, and whether more exist: every
/// stream's names, sorted, cut at `limit`.
pub fn merge_names(
    mut names: Vec<String>,
    limit: usize,
    any_has_more: bool,
) -> (Vec<String>, bool) {
    names.sort();
    names.dedup();
    let has_more = any_has_more || names.len() > limit;
    names.truncate(limit);
    (names, has_more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gateway_requests_are_routed_by_the_stream_they_name() {
        let cases = [
            (
                "ReceiveQueueRecords",
                json!({"QueueARN": "arn:aws:kinesis:us-east-1:000000000000:queue/clicks/0a1b2c"}),
                Target::Stream("clicks".into()),
            ),
            (
                "CreateQueue",
                json!({"QueueName": "q", "StreamConfigurationList": [{"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/clicks"}]}),
                Target::Stream("clicks".into()),
            ),
            (
                "ListQueues",
                json!({"StreamFilter": [{"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/clicks"}]}),
                Target::Stream("clicks".into()),
            ),
            (
                "PutRecords",
                json!({"StreamName": "orders"}),
                Target::Stream("orders".into()),
            ),
            (
                "DescribeStreamSummary",
                json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/clicks"}),
                Target::Stream("clicks".into()),
            ),
            (
                "SubscribeToShard",
                json!({"ConsumerARN": "arn:aws:kinesis:us-east-1:000000000000:stream/clicks/consumer/app:1700000000"}),
                Target::Stream("clicks".into()),
            ),
            (
                "TagResource",
                json!({"ResourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/orders"}),
                Target::Stream("orders".into()),
            ),
            ("ListStreams", json!({}), Target::Every),
            ("DescribeLimits", json!({}), Target::Any),
            (
                "GetRecords",
                json!({"ShardIterator": "not an iterator"}),
                Target::Unnamed,
            ),
            ("DescribeStream", json!({}), Target::Unnamed),
        ];
        for (operation, body, expected) in cases {
            assert_eq!(target(operation, &body), expected, "{operation} {body}");
        }
    }

    #[test]
    fn gateway_list_streams_merges_sorted_names_and_cuts_at_the_limit() {
        let names = vec!["b".to_owned(), "a".to_owned(), "c".to_owned()];
        assert_eq!(
            merge_names(names.clone(), 10, false),
            (vec!["a".into(), "b".into(), "c".into()], false)
        );
        assert_eq!(
            merge_names(names.clone(), 2, false),
            (vec!["a".into(), "b".into()], true)
        );
        assert!(merge_names(names, 10, true).1);
    }
}
