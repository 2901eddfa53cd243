//! Parts go to a pod one exchange at a time: a part for a pod that an exchange is already
//! under way with waits, with every other part that comes meanwhile, and they go together
//! in the next exchange — one request, one append and one sync at the owner for all of
//! them, where each would otherwise cost its own round trip, process wake-ups, append and
//! sync. A part for an idle pod goes at once, as it would alone. Parts join only with parts
//! of the same stream and caller (the owner authorizes an exchange as one caller); the
//! records of each part keep their order and each part gets back its own records' results.
//!
//! The turn is held by a guard: however an exchange ends (answered, failed, or its request
//! dropped), the parts waiting for the pod are handed to a task that sends them, or the
//! lane is freed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::IntCounterVec;
use tokio::sync::oneshot;

use super::Cluster;
use super::put_part::{self, EncodedPart};
use super::split::GroupAnswer;
use crate::broker::metrics::counter;
use crate::broker::ops::put::PutRecord;

/// Waiting parts joined into one exchange hold at most this many bytes (a single part may
/// be larger: it then goes alone).
pub const JOINED_BYTES: usize = 4 << 20;

/// The lanes to the other pods, by ordinal, and what went through them.
pub struct PartLanes {
    lanes: Mutex<HashMap<u32, Lane>>,
    /// Parts sent, by pod.
    parts: IntCounterVec,
    /// Exchanges that carried them, by pod.
    exchanges: IntCounterVec,
}

impl Default for PartLanes {
    fn default() -> Self {
        Self {
            lanes: Mutex::default(),
            parts: counter(
                "brook_cluster_parts_total",
                "Parts of PutRecords requests this pod sent to the pod owning their records.",
                &["pod"],
            ),
            exchanges: counter(
                "brook_cluster_part_exchanges_total",
                "Exchanges that carried those parts (fewer than the parts when parts went together).",
                &["pod"],
            ),
        }
    }
}

#[derive(Default)]
struct Lane {
    /// An exchange with the pod is under way (or its parts are being handed on).
    busy: bool,
    /// Parts that came while it was, oldest first.
    waiting: VecDeque<Waiting>,
}

/// A part waiting for its pod.
pub struct Waiting {
    /// The stream it belongs to.
    stream_key: u32,
    /// Whose records they are.
    caller: String,
    part: EncodedPart,
    reply: oneshot::Sender<GroupAnswer>,
}

/// Waiting parts of one stream and caller, joined: one exchange.
pub struct Joined {
    caller: String,
    parts: Vec<EncodedPart>,
    /// Each part's record count and where its results go, in order.
    replies: Vec<(usize, oneshot::Sender<GroupAnswer>)>,
}

impl Joined {
    /// The records of every part, in order.
    pub fn count(&self) -> usize {
        self.replies.iter().map(|(count, _)| count).sum()
    }

    /// The parts' records in one body (taken: call once).
    fn body(&mut self) -> Result<Vec<u8>, put_part::PartError> {
        let mut parts = std::mem::take(&mut self.parts).into_iter();
        match parts.next() {
            Some(first) => first.join(parts.as_slice()),
            None => Ok(Vec::new()),
        }
    }

    /// Gives each part its own records' results (every part the failure, when it failed).
    pub fn answer(self, answer: GroupAnswer) {
        match answer {
            Ok(results) => {
                let mut results = results.into_iter();
                for (count, reply) in self.replies {
                    let _ = reply.send(Ok(results.by_ref().take(count).collect()));
                }
            }
            Err(why) => {
                for (_, reply) in self.replies {
                    let _ = reply.send(Err(why.clone()));
                }
            }
        }
    }
}

impl PartLanes {
    fn lanes(&self) -> MutexGuard<'_, HashMap<u32, Lane>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters, for `/metrics`.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.parts.clone()),
            Box::new(self.exchanges.clone()),
        ]
    }

    /// Counts an exchange of `parts` parts with pod `owner`.
    fn sent(&self, owner: u32, parts: usize) {
        let pod = owner.to_string();
        self.parts.with_label_values(&[&pod]).inc_by(parts as u64);
        self.exchanges.with_label_values(&[&pod]).inc();
    }

    /// How many parts wait for pod `owner`.
    pub fn waiting(&self, owner: u32) -> usize {
        self.lanes()
            .get(&owner)
            .map_or(0, |lane| lane.waiting.len())
    }
}

