//! The manifests users apply: every example is admitted as the API server would admit it,
//! parses into Brook's types, passes the operator's validation and round-trips; every rule of
//! the schema refuses a manifest that breaks it, and so does the operator's validation.

mod support;

use std::path::{Path, PathBuf};

use brook::api::validation::{
    validate_consumer, validate_delivery_stream, validate_queue, validate_stream,
};
use brook::api::{Consumer, DeliveryStream, Queue, Stream};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};
use support::apiserver::admit;

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("examples/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("example is readable");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("example is YAML"))
        .collect()
}

fn example(kind: &str, name: &str) -> Value {
    example_files()
        .iter()
        .flat_map(|path| documents(path))
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no example {kind} {name}"))
}

fn crd_for(kind: &str) -> CustomResourceDefinition {
    match kind {
        "Stream" => Stream::crd(),
        "DeliveryStream" => DeliveryStream::crd(),
        "Consumer" => Consumer::crd(),
        "Queue" => Queue::crd(),
        other => panic!("no CRD for {other}"),
    }
}

/// What Brook's operator says about a manifest: `Err` when it cannot parse or validate it.
fn operator_verdict(manifest: &Value) -> Result<(), String> {
    let kind = manifest["kind"].as_str().unwrap_or_default();
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    let problems = match kind {
        "Stream" => {
            let stream: Stream =
                serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
            validate_stream(name, &stream.spec)
        }
        "DeliveryStream" => {
            let delivery: DeliveryStream =
                serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
            validate_delivery_stream(&delivery.spec)
        }
        "Consumer" => {
            let consumer: Consumer =
                serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
            validate_consumer(&consumer.spec)
        }
        "Queue" => {
            let queue: Queue =
                serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
            validate_queue(&queue.spec)
        }
        other => return Err(format!("unknown kind {other}")),
    };
    problems.map_err(|p| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[test]
fn every_example_is_admitted_parses_validates_and_round_trips() {
    let mut brook_documents = 0;
    for path in example_files() {
        for manifest in documents(&path) {
            let kind = manifest["kind"]
                .as_str()
                .expect("every document has a kind")
                .to_owned();
            if kind == "Secret" {
                let _: Secret = serde_json::from_value(manifest).expect("example Secret parses");
                continue;
            }
            let stored = admit(&crd_for(&kind), &manifest, None)
                .unwrap_or_else(|e| panic!("{} is refused: {e:#?}", path.display()));
            operator_verdict(&manifest)
                .unwrap_or_else(|e| panic!("{}: operator refuses it: {e}", path.display()));
            // What serde fills in must be exactly what the API server's schema defaults store.
            let reserialized = match kind.as_str() {
                "Stream" => serde_json::to_value(
                    serde_json::from_value::<Stream>(manifest.clone()).expect("parses"),
                ),
                "DeliveryStream" => serde_json::to_value(
                    serde_json::from_value::<DeliveryStream>(manifest.clone()).expect("parses"),
                ),
                "Queue" => serde_json::to_value(
                    serde_json::from_value::<Queue>(manifest.clone()).expect("parses"),
                ),
                _ => serde_json::to_value(
                    serde_json::from_value::<Consumer>(manifest.clone()).expect("parses"),
                ),
            }
            .expect("serializes");
            assert_eq!(
                reserialized["spec"],
                stored["spec"],
                "{}: serde defaults and schema defaults disagree",
                path.display()
            );
            brook_documents += 1;
        }
    }
    assert_eq!(
        brook_documents, 7,
        "three Streams (one autoscaled, one ON_DEMAND), a Consumer, a Queue, two DeliveryStreams"
    );
}

#[test]
fn an_empty_stream_spec_gets_the_kinesis_defaults() {
    let manifest = json!({"apiVersion": "brook.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "minimal"}, "spec": {}});
    let stored = admit(&Stream::crd(), &manifest, None).expect("an empty spec is valid");
    let spec = &stored["spec"];
    assert_eq!(spec["shards"], 1);
    assert_eq!(spec["retentionHours"], 24);
    assert_eq!(spec["maxRecordSizeKiB"], 1024);
    assert_eq!(spec["limits"]["writeBytesPerSecond"], 1_048_576);
    assert_eq!(spec["limits"]["writeRecordsPerSecond"], 1000);
    assert_eq!(spec["limits"]["readBytesPerSecond"], 2_097_152);
    assert_eq!(spec["limits"]["readCallsPerSecond"], 5);
    assert_eq!(spec["durability"], "Fsync");
    assert_eq!(spec["deletionPolicy"], "Delete");
    assert_eq!(spec["brokers"]["storage"]["size"], "10Gi");
    let parsed: Stream = serde_json::from_value(manifest).expect("parses");
    assert_eq!(
        serde_json::to_value(&parsed).expect("serializes")["spec"],
        stored["spec"]
    );
}

#[test]
fn delivery_buffering_defaults_are_firehoses() {
    let mut manifest = example("DeliveryStream", "clicks-archive");
    remove(&mut manifest, "/spec/buffering");
    let stored = admit(&DeliveryStream::crd(), &manifest, None).expect("valid without buffering");
    assert_eq!(
        stored["spec"]["buffering"],
        json!({"sizeMiB": 5, "intervalSeconds": 300})
    );
    assert_eq!(stored["spec"]["destination"]["s3"]["compression"], "GZIP");
}

fn set(manifest: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let target = manifest
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} is not an object"));
    target.insert(key.to_owned(), value);
}

fn remove(manifest: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    manifest
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|object| object.remove(key))
        .unwrap_or_else(|| panic!("{pointer} is absent"));
}

/// One way to break a manifest and the field and words of the refusal a user sees; the cases
/// live in `tests/manifests/breakages.yaml`, which the e2e also sends to a real API server.
#[derive(serde::Deserialize)]
struct Breakage {
    kind: String,
    name: String,
    /// A JSON pointer to set to `value`.
    #[serde(default)]
    set: Option<String>,
    #[serde(default)]
    value: Value,
    /// A JSON pointer to remove.
    #[serde(default)]
    remove: Option<String>,
    /// The field the refusal names (empty for a rule on the whole object).
    field: String,
    /// Words of the refusal.
    message: String,
}

fn breakages() -> Vec<Breakage> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/breakages.yaml");
    let text = std::fs::read_to_string(&path).expect("the breakage cases are readable");
    serde_yaml::from_str(&text).expect("the breakage cases parse")
}

impl Breakage {
    /// The example this case breaks, broken.
    fn manifest(&self) -> Value {
        let mut manifest = example(&self.kind, &self.name);
        match (&self.set, &self.remove) {
            (Some(pointer), None) => set(&mut manifest, pointer, self.value.clone()),
            (None, Some(pointer)) => remove(&mut manifest, pointer),
            _ => panic!("a case sets or removes exactly one pointer"),
        }
        manifest
    }
}

#[test]
fn every_schema_rule_refuses_a_manifest_that_breaks_it_and_so_does_the_operator() {
    let cases = breakages();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (i, breakage) in cases.iter().enumerate() {
        let manifest = breakage.manifest();
        let refusal = admit(&crd_for(&breakage.kind), &manifest, None)
            .err()
            .unwrap_or_else(|| panic!("case {i} ({}) was admitted", breakage.message));
        assert!(
            refusal.iter().any(|line| line.contains(&breakage.message))
                && refusal.iter().any(|line| line.contains(&breakage.field)),
            "case {i}: expected {:?} naming {:?} among {refusal:#?}",
            breakage.message,
            breakage.field
        );
        // Unknown fields are pruned, not refused, by a server without strict field validation;
        // the operator then never sees them, so there is nothing for it to refuse.
        if breakage.message.contains("unknown field") {
            continue;
        }
        assert!(
            operator_verdict(&manifest).is_err(),
            "case {i}: the operator accepts what the schema refuses ({})",
            breakage.message
        );
    }
}

#[test]
fn a_consumer_cannot_move_to_another_stream_or_change_its_name() {
    let old = example("Consumer", "clicks-dashboard");
    let stored = admit(&Consumer::crd(), &old, None).expect("created");

    let same = admit(&Consumer::crd(), &old, Some(&stored));
    assert!(same.is_ok(), "an unchanged update is refused: {same:?}");

    let mut moved = old.clone();
    set(&mut moved, "/spec/streamName", json!("orders"));
    let refusal =
        admit(&Consumer::crd(), &moved, Some(&stored)).expect_err("stream change refused");
    assert!(
        refusal
            .iter()
            .any(|l| l.contains("streamName is immutable")),
        "{refusal:?}"
    );

    let mut renamed = old.clone();
    set(&mut renamed, "/spec/consumerName", json!("dashboard-v2"));
    let refusal = admit(&Consumer::crd(), &renamed, Some(&stored)).expect_err("rename refused");
    assert!(
        refusal
            .iter()
            .any(|l| l.contains("consumerName is immutable")),
        "{refusal:?}"
    );
}

#[test]
fn a_stream_can_be_rescaled_and_its_retention_changed_in_place() {
    let old = example("Stream", "clicks");
    let stored = admit(&Stream::crd(), &old, None).expect("created");
    let mut changed = old.clone();
    set(&mut changed, "/spec/shards", json!(8));
    set(&mut changed, "/spec/retentionHours", json!(168));
    let updated = admit(&Stream::crd(), &changed, Some(&stored)).expect("update admitted");
    assert_eq!(updated["spec"]["shards"], 8);
    assert_eq!(updated["spec"]["retentionHours"], 168);
}
