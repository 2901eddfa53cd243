//! The autoscaler end to end with a real Prometheus scraping a real broker every second: the
//! autoscaler, run as the operator runs it (every period: Prometheus, the decision, a reshard
//! through the brokers' admin API) but against the broker directly, scales a stream up after a
//! load step until throttling stops, and back down once the load is gone and the window passed.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use brook::autoscale::queries::{QueryTemplates, render};
use brook::autoscale::{Resize, ScalingPolicy};
use brook::operator::autoscaler::{Autoscaler, Target};
use brook::operator::kinesis::BrokerAdmin;
use brook::operator::prometheus::{ClientSettings, Credentials, PrometheusClient};
use support::broker::{BrokerBuilder, TempDir, create_active_stream};
use support::prometheus::Prometheus;

const PERIOD: Duration = Duration::from_secs(1);

fn prometheus_client(url: &str, credentials: Credentials) -> PrometheusClient {
    PrometheusClient::new(&ClientSettings {
        url: url.to_owned(),
        credentials,
        ca_pem: None,
        timeout: Duration::from_secs(3),
    })
    .expect("client")
}

/// The stream `clicks` of namespace `shop`, its rates over 5 s, evaluated every period.
fn clicks_in_shop(queries: &QueryTemplates) -> Target<'_> {
    Target {
        namespace: "shop",
        stream: "clicks",
        window_seconds: 5,
        queries,
        period: PERIOD,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Offers about 400 records/s (four times one shard's 100/s) until `stop`, counting refusals.
fn producer(
    client: aws_sdk_kinesis::Client,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let entries = (0..20)
                .map(|i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("user-{batch}-{i}"))
                        .data(Blob::new(vec![b'x'; 64]))
                        .build()
                        .expect("entry")
                })
                .collect();
            if let Ok(put) = client
                .put_records()
                .stream_name("clicks")
                .set_records(Some(entries))
                .send()
                .await
            {
                let failed = put.failed_record_count().unwrap_or(0);
                refused.fetch_add(u64::try_from(failed).unwrap_or(0), Ordering::Relaxed);
            }
            batch += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_follows_a_load_step_up_and_back_down_through_a_real_prometheus() {
    let dir = TempDir::new("autoscaling");
    let broker = BrokerBuilder::default()
        .arg("--write-records-per-second")
        .arg("100")
        .start(dir.path());
    let client = broker.client();
    create_active_stream(&client, "clicks", 1).await;
    let prometheus =
        Prometheus::scraping(&[broker.metrics.trim_start_matches("http://")], "shop").await;
    let metrics = prometheus_client(&prometheus.url, Credentials::None);
    let admin = BrokerAdmin::new(
        broker.endpoint.trim_start_matches("http://").to_owned(),
        "AKIDAUTOSCALER",
        "secret",
        "us-east-1",
    );
    let policy = ScalingPolicy {
        max_shards: 16,
        scale_down_window_ms: 10_000,
        max_sample_age_ms: 10_000,
        rate_window_ms: 5_000,
        ..ScalingPolicy::with_quotas(1_048_576.0, 100.0)
    };
    let queries = QueryTemplates::default();
    let target = clicks_in_shop(&queries);
    let autoscaler = Autoscaler::default();

    // Before any load: no scale-down below the minimum, no scale-up.
    let idle = autoscaler
        .evaluate(&metrics, &admin, &target, &policy, now_ms())
        .await
        .expect("evaluation");
    assert_eq!(idle.current, 1);
    assert_eq!(idle.decision.resize, Resize::Hold, "{:?}", idle);

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let load = producer(client.clone(), stop.clone(), refused.clone());

    // The step: an evaluation every period, until the shards carry the load: the autoscaler
    // holds, and Prometheus sees no refused write over a whole rate window.
    let throttled = render(&queries.throttled, "shop", "clicks", 5);
    let throttled_rate = || async {
        let answer = metrics.instant(&throttled, None).await.expect("query");
        answer
            .first()
            .and_then(|s| s.samples.last())
            .map_or(f64::NAN, |s| s.1)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let mut evaluations = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the shards never carried the load: {evaluations:#?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(PERIOD).await;
        let evaluation = autoscaler
            .evaluate(&metrics, &admin, &target, &policy, now_ms())
            .await
            .expect("evaluation");
        assert!(
            evaluation.decision.desired_shards >= evaluation.current,
            "a scale-down under load: {evaluation:?}"
        );
        let settled = evaluation.current > 1 && evaluation.decision.resize == Resize::Hold;
        evaluations.push(evaluation);
        if settled && throttled_rate().await == 0.0 {
            break;
        }
    }
    let mut shards = admin.open_shards("clicks").await.expect("shards").len();
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the step was throttled first"
    );
    let scale_ups: Vec<_> = evaluations.iter().filter(|e| e.resized()).collect();
    assert!(!scale_ups.is_empty());
    assert!(
        scale_ups
            .iter()
            .all(|e| e.decision.desired_shards <= 2 * e.current),
        "at most double per step: {scale_ups:#?}"
    );
    let refused_then = refused.load(Ordering::Relaxed);
    // The producer keeps going on these shards a rate window longer: nothing refused.
    let calm = throttled_rate().await;
    assert_eq!(calm, 0.0, "throttled again on {shards} shards");
    assert!(refused.load(Ordering::Relaxed) - refused_then < 20);

    // The load goes; once the scale-down window passed, the shards go back to the minimum.
    stop.store(true, Ordering::Relaxed);
    load.await.expect("producer");
    let quiet_since = now_ms();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut first_scale_down = None;
    while shards > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "never scaled down from {shards}"
        );
        tokio::time::sleep(PERIOD).await;
        let evaluation = autoscaler
            .evaluate(&metrics, &admin, &target, &policy, now_ms())
            .await
            .expect("evaluation");
        // Right after the stop the rate window still holds the load, and may still ask for a
        // shard more; what counts is the first scale-down.
        let scales_down = evaluation.decision.desired_shards < evaluation.current;
        if evaluation.resized() && scales_down && first_scale_down.is_none() {
            first_scale_down = Some(now_ms());
            assert!(
                evaluation.decision.reason.contains("scale-down window"),
                "{evaluation:?}"
            );
        }
        shards = admin.open_shards("clicks").await.expect("shards").len();
    }
    // A sample shows the drop as soon as its rate window holds a quiet scrape, so the window
    // counts from the drop as Prometheus saw it: up to a scrape interval (1 s) and an
    // evaluation period (1 s) before the producer's last write was timed here.
    let waited = first_scale_down.expect("a scale-down") - quiet_since;
    let slack = 2 * PERIOD.as_millis() as u64;
    assert!(
        waited + slack >= policy.scale_down_window_ms,
        "scaled down {waited} ms after the load stopped, before the 10 s window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_reports_an_unreachable_or_unscraped_prometheus_and_holds() {
    let dir = TempDir::new("autoscaling-lost");
    let broker = BrokerBuilder::default().start(dir.path());
    create_active_stream(&broker.client(), "clicks", 4).await;
    let admin = BrokerAdmin::new(
        broker.endpoint.trim_start_matches("http://").to_owned(),
        "AKIDAUTOSCALER",
        "secret",
        "us-east-1",
    );
    let closed = support::unused_address();
    let unreachable = prometheus_client(
        &format!("http://{closed}"),
        Credentials::Bearer("token".into()),
    );
    let queries = QueryTemplates::default();
    let target = clicks_in_shop(&queries);
    let policy = ScalingPolicy::with_quotas(1_048_576.0, 1000.0);
    let autoscaler = Autoscaler::default();
    let evaluation = autoscaler
        .evaluate(&unreachable, &admin, &target, &policy, now_ms())
        .await
        .expect("evaluation");
    assert_eq!(evaluation.decision.resize, Resize::Hold);
    assert!(!evaluation.resized());
    let error = evaluation.metrics_error.expect("reported");
    assert!(error.contains("cannot be reached"), "{error}");

    // A Prometheus that answers but does not scrape this stream.
    let prometheus = Prometheus::scraping(&["127.0.0.1:9"], "elsewhere").await;
    let unscraped = prometheus_client(&prometheus.url, Credentials::None);
    let evaluation = autoscaler
        .evaluate(&unscraped, &admin, &target, &policy, now_ms())
        .await
        .expect("evaluation");
    assert_eq!(evaluation.decision.resize, Resize::Hold);
    assert_eq!(evaluation.current, 4, "no scale-down without metrics");
    let error = evaluation.metrics_error.expect("reported");
    assert!(error.contains("no series of stream clicks"), "{error}");
    let bad = QueryTemplates {
        incoming_bytes: "sum(rate(".into(),
        ..QueryTemplates::default()
    };
    let evaluation = Autoscaler::default()
        .evaluate(
            &unscraped,
            &admin,
            &Target {
                queries: &bad,
                ..target
            },
            &policy,
            now_ms(),
        )
        .await
        .expect("evaluation");
    let error = evaluation.metrics_error.expect("reported");
    assert!(
        error.contains("bad_data"),
        "a broken query override is named: {error}"
    );
}