/// Sends `records` of a stream (its key and name) to pod `owner`, joined with other parts
/// when an exchange with it is under way, and reads what became of each.
pub async fn send(
    cluster: &Arc<Cluster>,
    owner: u32,
    (stream_key, stream_name): (u32, &str),
    records: &[PutRecord<'_>],
    caller: &str,
) -> GroupAnswer {
    let part =
        put_part::encode_part(stream_key, stream_name, records).map_err(|e| e.to_string())?;
    let queued = {
        let mut lanes = cluster.lanes.lanes();
        let lane = lanes.entry(owner).or_default();
        if lane.busy {
            let (reply, answer) = oneshot::channel();
            lane.waiting.push_back(Waiting {
                stream_key,
                caller: caller.to_owned(),
                part,
                reply,
            });
            Err(answer)
        } else {
            lane.busy = true;
            Ok(part)
        }
    };
    match queued {
        Ok(part) => {
            let _turn = Turn {
                cluster: cluster.clone(),
                owner,
            };
            let count = part.count();
            let body = part.join(&[]).map_err(|e| e.to_string())?;
            cluster.lanes.sent(owner, 1);
            put_part::exchange(cluster, owner, body, count, caller).await
        }
        Err(answer) => answer.await.unwrap_or_else(|_| {
            Err(format!(
                "The records for pod {owner} were not sent (the broker is stopping); retry."
            ))
        }),
    }
}

/// The turn at a pod's lane: when it ends, parts waiting for the pod go on in a task of
/// their own, or the lane is free.
struct Turn {
    cluster: Arc<Cluster>,
    owner: u32,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut lanes = self.cluster.lanes.lanes();
        let Some(lane) = lanes.get_mut(&self.owner) else {
            return;
        };
        if lane.waiting.is_empty() {
            lane.busy = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            // The lane stays busy: the new task holds the turn.
            Ok(runtime) => {
                drop(runtime.spawn(send_waiting(self.cluster.clone(), self.owner)));
            }
            // No runtime left to send them: the waiting parts fail (their senders retry).
            Err(_) => {
                lane.waiting.clear();
                lane.busy = false;
            }
        }
    }
}

/// Sends the parts waiting for pod `owner` (up to [`JOINED_BYTES`]), holding the turn.
async fn send_waiting(cluster: Arc<Cluster>, owner: u32) {
    let _turn = Turn {
        cluster: cluster.clone(),
        owner,
    };
    let batch = match cluster.lanes.lanes().get_mut(&owner) {
        Some(lane) => take_batch(&mut lane.waiting, JOINED_BYTES),
        None => Vec::new(),
    };
    let exchanges = join(batch).into_iter().map(|mut joined| {
        let cluster = &cluster;
        async move {
            let count = joined.count();
            cluster.lanes.sent(owner, joined.replies.len());
            let answer = match joined.body() {
                Ok(body) => put_part::exchange(cluster, owner, body, count, &joined.caller).await,
                Err(error) => Err(error.to_string()),
            };
            joined.answer(answer);
        }
    });
    futures::future::join_all(exchanges).await;
}

/// The oldest waiting parts that go in the next exchanges: the oldest always, then more in
/// order while they hold at most `bytes` in all. Parts nobody waits for any more (their
/// request was dropped: the client went away and will send its records again) are left out.
pub fn take_batch(waiting: &mut VecDeque<Waiting>, bytes: usize) -> Vec<Waiting> {
    let mut batch = Vec::new();
    let mut taken = 0;
    while let Some(next) = waiting.front() {
        if next.reply.is_closed() {
            waiting.pop_front();
            continue;
        }
        if !batch.is_empty() && taken + next.part.len() > bytes {
            break;
        }
        taken += next.part.len();
        batch.extend(waiting.pop_front());
    }
    batch
}

