//! Pods that stopped answering. A pod that lets a call go unanswered for the whole answer
//! limit (frozen, or on a node whose packets no longer arrive) would make every later call
//! to it wait that long too: each PutRecords with one record for its shards, and each part
//! queued behind the one that timed out, would take the limit before failing. So a pod
//! that did not answer within the limit is taken for silent: calls to it fail at once, as
//! calls to a pod that refuses connections do, while a probe asks it for a ping every probe
//! interval; its first answer ends the silence, so calls go to it again a probe interval at
//! most after it came back.
//!
//! Only a missed answer limit (or a connection attempt that timed out) makes a pod silent:
//! a refused or broken connection fails at once anyway, and a pod restarting is tried again
//! on the next call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use prometheus::IntGaugeVec;

use super::ClusterError;

/// How often a silent pod is asked whether it answers again.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a probe waits for its answer (a pod that is up answers a ping in
/// milliseconds); shorter when the answer limit is.
pub const PROBE_LIMIT: Duration = Duration::from_secs(1);
/// The internal path a probe asks: any answer to it shows the pod answers again.
pub const PING_PATH: &str = "/cluster/ping";

/// A pod that did not answer within the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silent {
    /// When it first failed to answer.
    pub since: Instant,
    /// The limit it missed.
    pub limit: Duration,
}

impl Silent {
    /// Why a call to the pod failed at once.
    pub fn refusal(&self) -> String {
        format!(
            "no answer within {} ms to a call {} ms ago; calls to it fail at once until it answers a probe",
            self.limit.as_millis(),
            self.since.elapsed().as_millis(),
        )
    }
}

/// Whether `error` is, or was caused by, a connection attempt or read that timed out (a
/// node that drops packets, rather than a pod that refuses connections).
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// The silent pods and their gauge, shared with the probes.
struct SilentPods {
    pods: Mutex<HashMap<u32, Silent>>,
    /// How many pods `pods` holds, read without the lock: while none is silent (nearly
    /// always), a call's check and its answer's cost no lock.
    silent: AtomicUsize,
    /// 1 for each pod taken for silent, 0 once it answered again.
    gauge: IntGaugeVec,
}

impl SilentPods {
    fn pods(&self) -> MutexGuard<'_, HashMap<u32, Silent>> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answered(&self, ordinal: u32) {
        if self.silent.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut pods = self.pods();
        if pods.remove(&ordinal).is_some() {
            self.silent.store(pods.len(), Ordering::Relaxed);
            self.gauge.with_label_values(&[&ordinal.to_string()]).set(0);
        }
    }

    fn is_silent(&self, ordinal: u32) -> bool {
        self.pods().contains_key(&ordinal)
    }
}

/// The pods this pod takes for silent, by ordinal.
pub struct Silences {
    shared: Arc<SilentPods>,
    /// How often a silent pod is probed.
    pub probe_every: Duration,
}

impl Default for Silences {
    fn default() -> Self {
        Self {
            shared: Arc::new(SilentPods {
                pods: Mutex::default(),
                silent: AtomicUsize::new(0),
                gauge: crate::broker::metrics::gauge(
                    "brook_cluster_silent_pod",
                    "1 while a pod of this pod's cluster is taken for silent (it did not answer a call within the answer limit; calls to it fail at once until it answers a probe), 0 once it answered again.",
                    &["pod"],
                ),
            }),
            probe_every: PROBE_EVERY,
        }
    }
}

impl Silences {
    /// Whether a call to pod `ordinal` may go: `Err` with its silence when not.
    pub fn admit(&self, ordinal: u32) -> Result<(), Silent> {
        if self.shared.silent.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        match self.shared.pods().get(&ordinal) {
            Some(silent) => Err(*silent),
            None => Ok(()),
        }
    }

