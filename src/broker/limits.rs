//! Per-shard quotas as token buckets: writes 1 MiB/s and 1000 records/s, reads 2 MiB/s and
//! 5 GetRecords calls/s by default, each bucket holding one second of burst like Kinesis.
//!
//! Time is passed in, so the decisions are pure and testable.

use std::sync::Mutex;

/// The quotas of one shard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaSettings {
    /// Bytes per second written.
    pub write_bytes_per_second: u64,
    /// Records per second written.
    pub write_records_per_second: u64,
    /// Bytes per second read through GetRecords.
    pub read_bytes_per_second: u64,
    /// GetRecords calls per second.
    pub read_calls_per_second: u64,
    /// Whether requests beyond the quotas are refused.
    pub enforce: bool,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            write_bytes_per_second: 1024 * 1024,
            write_records_per_second: 1000,
            read_bytes_per_second: 2 * 1024 * 1024,
            read_calls_per_second: 5,
            enforce: true,
        }
    }
}

/// Per-stream quota overrides, as a `--stream-quotas` file (YAML or JSON) gives them:
/// stream name to the settings that differ from the broker's defaults.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaOverride {
    /// Bytes per second written.
    pub write_bytes_per_second: Option<u64>,
    /// Records per second written.
    pub write_records_per_second: Option<u64>,
    /// Bytes per second read through GetRecords.
    pub read_bytes_per_second: Option<u64>,
    /// GetRecords calls per second.
    pub read_calls_per_second: Option<u64>,
    /// Whether requests beyond the quotas are refused.
    pub enforce: Option<bool>,
}

impl QuotaOverride {
    /// The defaults with this override's fields applied.
    pub fn apply(&self, defaults: QuotaSettings) -> QuotaSettings {
        QuotaSettings {
            write_bytes_per_second: self
                .write_bytes_per_second
                .unwrap_or(defaults.write_bytes_per_second),
            write_records_per_second: self
                .write_records_per_second
                .unwrap_or(defaults.write_records_per_second),
            read_bytes_per_second: self
                .read_bytes_per_second
                .unwrap_or(defaults.read_bytes_per_second),
            read_calls_per_second: self
                .read_calls_per_second
                .unwrap_or(defaults.read_calls_per_second),
            enforce: self.enforce.unwrap_or(defaults.enforce),
        }
    }
}