/// A batch's parts joined by stream and caller, each group in the batch's order, groups in
/// the order of their first part.
pub fn join(batch: Vec<Waiting>) -> Vec<Joined> {
    let mut groups: Vec<(u32, Joined)> = Vec::new();
    for waiting in batch {
        let index = match groups
            .iter()
            .position(|(key, g)| *key == waiting.stream_key && g.caller == waiting.caller)
        {
            Some(index) => index,
            None => {
                groups.push((
                    waiting.stream_key,
                    Joined {
                        caller: waiting.caller,
                        parts: Vec::new(),
                        replies: Vec::new(),
                    },
                ));
                groups.len() - 1
            }
        };
        let group = &mut groups[index].1;
        group.replies.push((waiting.part.count(), waiting.reply));
        group.parts.push(waiting.part);
    }
    groups.into_iter().map(|(_, joined)| joined).collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::sync::{Notify, mpsc};

    use super::*;
    use crate::broker::ops::put::RecordResult;

    const STREAM: (u32, &str) = (7, "orders");

    /// Records keyed "k" holding "data", one per hash key.
    fn records(hashes: &[u128]) -> Vec<PutRecord<'static>> {
        hashes
            .iter()
            .map(|&hash| PutRecord {
                key: "k",
                data: b"data",
                hash,
            })
            .collect()
    }

    fn waiting(
        stream_key: u32,
        caller: &str,
        hashes: &[u128],
    ) -> (Waiting, oneshot::Receiver<GroupAnswer>) {
        let records = records(hashes);
        let (reply, answer) = oneshot::channel();
        let part = put_part::encode_part(stream_key, "orders", &records).expect("encodes");
        let waiting = Waiting {
            stream_key,
            caller: caller.to_owned(),
            part,
            reply,
        };
        (waiting, answer)
    }

    fn stored(hash: u128) -> RecordResult {
        RecordResult::Stored {
            shard_index: 0,
            offset: hash as u64,
        }
    }

    #[test]
    fn cluster_a_batch_takes_the_oldest_parts_up_to_its_size() {
        let (parts, _answers): (VecDeque<Waiting>, Vec<_>) =
            (0..4).map(|i| waiting(7, "a", &[i])).unzip();
        let mut queue = parts;
        let one = queue[0].part.len();
        let batch = take_batch(&mut queue, 2 * one);
        assert_eq!(batch.len(), 2);
        assert_eq!(queue.len(), 2);
        // The oldest part goes even when it alone is larger than a batch.
        let batch = take_batch(&mut queue, 1);
        assert_eq!(batch.len(), 1);
        assert_eq!(queue.len(), 1);
        assert!(take_batch(&mut VecDeque::new(), JOINED_BYTES).is_empty());
        // A part whose sender went away is not sent.
        let (gone, answer) = waiting(7, "a", &[9]);
        drop(answer);
        let (kept, _kept_answer) = waiting(7, "a", &[10]);
        let mut queue: VecDeque<Waiting> = [gone, kept].into();
        let batch = take_batch(&mut queue, JOINED_BYTES);
        assert_eq!(batch.len(), 1);
        assert!(queue.is_empty());
        let body = join(batch).remove(0).body().expect("joins");
        let hashes: Vec<u128> = put_part::decode(&body)
            .expect("decodes")
            .records
            .iter()
            .map(|r| r.hash)
            .collect();
        assert_eq!(hashes, vec![10]);
    }

    #[test]
    fn cluster_parts_join_by_stream_and_caller_and_get_their_own_results() {
        let (a, a_answer) = waiting(7, "client:a", &[1, 2]);
        let (b, b_answer) = waiting(7, "client:b", &[3]);
        let (c, c_answer) = waiting(7, "client:a", &[4, 5, 6]);
        let (d, d_answer) = waiting(8, "client:a", &[7]);
        let mut joined = join(vec![a, b, c, d]);
        assert_eq!(
            joined
                .iter()
                .map(|j| (j.caller.as_str(), j.count()))
                .collect::<Vec<_>>(),
            vec![("client:a", 5), ("client:b", 1), ("client:a", 1)]
        );
        // The first group's body is one part holding a's records, then c's.
        let body = joined[0].body().expect("joins");
        let part = put_part::decode(&body).expect("decodes");
        assert_eq!(part.stream_key, 7);
        assert_eq!(
            part.records.iter().map(|r| r.hash).collect::<Vec<_>>(),
            vec![1, 2, 4, 5, 6]
        );
        let mut groups = joined.into_iter();
        let first = groups.next().expect("group");
        first.answer(Ok((1..=6).filter(|&h| h != 3).map(stored).collect()));
        let second = groups.next().expect("group");
        second.answer(Err("pod 1 is unreachable".to_owned()));
        drop(groups);
        let now = |mut answer: oneshot::Receiver<GroupAnswer>| answer.try_recv().expect("answered");
        assert_eq!(now(a_answer), Ok(vec![stored(1), stored(2)]));
        assert_eq!(now(c_answer), Ok(vec![stored(4), stored(5), stored(6)]));
        assert_eq!(now(b_answer), Err("pod 1 is unreachable".to_owned()));
        // A group never sent drops its replies: its senders hear it was not answered.
        let mut dropped = d_answer;
        assert!(dropped.try_recv().is_err());
    }

    /// What the stand-in pod was sent: each exchange's caller and records' hash keys.
    type Exchange = (String, Vec<u128>);

    /// A pod that answers every record of a part as stored at its hash key, and holds its
    /// first exchange until `release`.
    async fn stand_in_pod(release: Arc<Notify>) -> (SocketAddr, mpsc::UnboundedReceiver<Exchange>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let address = listener.local_addr().expect("address");
        let (seen, exchanges) = mpsc::unbounded_channel();
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, release, first) = (seen.clone(), release.clone(), first.clone());
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let (seen, release, first) = (seen.clone(), release.clone(), first.clone());
                    async move {
                        if request.uri().path() == crate::broker::cluster::silence::PING_PATH {
                            return Ok(http::Response::new(Full::new(Bytes::from_static(b"ok"))));
                        }
                        let caller = request
                            .headers()
                            .get(crate::broker::cluster::CALLER_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = request.into_body().collect().await?.to_bytes();
                        let part = put_part::decode(&body).expect("a part");
                        let hashes: Vec<u128> = part.records.iter().map(|r| r.hash).collect();
                        let _ = seen.send((caller, hashes.clone()));
                        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            release.notified().await;
                        }
                        let results: Vec<RecordResult> = hashes.into_iter().map(stored).collect();
                        let answer = put_part::encode_answer(&results);
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (address, exchanges)
    }

    /// Waits (up to a minute) until `parts` wait for pod 1.
    async fn until_waiting(cluster: &Cluster, parts: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while cluster.lanes.waiting(1) != parts {
            assert!(tokio::time::Instant::now() < deadline, "parts never waited");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn send_part(
        cluster: &Arc<Cluster>,
        caller: &str,
        hashes: Vec<u128>,
    ) -> tokio::task::JoinHandle<GroupAnswer> {
        let (cluster, caller) = (cluster.clone(), caller.to_owned());
        tokio::spawn(async move { send(&cluster, 1, STREAM, &records(&hashes), &caller).await })
    }

    /// Pod 0 of a cluster whose pod 1 is `address`, waiting `limit` for answers and probing
    /// a silent pod every `probe_every`.
    fn cluster_to(address: SocketAddr, limit: Duration, probe_every: Duration) -> Arc<Cluster> {
        let mut cluster = crate::broker::cluster::pod_0_with_pod_1_at(address);
        cluster.answer_limit = limit;
        cluster.silences.probe_every = probe_every;
        Arc::new(cluster)
    }

    /// Whether /metrics says pod 1 is taken for silent.
    fn silent_gauge(cluster: &Cluster) -> i64 {
        cluster
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .filter(|family| family.name() == "brook_cluster_silent_pod")
            .flat_map(|family| family.get_metric().to_vec())
            .map(|m| m.get_gauge().get_value() as i64)
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_parts_waiting_for_a_pod_that_went_silent_fail_at_once() {
        // The stand-in holds its first exchange past the limit: a pod that froze.
        let release = Arc::new(Notify::new());
        let (address, mut exchanges) = stand_in_pod(release.clone()).await;
        let cluster = cluster_to(address, Duration::from_secs(2), Duration::from_secs(3600));
        let first = send_part(&cluster, "client:a", vec![1]);
        assert_eq!(
            exchanges.recv().await,
            Some(("client:a".to_owned(), vec![1]))
        );
        let waiting = [
            send_part(&cluster, "client:a", vec![2]),
            send_part(&cluster, "client:b", vec![3]),
        ];
        until_waiting(&cluster, 2).await;
        let why = first.await.expect("sent").expect_err("not answered");
        assert!(why.contains("no answer within 2000 ms"), "{why}");
        // The parts that waited behind it do not wait the limit once more: they fail at
        // once, unsent, and so does a part that comes later.
        for task in waiting {
            let why = task.await.expect("sent").expect_err("pod 1 is silent");
            assert!(why.contains("fail at once"), "{why}");
        }
        let later = send_part(&cluster, "client:a", vec![4])
            .await
            .expect("sent");
        assert!(later.expect_err("pod 1 is silent").contains("fail at once"));
        assert!(exchanges.try_recv().is_err(), "nothing more was sent");
        assert_eq!(silent_gauge(&cluster), 1);
        release.notify_one();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_a_silent_pod_that_answers_a_probe_is_sent_parts_again() {
        let release = Arc::new(Notify::new());
        let (address, mut exchanges) = stand_in_pod(release.clone()).await;
        let cluster = cluster_to(
            address,
            Duration::from_millis(200),
            Duration::from_millis(10),
        );
        let first = send_part(&cluster, "client:a", vec![1])
            .await
            .expect("sent");
        assert!(first.expect_err("held").contains("no answer within 200 ms"));
        assert_eq!(exchanges.recv().await.map(|e| e.1), Some(vec![1]));
        // The stand-in answers its probes (pings) at once: the silence ends by itself.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while cluster.silences.admit(1).is_err() {
            assert!(tokio::time::Instant::now() < deadline, "never probed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(silent_gauge(&cluster), 0);
        let next = send_part(&cluster, "client:a", vec![2])
            .await
            .expect("sent");
        assert_eq!(next, Ok(vec![stored(2)]));
        assert_eq!(exchanges.recv().await.map(|e| e.1), Some(vec![2]));
        release.notify_one();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_parts_for_a_pod_in_an_exchange_wait_and_go_together() {
        let release = Arc::new(Notify::new());
        let (address, mut exchanges) = stand_in_pod(release.clone()).await;
        let cluster = Arc::new(crate::broker::cluster::pod_0_with_pod_1_at(address));

        let first = send_part(&cluster, "client:a", vec![1, 2]);
        assert_eq!(
            exchanges.recv().await,
            Some(("client:a".to_owned(), vec![1, 2]))
        );
        // While pod 1 holds that exchange, four more parts come, one after another: they wait.
        let mut waiting = Vec::new();
        for (caller, hashes) in [
            ("client:a", vec![3]),
            ("client:b", vec![4, 5]),
            ("client:a", vec![6, 7]),
            ("client:b", vec![8]),
        ] {
            waiting.push(send_part(&cluster, caller, hashes));
            until_waiting(&cluster, waiting.len()).await;
        }
        // The first sender goes away before its answer: the waiting parts still go.
        first.abort();
        let mut joined = vec![
            exchanges.recv().await.expect("an exchange"),
            exchanges.recv().await.expect("an exchange"),
        ];
        joined.sort();
        assert_eq!(
            joined,
            vec![
                ("client:a".to_owned(), vec![3, 6, 7]),
                ("client:b".to_owned(), vec![4, 5, 8])
            ]
        );
        let mut answers = Vec::new();
        for task in waiting {
            answers.push(task.await.expect("sent"));
        }
        assert_eq!(
            answers,
            vec![
                Ok(vec![stored(3)]),
                Ok(vec![stored(4), stored(5)]),
                Ok(vec![stored(6), stored(7)]),
                Ok(vec![stored(8)])
            ]
        );
        // Five parts went in three exchanges, and /metrics says so.
        let sample = |family: &prometheus::proto::MetricFamily| {
            family.get_metric()[0].get_counter().get_value()
        };
        let families: Vec<_> = cluster
            .lanes
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .collect();
        assert_eq!(
            families
                .iter()
                .map(|f| (f.name().to_owned(), sample(f)))
                .collect::<Vec<_>>(),
            vec![
                ("brook_cluster_parts_total".to_owned(), 5.0),
                ("brook_cluster_part_exchanges_total".to_owned(), 3.0)
            ]
        );
        // The lane is free again: a part now goes at once, alone.
        release.notify_one();
        assert_eq!(
            send_part(&cluster, "client:a", vec![9])
                .await
                .expect("sent"),
            Ok(vec![stored(9)])
        );
        assert_eq!(
            exchanges.recv().await,
            Some(("client:a".to_owned(), vec![9]))
        );
    }
}