    /// Pod `ordinal` did not answer within `limit`. Returns a probe to run when this made
    /// it silent (a pod already silent keeps the probe it has).
    pub fn unanswered(&self, ordinal: u32, limit: Duration) -> Option<Probe> {
        let mut pods = self.shared.pods();
        if pods.contains_key(&ordinal) {
            return None;
        }
        pods.insert(
            ordinal,
            Silent {
                since: Instant::now(),
                limit,
            },
        );
        self.shared.silent.store(pods.len(), Ordering::Relaxed);
        self.shared
            .gauge
            .with_label_values(&[&ordinal.to_string()])
            .set(1);
        Some(Probe {
            silences: Arc::downgrade(&self.shared),
            ordinal,
            every: self.probe_every,
        })
    }

    /// Pod `ordinal` answered.
    pub fn answered(&self, ordinal: u32) {
        self.shared.answered(ordinal);
    }

    /// The gauge, for `/metrics`.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.shared.gauge.clone())
    }
}

/// Asks a silent pod every probe interval whether it answers, until it does.
pub struct Probe {
    silences: Weak<SilentPods>,
    ordinal: u32,
    every: Duration,
}

impl Probe {
    /// Runs `ask` (true when the pod answered) every probe interval until it answers, the
    /// pod's silence ended otherwise (another call got an answer), or the silences are gone.
    pub async fn run<F, Fut>(self, ask: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        loop {
            tokio::time::sleep(self.every).await;
            match self.silences.upgrade() {
                Some(silences) if silences.is_silent(self.ordinal) => {}
                _ => return,
            }
            if ask().await {
                if let Some(silences) = self.silences.upgrade() {
                    silences.answered(self.ordinal);
                }
                return;
            }
        }
    }
}

