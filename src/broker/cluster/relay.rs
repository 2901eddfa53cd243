//! Relaying a request whole to the pod that serves it, over the internal port, and streaming
//! its answer back (event streams included) as it comes.

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;

use super::{CALLER_HEADER, Cluster, caller_header};
use crate::broker::ops::Caller;
use crate::broker::protocol::{ApiError, ErrorKind, Operation};
use crate::broker::server::ResponseBody;
use crate::broker::upstream::{Upstream, held_by_design};

/// What a relayed request carries: the client's own body and content type, so the serving
/// pod answers in the client's protocol (JSON or CBOR) and the answer passes through as is.
#[derive(Clone)]
pub struct Relayed<'a> {
    /// The operation.
    pub operation: Operation,
    /// The request's content type.
    pub content_type: &'a str,
    /// The body as the client sent it.
    pub body: Bytes,
    /// Who sent it, as its signature showed.
    pub caller: &'a Caller,
}

/// Sends `request` to pod `ordinal` and returns its answer, or a retryable
/// `ServiceUnavailable` when the pod cannot be reached.
pub async fn relay(
    cluster: &Cluster,
    ordinal: u32,
    request: Relayed<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let target = format!("Kinesis_20131202.{}", request.operation.name());
    let held = held_by_design(Some(request.operation));
    let request = Request {
        target: &target,
        content_type: request.content_type,
        body: request.body,
        caller: request.caller,
    };
    send_held(cluster, ordinal, request, held).await
}

/// Any request to relay: its target, content type, body and caller.
pub struct Request<'a> {
    /// Its `X-Amz-Target`.
    pub target: &'a str,
    /// Its content type.
    pub content_type: &'a str,
    /// Its body.
    pub body: Bytes,
    /// Who sent it.
    pub caller: &'a Caller,
}

/// Sends `request` to pod `ordinal`'s internal port and returns its answer, or a retryable
/// `ServiceUnavailable` when the pod cannot be reached or does not start its answer within
/// the answer limit (plus what the operation waits by design, as a long poll does). An
/// answer that streams (a subscription) is not limited once it has started. For a call that
/// the serving pod answers once its work is done (none waits by design).
pub async fn send(
    cluster: &Cluster,
    ordinal: u32,
    request: Request<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    send_held(cluster, ordinal, request, Duration::ZERO).await
}

