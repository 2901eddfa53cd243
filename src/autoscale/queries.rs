//! The PromQL the autoscaler reads a stream's demand with, and the Prometheus HTTP API's
//! answers read into [`Observation`]s and [`ShardLoad`]s: pure, so the defaults and the parsing
//! are tested without a server.
//!
//! The defaults select the brokers' series the way the operator's ServiceMonitor labels them
//! (`job="brook-broker"`, the pod's `namespace`) and a plain scrape config that keeps those
//! labels does too; a Stream can override each query for a Prometheus with other relabelling.
//! Placeholders: `$namespace`, `$stream` (the Kinesis stream's name), `$window` (such as `60s`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::Observation;

/// The six queries, as templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryTemplates {
    /// Bytes per second written to the stream.
    pub incoming_bytes: String,
    /// Records per second written to the stream.
    pub incoming_records: String,
    /// Writes per second the stream's quotas refused.
    pub throttled: String,
    /// Bytes per second written, by `shard`.
    pub shard_incoming_bytes: String,
    /// Records per second written, by `shard`.
    pub shard_incoming_records: String,
    /// Writes per second refused, by `shard`.
    pub shard_throttled: String,
}

const SELECTOR: &str = r#"job="brook-broker", namespace="$namespace", stream="$stream""#;

impl Default for QueryTemplates {
    fn default() -> Self {
        let stream = |metric: &str, extra: &str| {
            format!("sum(rate({metric}{{{SELECTOR}{extra}}}[$window]))")
        };
        let shard = |metric: &str, extra: &str| {
            format!("sum by (shard) (rate({metric}{{{SELECTOR}{extra}}}[$window]))")
        };
        Self {
            incoming_bytes: stream("brook_incoming_bytes_total", ""),
            incoming_records: stream("brook_incoming_records_total", ""),
            throttled: stream("brook_throttled_requests_total", r#", direction="write""#),
            shard_incoming_bytes: shard("brook_incoming_bytes_total", ""),
            shard_incoming_records: shard("brook_incoming_records_total", ""),
            shard_throttled: shard("brook_throttled_requests_total", r#", direction="write""#),
        }
    }
}

/// Why an answer of the Prometheus HTTP API could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// Prometheus answered with an error (a bad query, a timeout on its side).
    #[error("Prometheus refused the query ({kind}): {message}")]
    Refused {
        /// Its `errorType`.
        kind: String,
        /// Its `error`.
        message: String,
    },
    /// Not the shape the API documents.
    #[error("unexpected answer from Prometheus: {0}")]
    Shape(String),
}

/// A query with its placeholders filled in.
pub fn render(template: &str, namespace: &str, stream: &str, window_seconds: u32) -> String {
    template
        .replace("$namespace", &escape(namespace))
        .replace("$stream", &escape(stream))
        .replace("$window", &format!("{window_seconds}s"))
}

/// A label value as a PromQL string's content.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

fn data(answer: &Value) -> Result<&Value, AnswerError> {
    match answer["status"].as_str() {
        Some("success") => Ok(&answer["data"]),
        Some("error") => Err(AnswerError::Refused {
            kind: answer["errorType"].as_str().unwrap_or("unknown").to_owned(),
            message: answer["error"].as_str().unwrap_or_default().to_owned(),
        }),
        _ => Err(AnswerError::Shape(format!("no status in {answer}"))),
    }
}

fn sample(pair: &Value) -> Result<(u64, f64), AnswerError> {
    let bad = || AnswerError::Shape(format!("not a [time, \"value\"] sample: {pair}"));
    let seconds = pair[0].as_f64().ok_or_else(bad)?;
    let value: f64 = pair[1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)?;
    // NaN comes from a rate over nothing: no demand measured.
    let value = if value.is_finite() { value } else { 0.0 };
    Ok(((seconds * 1000.0).round() as u64, value))
}

/// One series of an answer: its labels and samples (time in epoch milliseconds, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its samples, oldest first.
    pub samples: Vec<(u64, f64)>,
}

/// Reads an instant (`vector`) or range (`matrix`) answer.
pub fn parse(answer: &Value) -> Result<Vec<Series>, AnswerError> {
    let data = data(answer)?;
    let results = data["result"]
        .as_array()
        .ok_or_else(|| AnswerError::Shape(format!("no result list in {data}")))?;
    results
        .iter()
        .map(|result| {
            let labels = result["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let samples = match (result.get("value"), result.get("values")) {
                (Some(value), _) => vec![sample(value)?],
                (None, Some(Value::Array(values))) => {
                    values.iter().map(sample).collect::<Result<_, _>>()?
                }
                _ => {
                    return Err(AnswerError::Shape(format!(
                        "a series without samples: {result}"
                    )));
                }
            };
            Ok(Series { labels, samples })
        })
        .collect()
}