impl super::Cluster {
    /// A ping of pod `ordinal` that waits up to `limit`: true when it answered (anything).
    fn pinger(
        &self,
        ordinal: u32,
        limit: Duration,
    ) -> Option<impl Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + 'static> {
        let uri = self.peer_uri(ordinal, PING_PATH).ok()?;
        let client = self.client.clone();
        Some(move || {
            let (client, uri) = (client.clone(), uri.clone());
            Box::pin(async move {
                let Ok(ping) = http::Request::get(uri).body(Full::new(Bytes::new())) else {
                    return false;
                };
                matches!(
                    tokio::time::timeout(limit, client.request(ping)).await,
                    Ok(Ok(_))
                )
            }) as Pin<Box<dyn Future<Output = bool> + Send>>
        })
    }

    /// Takes pod `ordinal`, which did not answer within `limit`, for silent; when it was
    /// not yet, starts probing it. A pod is taken for silent only when it can be probed:
    /// nothing else ends its silence but an answer.
    pub(super) fn went_unanswered(&self, ordinal: u32, limit: Duration) {
        if self.silences.admit(ordinal).is_err() {
            return;
        }
        let Some(ping) = self.pinger(ordinal, self.answer_limit.min(PROBE_LIMIT)) else {
            return;
        };
        if let Some(probe) = self.silences.unanswered(ordinal, limit) {
            tokio::spawn(probe.run(ping));
        }
    }

    /// Awaits `work` with pod `ordinal`, a call with no answer limit (its work grows with
    /// the data), for as long as the pod answers a ping every answer limit: a pod that
    /// froze mid-call does not hold its caller forever, and is taken for silent.
    pub(super) async fn kept_alive<T>(
        &self,
        ordinal: u32,
        work: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        let Some(ping) = self.pinger(ordinal, self.answer_limit) else {
            return work.await;
        };
        let watch = async {
            loop {
                tokio::time::sleep(self.answer_limit).await;
                if !ping().await {
                    return;
                }
            }
        };
        tokio::select! {
            done = work => done,
            () = watch => {
                self.count_unanswered(ordinal);
                self.went_unanswered(ordinal, self.answer_limit);
                Err(self.unreachable(
                    ordinal,
                    format!(
                        "no answer to a ping within {} ms during a call with no answer limit",
                        self.answer_limit.as_millis()
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use super::*;

    /// A pod that holds every call but pings forever, and answers pings while `alive` (each
    /// ping answered is reported on the returned channel).
    async fn pod_answering_pings_while(
        alive: Arc<AtomicBool>,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let address = listener.local_addr().expect("address");
        let (pinged, pings) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (alive, pinged) = (alive.clone(), pinged.clone());
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let (alive, pinged) = (alive.clone(), pinged.clone());
                    async move {
                        if request.uri().path() != PING_PATH || !alive.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        let _ = pinged.send(());
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (address, pings)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_a_call_with_no_limit_waits_while_the_pod_answers_pings_and_ends_when_it_stops()
    {
        let alive = Arc::new(AtomicBool::new(true));
        let (address, mut pings) = pod_answering_pings_while(alive.clone()).await;
        let mut cluster = super::super::pod_0_with_pod_1_at(address);
        cluster.answer_limit = Duration::from_millis(300);
        let cluster = Arc::new(cluster);
        let call = {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                cluster
                    .exchange_within(
                        1,
                        http::Request::post("/cluster/import-shard"),
                        "/cluster/import-shard",
                        Bytes::new(),
                        None,
                    )
                    .await
            })
        };
        // Three pings answered: the call, which the pod holds, goes on waiting.
        let three_pings = async {
            for _ in 0..3 {
                pings.recv().await.expect("pinged");
            }
        };
        tokio::time::timeout(Duration::from_secs(60), three_pings)
            .await
            .expect("the pod is pinged while the call waits");
        assert!(
            !call.is_finished(),
            "a call the pod works on is not given up"
        );
        assert_eq!(cluster.silences.admit(1), Ok(()));
        // The pod stops answering pings: the call ends as unreachable, the pod silent.
        alive.store(false, Ordering::SeqCst);
        let ended = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("the call ended")
            .expect("joined");
        match ended {
            Err(ClusterError::Unreachable { message, .. }) => {
                assert!(message.contains("no answer to a ping"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(cluster.silences.admit(1).is_err());
    }

    #[test]
    fn cluster_only_a_timed_out_connection_counts_as_silence() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error")]
        struct Wrapped(#[source] std::io::Error);
        let timed_out_connect = Wrapped(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "tcp connect error",
        ));
        assert!(timed_out(&timed_out_connect));
        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!timed_out(&refused));
    }

    #[tokio::test]
    async fn cluster_a_pod_is_silent_from_a_missed_limit_until_it_answers_a_probe() {
        let silences = Silences {
            probe_every: Duration::from_millis(1),
            ..Silences::default()
        };
        assert_eq!(silences.admit(2), Ok(()));
        let probe = silences
            .unanswered(2, Duration::from_millis(200))
            .expect("a probe for a pod that went silent");
        let refused = silences.admit(2).expect_err("silent");
        assert_eq!(refused.limit, Duration::from_millis(200));
        let why = refused.refusal();
        assert!(why.contains("no answer within 200 ms"), "{why}");
        assert!(why.contains("fail at once"), "{why}");
        // Other pods are not affected; a second missed call neither restarts the silence
        // nor starts a second probe.
        assert_eq!(silences.admit(1), Ok(()));
        assert!(silences.unanswered(2, Duration::from_millis(200)).is_none());
        assert_eq!(silences.admit(2).expect_err("silent").since, refused.since);

        // The probe asks until the pod answers (the third time), which ends the silence.
        let asked = AtomicUsize::new(0);
        probe
            .run(|| async { asked.fetch_add(1, Ordering::SeqCst) == 2 })
            .await;
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        assert_eq!(silences.admit(2), Ok(()));

        // A probe stops asking once another call got an answer from the pod.
        let probe = silences
            .unanswered(2, Duration::from_millis(200))
            .expect("silent again");
        silences.answered(2);
        probe.run(|| async { panic!("not asked") }).await;
    }
}
