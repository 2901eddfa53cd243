//! A stream spread over pods that talk TLS to each other: the internal port serves the API
//! port's certificate, and the pods call each other over TLS only.

use std::time::Duration;

use super::support::broker::{Broker, BrokerBuilder, TempDir};
use super::{
    KEYS, SHARDS, STREAM, incoming_records, numbers_by_key, put_all, read_all, record,
    served_everywhere,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_pods_with_tls_relay_to_each_other_over_tls_only() {
    let pki_dir = TempDir::new("cluster-tls-pki");
    let pki = super::support::pki::make(pki_dir.path(), "cluster");
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("cluster-tls-{i}")))
        .collect();
    let internal = super::support::reserved_addresses(3);
    let peers: Vec<String> = internal.iter().map(|a| format!("https://{a}")).collect();
    let with_tls = |ordinal: usize, peers: &str| {
        BrokerBuilder::default()
            .transition_ms(0)
            .arg("--tls-cert")
            .arg(pki.cert.display().to_string())
            .arg("--tls-key")
            .arg(pki.key.display().to_string())
            .arg("--cluster-ca")
            .arg(pki.ca_pem.display().to_string())
            .arg("--cluster-peers")
            .arg(peers)
            .arg("--pod-ordinal")
            .arg(ordinal.to_string())
            .arg("--cluster-listen")
            .arg(internal[ordinal].to_string())
    };
    let pods: Vec<Broker> = (0..3)
        .map(|i| with_tls(i, &peers.join(",")).start(dirs[i].path()))
        .collect();
    let https = |pod: &Broker| super::support::broker::https_client(&pod.endpoint, &pki.ca_pem);
    https(&pods[1])
        .create_stream()
        .stream_name(STREAM)
        .shard_count(SHARDS)
        .send()
        .await
        .expect("CreateStream through pod 1, relayed to pod 0 over TLS");
    served_everywhere(&pods, https).await;
    put_all(&https(&pods[1]), (0..KEYS).map(|k| record(k, 0)).collect()).await;
    for (ordinal, pod) in pods.iter().enumerate() {
        assert!(
            incoming_records(pod).values().any(|count| *count > 0.0),
            "pod {ordinal} stored records it was sent over TLS"
        );
    }
    let seen = numbers_by_key(&read_all(&https(&pods[2])).await);
    assert_eq!(seen.len(), KEYS);
    assert!(seen.values().all(|numbers| numbers == &[0]), "{seen:?}");

    // The internal port serves nothing in clear.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(internal[0]).expect("connects");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let _ = write!(
        plain,
        "GET /cluster/catalog HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "the catalog was served without TLS"
    );

    // A pod with TLS refuses to call its peers in clear.
    let clear: Vec<String> = internal.iter().map(|a| format!("http://{a}")).collect();
    let extra = TempDir::new("cluster-tls-clear");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_brook"))
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(extra.path())
        .args(["--tls-cert", &pki.cert.display().to_string()])
        .args(["--tls-key", &pki.key.display().to_string()])
        .args(["--cluster-peers", &clear.join(","), "--pod-ordinal", "1"])
        .args(["--cluster-listen", "127.0.0.1:0"])
        .output()
        .expect("brook runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("https://"), "{stderr}");
}
