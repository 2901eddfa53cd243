//! Defects a review found behind Brook's promises, each held by a test that failed before its
//! fix: a reshard whose catalog cannot be saved leaves the stream as it was; a PutRecords
//! routed again across a reshard is charged against the quotas once.
//! The brokers run in this process (`brook::broker::open`) over a file layer that can fail.

mod support;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brook::broker::limits::QuotaSettings;
use brook::broker::ops::{Answer, Encoding, dispatch};
use brook::broker::protocol::body::Body;
use brook::broker::protocol::{ErrorKind, Operation};
use brook::broker::shard::fs::{FileSystem, LogFile, ReadFile, RealFs};
use brook::broker::state::Broker;
use brook::broker::{BrokerOptions, on_demand::OnDemandSettings, open};
use serde_json::{Value, json};
use support::broker::TempDir;

/// The real file layer, with catalog saves that fail while `fail_catalog` is set, or wait
/// while held.
#[derive(Default)]
struct CatalogGateFs {
    fail_catalog: AtomicBool,
    held: std::sync::Mutex<bool>,
    released: std::sync::Condvar,
    /// A catalog save is waiting on the hold.
    waiting: AtomicBool,
}

impl CatalogGateFs {
    fn hold(&self, hold: bool) {
        *self.held.lock().expect("lock") = hold;
        self.released.notify_all();
    }
}

/// Releases the hold when the test ends, passed or not, so no thread stays blocked.
struct Release(Arc<CatalogGateFs>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.hold(false);
    }
}