/// bcrypt of "brook-test-password" (Prometheus' web config holds only the hash).
const TEST_PASSWORD_HASH: &str = "$2b$12$3X.Ci9zylpW2rFf9cnw4lesBBC5lh0LltmJ7yU1r9POSsAhwFOh/6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_reads_a_prometheus_behind_tls_with_a_private_ca_and_basic_auth() {
    let dir = TempDir::new("autoscaling-tls");
    let pki = support::pki::make(&dir.path().join("pki"), "prometheus");
    let broker = BrokerBuilder::default().start(&dir.path().join("data"));
    create_active_stream(&broker.client(), "clicks", 1).await;
    let prometheus = Prometheus::scraping_tls(
        &[broker.metrics.trim_start_matches("http://")],
        "shop",
        &pki.cert,
        &pki.key,
        "autoscaler",
        TEST_PASSWORD_HASH,
    )
    .await;
    let ca = std::fs::read(&pki.ca_pem).expect("CA");
    let client = |credentials: Credentials, ca_pem: Option<Vec<u8>>| {
        PrometheusClient::new(&ClientSettings {
            url: prometheus.url.clone(),
            credentials,
            ca_pem,
            timeout: Duration::from_secs(3),
        })
        .expect("client")
    };
    let password = || Credentials::Basic {
        username: "autoscaler".into(),
        password: "brook-test-password".into(),
    };
    // The scrape of the broker shows up through TLS and basic auth.
    let trusted = client(password(), Some(ca.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match trusted.instant("up{job=\"brook-broker\"}", None).await {
            Ok(series)
                if series.first().and_then(|s| s.samples.last()).map(|s| s.1) == Some(1.0) =>
            {
                break;
            }
            outcome => assert!(
                std::time::Instant::now() < deadline,
                "no scrape through TLS: {outcome:?}\n{}",
                prometheus.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wrong = Credentials::Basic {
        username: "autoscaler".into(),
        password: "guess".into(),
    };
    let refused = client(wrong, Some(ca.clone()))
        .instant("up", None)
        .await
        .expect_err("a wrong password");
    assert!(refused.to_string().contains("HTTP 401"), "{refused}");
    let untrusted = client(password(), None)
        .instant("up", None)
        .await
        .expect_err("a server certificate of an unknown CA");
    assert!(
        untrusted.to_string().contains("cannot be reached"),
        "{untrusted}"
    );
}
