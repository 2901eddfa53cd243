//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod apiserver;
pub mod broker;
pub mod delivery;
pub mod fidelity;
pub mod helm;
pub mod mock_kube;
pub mod operator;
pub mod pki;
pub mod power_cut;
pub mod prometheus;
pub mod recording_fs;
pub mod s3;

/// A loopback address nothing listens on: a port the system just handed out and took back
/// (for a server to bind, or for a peer that is down).
pub fn unused_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// `count` free loopback addresses on ports below the kernel's ephemeral range (which starts
/// at 32768), so no listener bound to port 0 (by this or a concurrent test) can take one
/// between now and when a process binds it, and a process restarted on one finds it free.
pub fn reserved_addresses(count: usize) -> Vec<std::net::SocketAddr> {
    let seed = std::process::id() as usize
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as usize);
    for attempt in 0..1000 {
        let base = 20_000 + (seed.wrapping_add(attempt * 7919) % 12_000);
        let addresses: Vec<std::net::SocketAddr> = (0..count)
            .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1], (base + i) as u16)))
            .collect();
        if addresses
            .iter()
            .all(|a| std::net::TcpListener::bind(a).is_ok())
        {
            return addresses;
        }
    }
    panic!("no {count} free loopback ports below 32768")
}

/// Polls `check` every 20 ms until it holds; fails naming `what` after a minute. For waiting
/// on an event the test cannot be told of, never for letting time pass.
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until no thread of this process has one of `names` (a store dropped without a
/// shutdown: its threads end on their own once they see it gone).
pub async fn threads_ended(names: &[&str]) {
    let running = || {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .any(|comm| names.contains(&comm.trim_end()))
    };
    eventually("the dropped store's threads to end", || !running()).await;
}

/// Every record stored in a shard's log, in order, as text; `None` for a shard the store does
/// not have.
pub fn stored_records(
    store: &brook::broker::shard::Store,
    shard: brook::broker::shard::ShardKey,
) -> Option<Vec<String>> {
    let limits = brook::broker::shard::ReadLimits {
        max_records: 1_000_000,
        max_bytes: u64::MAX,
        not_before_ms: 0,
    };
    let outcome = store.log(shard)?.read(0, limits).expect("read");
    let records = outcome
        .batches
        .iter()
        .flat_map(|batch| {
            brook::broker::shard::batch::records(&batch.body)
                .skip(batch.skip as usize)
                .take(batch.take as usize)
                .map(|r| {
                    String::from_utf8(r.expect("a well-formed record").data.to_vec())
                        .expect("utf-8")
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Some(records)
}