/// Reads a `--stream-quotas` file: a map of stream name to [`QuotaOverride`].
pub fn load_overrides(
    path: &std::path::Path,
) -> Result<std::collections::HashMap<String, QuotaOverride>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A token bucket refilled continuously at `rate` tokens per second up to `rate` tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: u64, now_ms: u64) -> Self {
        Self {
            rate: rate_per_second as f64,
            tokens: rate_per_second as f64,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Tokens available at `now_ms`.
    pub fn available(&mut self, now_ms: u64) -> f64 {
        self.refill(now_ms);
        self.tokens
    }

    /// Takes `amount` tokens, allowing the balance to go negative (a debt later calls repay).
    pub fn charge(&mut self, amount: u64, now_ms: u64) {
        self.refill(now_ms);
        self.tokens -= amount as f64;
    }
}

/// A shard's four buckets, and the write demand it has seen (admitted or not), which the
/// ON_DEMAND autoscaler measures.
#[derive(Debug)]
pub struct ShardQuota {
    settings: QuotaSettings,
    buckets: Mutex<Buckets>,
    demanded_bytes: std::sync::atomic::AtomicU64,
    demanded_records: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Buckets {
    write_bytes: TokenBucket,
    write_records: TokenBucket,
    read_bytes: TokenBucket,
    read_calls: TokenBucket,
}

impl ShardQuota {
    /// Full buckets for `settings`.
    pub fn new(settings: QuotaSettings, now_ms: u64) -> Self {
        Self {
            settings,
            buckets: Mutex::new(Buckets {
                write_bytes: TokenBucket::new(settings.write_bytes_per_second, now_ms),
                write_records: TokenBucket::new(settings.write_records_per_second, now_ms),
                read_bytes: TokenBucket::new(settings.read_bytes_per_second, now_ms),
                read_calls: TokenBucket::new(settings.read_calls_per_second, now_ms),
            }),
            demanded_bytes: Default::default(),
            demanded_records: Default::default(),
        }
    }

    /// The quotas this shard enforces (or only measures).
    pub fn settings(&self) -> QuotaSettings {
        self.settings
    }

    /// Bytes and records ever offered to this shard for writing, admitted or not.
    pub fn demand(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.demanded_bytes.load(Relaxed),
            self.demanded_records.load(Relaxed),
        )
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a record of `bytes` for writing, or refuses it when the quota is spent.
    pub fn admit_write(&self, bytes: u64, now_ms: u64) -> bool {
        self.demanded_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.demanded_records
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.settings.enforce {
            return true;
        }
        let mut buckets = self.buckets();
        let fits = buckets.write_bytes.available(now_ms) >= bytes as f64
            && buckets.write_records.available(now_ms) >= 1.0;
        if fits {
            buckets.write_bytes.charge(bytes, now_ms);
            buckets.write_records.charge(1, now_ms);
        }
        fits
    }

    /// Admits one GetRecords call: a call token must be left and the byte budget not in debt.
    pub fn admit_read(&self, now_ms: u64) -> bool {
        if !self.settings.enforce {
            return true;
        }
        let mut buckets = self.buckets();
        let fits = buckets.read_calls.available(now_ms) >= 1.0
            && buckets.read_bytes.available(now_ms) > 0.0;
        if fits {
            buckets.read_calls.charge(1, now_ms);
        }
        fits
    }

    /// Charges the bytes a GetRecords call returned (Kinesis lets one call overdraw).
    pub fn charge_read(&self, bytes: u64, now_ms: u64) {
        if self.settings.enforce {
            self.buckets().read_bytes.charge(bytes, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_beyond_a_thousand_records_a_second_are_refused_then_refill() {
        let quota = ShardQuota::new(QuotaSettings::default(), 0);
        let admitted = (0..1500).filter(|_| quota.admit_write(10, 0)).count();
        assert_eq!(admitted, 1000);
        assert!(
            quota.admit_write(10, 1),
            "one millisecond refills one record"
        );
        assert!(!quota.admit_write(10, 1));
        let later = (0..1500).filter(|_| quota.admit_write(10, 1001)).count();
        assert_eq!(later, 1000, "the bucket holds at most one second");
    }

    #[test]
    fn writes_beyond_a_mebibyte_a_second_are_refused() {
        let quota = ShardQuota::new(QuotaSettings::default(), 0);
        assert!(quota.admit_write(1024 * 1024, 0));
        assert!(!quota.admit_write(1, 0));
        assert!(quota.admit_write(1024 * 1024 / 2, 500));
    }

    #[test]
    fn five_reads_a_second_and_a_large_read_blocks_until_repaid() {
        let quota = ShardQuota::new(QuotaSettings::default(), 0);
        assert_eq!((0..10).filter(|_| quota.admit_read(0)).count(), 5);
        let quota = ShardQuota::new(QuotaSettings::default(), 0);
        assert!(quota.admit_read(0));
        quota.charge_read(10 * 1024 * 1024, 0);
        assert!(
            !quota.admit_read(1000),
            "8 MiB of debt remain after one second"
        );
        assert!(quota.admit_read(5000), "repaid after five seconds");
    }

    #[test]
    fn a_stream_override_changes_only_what_it_names() {
        let parsed: std::collections::HashMap<String, QuotaOverride> = serde_yaml::from_str(
            "clicks: {writeRecordsPerSecond: 5000}\naudit: {enforce: false}\n",
        )
        .expect("yaml");
        let clicks = parsed["clicks"].apply(QuotaSettings::default());
        assert_eq!(clicks.write_records_per_second, 5000);
        assert_eq!(clicks.write_bytes_per_second, 1024 * 1024);
        assert!(!parsed["audit"].apply(QuotaSettings::default()).enforce);
        assert!(
            serde_yaml::from_str::<std::collections::HashMap<String, QuotaOverride>>(
                "x: {writeRecords: 1}"
            )
            .is_err()
        );
    }

    #[test]
    fn quotas_switched_off_admit_everything() {
        let settings = QuotaSettings {
            enforce: false,
            ..QuotaSettings::default()
        };
        let quota = ShardQuota::new(settings, 0);
        assert!((0..10_000).all(|_| quota.admit_write(1024 * 1024, 0)));
        assert!((0..100).all(|_| quota.admit_read(0)));
    }
}
