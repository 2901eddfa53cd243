//! `brook gateway`: one endpoint for every stream. Two brokers each serve one stream; one AWS
//! SDK client, pointed at the gateway only, writes, reads and lists both. Routes come from
//! fixed `--route` pairs, or from Stream resources on a mocked API server, followed as they
//! change.

mod support;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use serde_json::json;
use support::broker::{
    BrokerBuilder, TempDir, create_active_stream, error_code, http_request, signed_client,
    trim_horizon_iterator,
};
use support::mock_kube::MockKube;

const KEY_ID: &str = "AKIDGATEWAYTEST";
const SECRET: &str = "gateway-test-secret-0123456789";

/// A running `brook gateway`, killed when dropped.
struct GatewayProcess {
    child: Child,
    endpoint: String,
    /// Base URL of `/metrics`, `/healthz` and `/readyz`.
    metrics: String,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(args: &[String], kubeconfig: Option<&std::path::Path>) -> GatewayProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "text"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    let mut child = command.spawn().expect("brook gateway starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the gateway prints its address");
    let endpoint = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let metrics = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("http://"))
        .find_map(|w| w.strip_suffix("/healthz)"))
        .map(|address| format!("http://{address}"))
        .unwrap_or_else(|| panic!("no health address in {line:?}"));
    GatewayProcess {
        child,
        endpoint,
        metrics,
    }
}

fn credentials(dir: &TempDir) -> std::path::PathBuf {
    let folder = dir.path().join("keys");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join(KEY_ID), SECRET).expect("key");
    folder
}

async fn put_and_read_back(client: &Client, stream: &str) {
    let put = client
        .put_record()
        .stream_name(stream)
        .partition_key("k")
        .data(Blob::new(format!("hello {stream}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutRecord to {stream}: {e:?}"));
    let iterator = trim_horizon_iterator(client, stream, put.shard_id()).await;
    // The iterator names its stream: the gateway sends GetRecords to that stream's brokers.
    let records = client
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords");
    let data: Vec<String> = records
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned())
        .collect();
    assert_eq!(data, [format!("hello {stream}")]);
}

#[tokio::test]
async fn gateway_one_sdk_client_writes_reads_and_lists_two_streams_signed_at_their_brokers() {
    let keys = TempDir::new("gateway-keys");
    let folder = credentials(&keys);
    let dirs = [TempDir::new("gateway-a"), TempDir::new("gateway-b")];
    let brokers: Vec<_> = dirs
        .iter()
        .map(|dir| {
            BrokerBuilder::default()
                .arg("--credentials")
                .arg(folder.to_string_lossy())
                .start(dir.path())
        })
        .collect();
    create_active_stream(
        &signed_client(&brokers[0].endpoint, KEY_ID, SECRET),
        "orders",
        2,
    )
    .await;
    create_active_stream(
        &signed_client(&brokers[1].endpoint, KEY_ID, SECRET),
        "clicks",
        1,
    )
    .await;
    let gateway = start_gateway(
        &[
            "--route".into(),
            format!("orders={}", brokers[0].endpoint),
            "--route".into(),
            format!("clicks={}", brokers[1].endpoint),
        ],
        None,
    );
    let client = signed_client(&gateway.endpoint, KEY_ID, SECRET);
    put_and_read_back(&client, "orders").await;
    put_and_read_back(&client, "clicks").await;
    let listed = client.list_streams().send().await.expect("ListStreams");
    assert_eq!(listed.stream_names(), ["clicks", "orders"]);
    assert_eq!(listed.stream_summaries().len(), 2);
    assert!(!listed.has_more_streams());
    assert_eq!(listed.next_token(), None);
    // Pages of one: the gateway's NextToken is read by both brokers.
    let first = client
        .list_streams()
        .limit(1)
        .send()
        .await
        .expect("ListStreams, first page");
    assert_eq!(first.stream_names(), ["clicks"]);
    assert!(first.has_more_streams());
    let token = first.next_token().expect("a NextToken").to_owned();
    let second = client
        .list_streams()
        .limit(1)
        .next_token(token)
        .send()
        .await
        .expect("ListStreams, second page");
    assert_eq!(second.stream_names(), ["orders"]);
    assert!(!second.has_more_streams());
    assert_eq!(second.next_token(), None);

    // The gateway counts what it answered.
    let (status, metrics) =
        support::broker::http_request("GET", &format!("{}/metrics", gateway.metrics));
    assert_eq!(status, 200);
    let count = |line_start: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        count(r#"brook_gateway_requests_total{code="200",operation="PutRecord"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        count(r#"brook_gateway_requests_total{code="200",operation="ListStreams"}"#),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        count("brook_gateway_routed_streams"),
        Some(2.0),
        "{metrics}"
    );
    let described = client
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("DescribeStreamSummary");
    assert_eq!(
        described
            .stream_description_summary()
            .map(|s| s.open_shard_count()),
        Some(2)
    );

    // The signature is checked by the brokers, on the request exactly as the client sent it.
    let forged = signed_client(&gateway.endpoint, KEY_ID, "not-the-secret")
        .list_streams()
        .send()
        .await
        .expect_err("a wrong secret is refused");
    assert_eq!(error_code(&forged), "InvalidSignatureException");
    let unknown = client
        .describe_stream_summary()
        .stream_name("nowhere")
        .send()
        .await
        .expect_err("no such stream");
    assert_eq!(error_code(&unknown), "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_by_stream_resources_and_follows_new_ones() {
    let dirs = [
        TempDir::new("gateway-kube-a"),
        TempDir::new("gateway-kube-b"),
    ];
    let brokers: Vec<_> = dirs
        .iter()
        .map(|dir| BrokerBuilder::default().start(dir.path()))
        .collect();
    create_active_stream(
        &support::broker::client_for(&brokers[0].endpoint),
        "orders",
        1,
    )
    .await;
    create_active_stream(
        &support::broker::client_for(&brokers[1].endpoint),
        "clicks",
        1,
    )
    .await;

    let (mock, _) = MockKube::start();
    let api = mock.serve_http().await;
    let stream = |name: &str, endpoint: &str| {
        json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"shards": 1},
            "status": {"endpoint": endpoint}})
    };
    mock.insert(
        support::operator::STREAMS,
        stream("orders", &brokers[0].endpoint),
    );
    let dir = TempDir::new("gateway-kubeconfig");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster: {{server: \"http://{api}\"}}\nusers:\n- name: mock\n  user: {{token: test}}\ncontexts:\n- name: mock\n  context: {{cluster: mock, user: mock, namespace: shop}}\ncurrent-context: mock\n"
        ),
    )
    .expect("kubeconfig");
    let gateway = start_gateway(&[], Some(&kubeconfig));
    let client = support::broker::client_for(&gateway.endpoint);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "orders never routed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    put_and_read_back(&client, "orders").await;
    let unknown = client
        .describe_stream_summary()
        .stream_name("clicks")
        .send()
        .await
        .expect_err("clicks has no Stream resource yet");
    assert_eq!(error_code(&unknown), "ResourceNotFoundException");

    // A new Stream resource is routed once the gateway sees it.
    mock.insert(
        support::operator::STREAMS,
        stream("clicks", &brokers[1].endpoint),
    );
    while client
        .describe_stream_summary()
        .stream_name("clicks")
        .send()
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "clicks never routed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    put_and_read_back(&client, "clicks").await;
    let listed = client.list_streams().send().await.expect("ListStreams");
    assert_eq!(listed.stream_names(), ["clicks", "orders"]);
}