impl FileSystem for CatalogGateFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        RealFs.open_append(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        RealFs.open_read(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if path.ends_with("catalog.json") {
            if self.fail_catalog.load(Ordering::SeqCst) {
                return Err(io::Error::other("injected: the volume is full"));
            }
            let mut held = self.held.lock().expect("lock");
            while *held {
                self.waiting.store(true, Ordering::SeqCst);
                held = self.released.wait(held).expect("wait");
            }
        }
        RealFs.write_atomic(path, bytes)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
}

fn options(data_dir: &Path, quotas: QuotaSettings) -> BrokerOptions {
    BrokerOptions {
        cluster: None,
        listen: "127.0.0.1:0".parse().expect("address"),
        metrics_listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: data_dir.to_owned(),
        fsync: true,
        region: "us-east-1".to_owned(),
        account: "000000000000".to_owned(),
        quotas,
        transition_ms: 0,
        shard_limit: 100,
        checkpoint_interval: Duration::from_secs(3600),
        test_clock: true,
        shutdown_delay: std::time::Duration::ZERO,
        crash_before_reshard_save: false,
        crash_before_move_named: false,
        channel_min_freshness_s: 300,
        credentials: None,
        tls: None,
        on_demand: OnDemandSettings {
            interval: Duration::from_secs(3600),
            scale_up_window: Duration::from_secs(60),
            scale_down_window: Duration::from_secs(300),
            target_utilization_percent: 70,
        },
        stream_quotas: None,
        subscription_lifetime: Duration::from_secs(300),
        managed_by: None,
        channels: false,
        admin_credentials: None,
        s3_endpoint: None,
        tables_endpoint: None,
        glue_endpoint: None,
        crash_after_table_commit: false,
    }
}

fn unlimited() -> QuotaSettings {
    QuotaSettings {
        write_bytes_per_second: 1 << 20,
        write_records_per_second: 1000,
        read_bytes_per_second: 2 << 20,
        read_calls_per_second: 5,
        enforce: false,
    }
}

async fn call(broker: &Arc<Broker>, operation: Operation, body: Value) -> Result<Value, ErrorKind> {
    let body = serde_json::to_vec(&body).expect("json");
    dispatch(broker, operation, Body::Json(&body), Encoding::Json)
        .await
        .map(|answer| match answer {
            Answer::Json(json) => serde_json::from_slice(&json).unwrap_or(Value::Null),
            Answer::Cbor(_) => panic!("a JSON request answered in CBOR"),
        })
        .map_err(|error| error.kind)
}

/// A broker in this process over `fs`, with the one-shard stream `orders`.
async fn broker_with_orders(
    dir: &Path,
    quotas: QuotaSettings,
    fs: Arc<CatalogGateFs>,
) -> Arc<Broker> {
    let broker = Arc::new(open(&options(dir, quotas), fs).expect("open"));
    call(
        &broker,
        Operation::CreateStream,
        json!({"StreamName": "orders", "ShardCount": 1}),
    )
    .await
    .expect("CreateStream");
    broker
}

async fn open_shards(broker: &Arc<Broker>, stream: &str) -> Vec<String> {
    let listed = call(
        broker,
        Operation::ListShards,
        json!({"StreamName": stream, "ShardFilter": {"Type": "AT_LATEST"}}),
    )
    .await
    .expect("ListShards");
    listed["Shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["ShardId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_reshard_whose_catalog_save_fails_leaves_the_stream_writable() {
    let dir = TempDir::new("hardening-reshard");
    let fs = Arc::new(CatalogGateFs::default());
    let broker = broker_with_orders(dir.path(), unlimited(), fs.clone()).await;
    let put = json!({"StreamName": "orders", "PartitionKey": "k", "Data": "b25l"});
    call(&broker, Operation::PutRecord, put.clone())
        .await
        .expect("a put before the reshard");

    fs.fail_catalog.store(true, Ordering::SeqCst);
    let split = json!({"StreamName": "orders", "ShardToSplit": "shardId-000000000000",
        "NewStartingHashKey": (u128::MAX / 2).to_string()});
    assert_eq!(
        call(&broker, Operation::SplitShard, split.clone()).await,
        Err(ErrorKind::InternalFailure),
        "the catalog could not be saved"
    );
    fs.fail_catalog.store(false, Ordering::SeqCst);
    // The stream is as it was: its one shard open and taking writes.
    assert_eq!(
        open_shards(&broker, "orders").await,
        ["shardId-000000000000"]
    );
    let landed = call(&broker, Operation::PutRecord, put.clone())
        .await
        .expect("a put after the failed reshard");
    assert_eq!(landed["ShardId"], "shardId-000000000000");

    // The same reshard, tried again, completes.
    call(&broker, Operation::SplitShard, split)
        .await
        .expect("SplitShard");
    assert_eq!(
        open_shards(&broker, "orders").await,
        ["shardId-000000000001", "shardId-000000000002"]
    );
    let landed = call(&broker, Operation::PutRecord, put)
        .await
        .expect("a put into a child");
    assert_ne!(landed["ShardId"], "shardId-000000000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hardening_a_put_records_routed_again_across_a_reshard_is_charged_once() {
    let dir = TempDir::new("hardening-charge");
    let fs = Arc::new(CatalogGateFs::default());
    let quotas = QuotaSettings {
        write_bytes_per_second: 1 << 20,
        write_records_per_second: 10,
        read_bytes_per_second: 2 << 20,
        read_calls_per_second: 5,
        enforce: true,
    };
    let broker = broker_with_orders(dir.path(), quotas, fs.clone()).await;

    // The split closes the parent in the writer, then waits on its catalog save: a put that
    // arrives now is refused by the closed parent and routed again until the children show.
    fs.hold(true);
    let _release = Release(fs.clone());
    let splitting = tokio::spawn({
        let broker = broker.clone();
        async move {
            call(
                &broker,
                Operation::SplitShard,
                json!({"StreamName": "orders", "ShardToSplit": "shardId-000000000000",
                    "NewStartingHashKey": (u128::MAX / 2).to_string()}),
            )
            .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !fs.waiting.load(Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the split never saved"
        );
        tokio::task::yield_now().await;
    }
    let records: Vec<Value> = (0..5)
        .map(|i| json!({"PartitionKey": format!("k{i}"), "Data": "eA=="}))
        .collect();
    let putting = tokio::spawn({
        let broker = broker.clone();
        async move {
            call(
                &broker,
                Operation::PutRecords,
                json!({"StreamName": "orders", "Records": records}),
            )
            .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while broker.metrics.reroutes() < 3 {
        assert!(
            std::time::Instant::now() < deadline && !putting.is_finished(),
            "the put was never routed again three times"
        );
        tokio::task::yield_now().await;
    }
    fs.hold(false);
    splitting.await.expect("task").expect("SplitShard");
    let put = putting.await.expect("task").expect("PutRecords");
    // Five records against a quota of ten a second: admitted once, however often routed.
    assert_eq!(put["FailedRecordCount"], 0, "{put}");
    for record in put["Records"].as_array().expect("records") {
        assert_ne!(record["ShardId"], "shardId-000000000000", "{record}");
    }
}