/// The same, for a call the serving pod holds up to `held` by design before answering.
async fn send_held(
    cluster: &Cluster,
    ordinal: u32,
    request: Request<'_>,
    held: Duration,
) -> Result<Response<ResponseBody>, ApiError> {
    let builder = http::Request::post("/")
        .header(http::header::CONTENT_TYPE, request.content_type)
        .header("x-amz-target", request.target)
        .header(CALLER_HEADER, caller_header(request.caller));
    let limit = cluster.answer_limit + held;
    match cluster
        .send(ordinal, builder, "/", request.body, Some(limit))
        .await
    {
        Ok(answer) => Ok(answer.map(|body| Upstream(body).boxed())),
        Err(error) => {
            tracing::warn!(%error, "relay failed");
            Err(ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!("The pod serving this request is unavailable ({error}); retry."),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::broker::cluster::shard_read::{self, ShardQuery};
    use crate::broker::cluster::{ClusterError, Peers, part_lane, replica};
    use crate::broker::ops::put::PutRecord;

    /// Relays a GetShardIterator to pod `ordinal`.
    async fn relay_to(cluster: &Cluster, ordinal: u32) -> Result<(), ApiError> {
        let request = Relayed {
            operation: Operation::GetShardIterator,
            content_type: "application/x-amz-json-1.1",
            body: Bytes::from_static(b"{}"),
            caller: &Caller::Anonymous,
        };
        relay(cluster, ordinal, request).await.map(|_| ())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_a_pod_that_never_answers_fails_calls_to_it_with_retryable_errors() {
        let silent = crate::broker::upstream::silent_broker().await;
        // Pod 0 is the silent one: the catalog comes from it too.
        let peers = Peers::Listed(vec![
            format!("http://{silent}").parse().expect("url"),
            "http://127.0.0.1:9".parse().expect("url"),
        ]);
        let tls = crate::http1::client_tls_from_file(None).expect("tls");
        let mut cluster = Cluster::new(1, peers, tls);
        cluster.answer_limit = Duration::from_millis(200);
        let cluster = Arc::new(cluster);
        // After each call the pod's silence is forgotten, so that every kind of call shows
        // its own limit instead of failing at once.
        let forget = || cluster.silences.answered(0);
        // Every call below would wait forever without the answer limit; the test's own
        // limit turns that into a failure rather than a hang.
        let calls = async {
            let relayed = relay_to(&cluster, 0)
                .await
                .expect_err("a silent pod does not answer");
            assert_eq!(relayed.kind, ErrorKind::ServiceUnavailable);
            assert!(
                relayed.message.contains("no answer within 200 ms"),
                "{relayed:?}"
            );
            // Silent now: the next call fails at once, unsent (not counted below).
            let at_once = relay_to(&cluster, 0).await.expect_err("silent");
            assert_eq!(at_once.kind, ErrorKind::ServiceUnavailable);
            assert!(at_once.message.contains("fail at once"), "{at_once:?}");
            forget();

            // A PutRecords part fails whole (its records become retryable failures), and the
            // pod's lane is free again for the next part, which fails the same way.
            let records = [PutRecord {
                key: "k",
                data: b"data",
                hash: 1,
            }];
            for _ in 0..2 {
                let part = part_lane::send(&cluster, 0, (7, "orders"), &records, "anonymous").await;
                let why = part.expect_err("the part is not answered");
                assert!(why.contains("no answer within 200 ms"), "{why}");
                assert_eq!(cluster.lanes.waiting(0), 0);
                forget();
            }

            let fetched = replica::fetch(&cluster, None).await;
            assert!(
                matches!(fetched, Err(ClusterError::Unreachable { ordinal: 0, .. })),
                "{fetched:?}"
            );
            forget();
            let read = ShardQuery::Read {
                stream_key: 7,
                shard: 0,
                offset: 0,
                limit: 10,
                max_bytes: 1024,
                not_before_ms: 0,
            };
            let asked = shard_read::ask(&cluster, 0, &read)
                .await
                .expect_err("a silent pod does not answer");
            assert_eq!(asked.kind, ErrorKind::ServiceUnavailable);
        };
        tokio::time::timeout(Duration::from_secs(60), calls)
            .await
            .expect("every call to the silent pod ended");
        // A pod that refuses connections is counted too.
        let refused = relay_to(&cluster, 1)
            .await
            .expect_err("nothing listens there");
        assert_eq!(refused.kind, ErrorKind::ServiceUnavailable);
        // /metrics shows, by pod, the calls that got no answer: five to the silent pod
        // (the relay, two parts, the catalog, the shard read), one to the refusing one.
        let mut unanswered: Vec<(String, f64)> = cluster
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .filter(|family| family.name() == "brook_cluster_unanswered_calls_total")
            .flat_map(|family| family.get_metric().to_vec())
            .map(|m| {
                (
                    m.get_label()[0].value().to_owned(),
                    m.get_counter().get_value(),
                )
            })
            .collect();
        unanswered.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            unanswered,
            vec![("0".to_owned(), 5.0), ("1".to_owned(), 1.0)]
        );
    }

    #[test]
    fn cluster_a_call_that_waits_by_design_is_given_its_wait_on_top_of_the_limit() {
        use crate::broker::upstream::held_by_design;
        assert_eq!(
            held_by_design(Some(Operation::ReceiveQueueRecords)),
            Duration::from_secs(20)
        );
        assert_eq!(
            held_by_design(Some(Operation::ReceiveDeadLetterQueueRecords)),
            Duration::from_secs(20)
        );
        assert_eq!(held_by_design(Some(Operation::PutRecords)), Duration::ZERO);
        assert_eq!(held_by_design(None), Duration::ZERO);
        let wait = ShardQuery::Wait {
            stream_key: 7,
            shards: vec![(0, 3)],
            wait_ms: 5_000,
        };
        assert_eq!(wait.held_for(), Duration::from_millis(5_000));
    }
}