#[tokio::test]
async fn gateway_reaches_https_brokers_through_the_ca_it_is_given_and_serves_https_itself() {
    let pki_dir = TempDir::new("gateway-pki");
    let pki = support::pki::make(pki_dir.path(), "gateway");
    // The key the HTTPS test client signs with, so the broker verifies what the gateway
    // relayed over TLS.
    let keys = TempDir::new("gateway-tls-keys");
    let folder = keys.path().join("keys");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(
        folder.join("AKIDEXAMPLE"),
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )
    .expect("key");
    let dir = TempDir::new("gateway-tls-broker");
    let broker = BrokerBuilder::default()
        .arg("--credentials")
        .arg(folder.to_string_lossy())
        .arg("--tls-cert")
        .arg(pki.cert.display().to_string())
        .arg("--tls-key")
        .arg(pki.key.display().to_string())
        .start(dir.path());
    assert!(
        broker.endpoint.starts_with("https://"),
        "{}",
        broker.endpoint
    );
    create_active_stream(
        &support::broker::https_client(&broker.endpoint, &pki.ca_pem),
        "orders",
        1,
    )
    .await;
    let route = format!("orders={}", broker.endpoint);
    let tls_args = |ca: bool| {
        let mut args = vec![
            "--route".to_owned(),
            route.clone(),
            "--tls-cert".to_owned(),
            pki.cert.display().to_string(),
            "--tls-key".to_owned(),
            pki.key.display().to_string(),
        ];
        if ca {
            args.extend(["--broker-ca".to_owned(), pki.ca_pem.display().to_string()]);
        }
        args
    };
    let gateway = start_gateway(&tls_args(true), None);
    assert!(
        gateway.endpoint.starts_with("https://"),
        "{}",
        gateway.endpoint
    );
    let client = support::broker::https_client(&gateway.endpoint, &pki.ca_pem);
    put_and_read_back(&client, "orders").await;
    let listed = client.list_streams().send().await.expect("ListStreams");
    assert_eq!(listed.stream_names(), ["orders"]);

    // Without the CA, the broker's certificate is not trusted: a retryable error that says
    // why, not a hang or a plain-text attempt.
    let untrusting = start_gateway(&tls_args(false), None);
    let refused = support::broker::https_client(&untrusting.endpoint, &pki.ca_pem)
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect_err("the broker's certificate is not trusted");
    assert_eq!(error_code(&refused), "ServiceUnavailable");
    let message = format!("{refused:?}");
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test]
async fn gateway_serves_on_not_ready_for_its_shutdown_delay_and_a_second_signal_stops_it() {
    let dir = TempDir::new("gateway-stopping");
    let broker = BrokerBuilder::default().start(dir.path());
    create_active_stream(&broker.client(), "orders", 1).await;
    // A delay no busy machine can outlast before the test's own steps run.
    let mut gateway = start_gateway(
        &[
            "--route".into(),
            format!("orders={}", broker.endpoint),
            "--shutdown-delay-seconds".into(),
            "300".into(),
        ],
        None,
    );
    let readyz = format!("{}/readyz", gateway.metrics);
    assert_eq!(http_request("GET", &readyz).0, 200);
    let pid = gateway.child.id().to_string();
    let terminate = || {
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs")
    };
    terminate();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = http_request("GET", &readyz);
        if status == 503 {
            assert_eq!(body, "stopping\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still ready after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        http_request("GET", &format!("{}/healthz", gateway.metrics)).0,
        200
    );
    // A new client, so a new connection, still goes through.
    put_and_read_back(&signed_client(&gateway.endpoint, KEY_ID, SECRET), "orders").await;
    terminate();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = gateway.child.try_wait().expect("wait works") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway kept running after a second SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
