//! De-aggregation of KPL-aggregated records, against aggregates made by an independent
//! aggregator (the AWS `aws-kinesis-agg` Python library, which `make test` installs): every
//! user record comes back with its keys and data; a plain record is left alone; a damaged
//! aggregate is an error (for the error output), never a panic.

mod support;

use base64::Engine;
use brook::delivery::kpl::{KplError, MAGIC, UserRecord, deaggregate};
use serde_json::json;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Aggregates `records` (partition key, explicit hash key, data) with aws-kinesis-agg.
fn aggregate(records: &[(&str, Option<&str>, Vec<u8>)]) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = support::helm::python();
    let input: Vec<serde_json::Value> = records
        .iter()
        .map(|(key, hash, data)| json!({"key": key, "hash": hash, "data": BASE64.encode(data)}))
        .collect();
    let output = std::process::Command::new(&python)
        .arg(root.join("tests/python/kpl_aggregate.py"))
        .arg(serde_json::Value::Array(input).to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); `make test` installs aws-kinesis-agg",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    BASE64
        .decode(String::from_utf8_lossy(&output.stdout).trim())
        .expect("base64")
}

#[test]
fn delivery_deaggregates_what_the_aws_aggregator_made() {
    let binary: Vec<u8> = (0..=255).collect();
    let records = [
        ("user-1", None, b"{\"page\": \"/\"}".to_vec()),
        (
            "user-2",
            Some("170141183460469231731687303715884105728"),
            b"second".to_vec(),
        ),
        ("user-1", None, binary.clone()),
        ("user-3", None, Vec::new()),
        ("\u{e9}t\u{e9}", None, vec![b'x'; 5000]),
    ];
    let aggregated = aggregate(&records);
    assert!(aggregated.starts_with(&MAGIC));
    let found = deaggregate(&aggregated)
        .expect("a well-formed aggregate")
        .expect("an aggregate");
    let expected: Vec<UserRecord> = records
        .iter()
        .map(|(key, hash, data)| UserRecord {
            partition_key: (*key).to_owned(),
            explicit_hash_key: hash.map(str::to_owned),
            data: data.clone(),
        })
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn delivery_leaves_a_plain_record_alone() {
    assert_eq!(deaggregate(b"{\"page\": \"/\"}"), Ok(None));
    assert_eq!(deaggregate(b""), Ok(None));
}

#[test]
fn delivery_refuses_a_damaged_aggregate_without_panicking() {
    let aggregated = aggregate(&[
        ("k", None, b"payload".to_vec()),
        ("k2", None, b"more".to_vec()),
    ]);
    // One flipped bit in the protobuf: the digest no longer matches.
    let mut flipped = aggregated.clone();
    flipped[8] ^= 0x01;
    assert_eq!(deaggregate(&flipped), Err(KplError::Digest));
    // Cut short.
    assert_eq!(deaggregate(&aggregated[..10]), Err(KplError::TooShort(10)));
    assert_eq!(
        deaggregate(&aggregated[..aggregated.len() - 3]),
        Err(KplError::Digest)
    );
    // A consistent digest over a broken protobuf: every prefix of the message, re-digested.
    use md5::{Digest, Md5};
    let message = &aggregated[4..aggregated.len() - 16];
    for cut in 1..message.len() {
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&message[..cut]);
        forged.extend_from_slice(Md5::digest(&message[..cut]).as_slice());
        // Either a clean error or fewer records: never a panic, never invented data.
        if let Ok(Some(records)) = deaggregate(&forged) {
            assert!(records.len() <= 2);
        }
    }
    // A record pointing past the key table.
    let mut bad = vec![0x0A, 0x01, b'k', 0x1A, 0x05, 0x08, 0x07, 0x1A, 0x01, b'x'];
    let digest = Md5::digest(&bad).to_vec();
    bad.splice(0..0, MAGIC);
    bad.extend(digest);
    assert_eq!(
        deaggregate(&bad),
        Err(KplError::Index {
            table: "partition key",
            index: 7
        })
    );
}