/// The one value of a `sum(...)` answer; None when no series matched (nothing scraped).
pub fn scalar(series: &[Series]) -> Option<(u64, f64)> {
    series.first().and_then(|s| s.samples.last().copied())
}

/// The value of each series by its `shard` label.
pub fn by_shard(series: &[Series]) -> BTreeMap<String, f64> {
    series
        .iter()
        .filter_map(|s| {
            Some((
                s.labels.get("shard")?.clone(),
                s.samples.last().map_or(0.0, |v| v.1),
            ))
        })
        .collect()
}

/// The stream's demand from the three stream-wide answers (range answers give a history, an
/// instant answer one sample); samples are joined on their time. None when bytes or records
/// matched no series: the stream is not scraped.
pub fn observations(
    bytes: &[Series],
    records: &[Series],
    throttled: &[Series],
) -> Option<Vec<Observation>> {
    let points = |series: &[Series]| -> BTreeMap<u64, f64> {
        series.iter().flat_map(|s| s.samples.iter().copied()).fold(
            BTreeMap::new(),
            |mut sum, (at, v)| {
                *sum.entry(at).or_insert(0.0) += v;
                sum
            },
        )
    };
    let (bytes, records, throttled) = (points(bytes), points(records), points(throttled));
    if bytes.is_empty() || records.is_empty() {
        return None;
    }
    Some(
        records
            .iter()
            .map(|(at, records_per_second)| Observation {
                at_ms: *at,
                bytes_per_second: bytes.get(at).copied().unwrap_or(0.0),
                records_per_second: *records_per_second,
                throttled_per_second: throttled.get(at).copied().unwrap_or(0.0),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn autoscaling_default_queries_select_the_brokers_as_the_service_monitor_labels_them() {
        let queries = QueryTemplates::default();
        assert_eq!(
            render(&queries.incoming_bytes, "shop", "clicks", 60),
            r#"sum(rate(brook_incoming_bytes_total{job="brook-broker", namespace="shop", stream="clicks"}[60s]))"#
        );
        assert_eq!(
            render(&queries.shard_throttled, "shop", "clicks", 30),
            r#"sum by (shard) (rate(brook_throttled_requests_total{job="brook-broker", namespace="shop", stream="clicks", direction="write"}[30s]))"#
        );
        assert_eq!(
            render("x{stream=\"$stream\"}", "n", "a\"b", 60),
            r#"x{stream="a\"b"}"#,
            "a quote in a name cannot end the string"
        );
    }

    #[test]
    fn autoscaling_reads_instant_and_range_answers_and_prometheus_errors() {
        let instant = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1700000000.5, "2048.25"]}]}});
        let series = parse(&instant).expect("vector");
        assert_eq!(scalar(&series), Some((1_700_000_000_500, 2048.25)));
        let range = json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"shard": "shardId-000000000001"}, "values": [[10, "1"], [40, "NaN"]]},
            {"metric": {"shard": "shardId-000000000000"}, "values": [[10, "3"], [40, "5"]]}]}});
        let series = parse(&range).expect("matrix");
        assert_eq!(series[0].samples, vec![(10_000, 1.0), (40_000, 0.0)]);
        assert_eq!(
            by_shard(&series),
            BTreeMap::from([
                ("shardId-000000000000".to_owned(), 5.0),
                ("shardId-000000000001".to_owned(), 0.0)
            ])
        );
        let refused =
            json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"});
        assert_eq!(
            parse(&refused),
            Err(AnswerError::Refused {
                kind: "bad_data".into(),
                message: "parse error at char 4".into()
            })
        );
        assert!(matches!(
            parse(&json!({"data": {}})),
            Err(AnswerError::Shape(_))
        ));
    }

    #[test]
    fn autoscaling_joins_the_three_answers_into_observations_and_knows_an_unscraped_stream() {
        let at = |v: &[(u64, &str)]| {
            let values: Vec<Value> = v.iter().map(|(t, x)| json!([t, x])).collect();
            parse(
                &json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {}, "values": values}]}}),
            )
            .expect("matrix")
        };
        let history = observations(
            &at(&[(30, "100"), (60, "200")]),
            &at(&[(30, "1"), (60, "2")]),
            &at(&[(60, "0.5")]),
        )
        .expect("observations");
        assert_eq!(
            history,
            vec![
                Observation {
                    at_ms: 30_000,
                    bytes_per_second: 100.0,
                    records_per_second: 1.0,
                    throttled_per_second: 0.0
                },
                Observation {
                    at_ms: 60_000,
                    bytes_per_second: 200.0,
                    records_per_second: 2.0,
                    throttled_per_second: 0.5
                },
            ]
        );
        let nothing =
            parse(&json!({"status": "success", "data": {"resultType": "vector", "result": []}}))
                .expect("empty");
        assert_eq!(observations(&nothing, &nothing, &nothing), None);
    }
}
