//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod apiserver;
pub mod broker;
pub mod mock_kube;
pub mod operator;
pub mod pki;

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
