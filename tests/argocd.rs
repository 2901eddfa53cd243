//! Argo CD's health check of Brook's resources (`deploy/argocd/health.lua`), run by a real Lua
//! interpreter (Debian's `lua5.4`, which `make test` installs) on objects whose status the
//! operator's own status functions wrote: new, progressing, ready, degraded, stale
//! `observedGeneration`, being deleted.

use std::io::Write;
use std::process::{Command, Stdio};

use brook::api::{ConsumerStatus, StreamStatus};
use brook::operator::argocd::{HEALTH_LUA, KINDS, health_key};
use brook::operator::status::{
    ConsumerPhase, DeliveryPhase, QueuePhase, StreamFacts, StreamPhase, WorkerFacts,
    consumer_status, delivery_status, queue_status, stream_status,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

/// `value` as a Lua table constructor (JSON null becomes nil, as Argo CD's conversion does).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{k:?}] = {}", lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Argo CD's verdict on `object`: (status, message).
fn health(object: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal function check()\n{HEALTH_LUA}\nend\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_literal(object)
    );
    let mut lua = Command::new("lua5.4")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run lua5.4 ({e}); `make test` installs it"));
    lua.stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("program written");
    let output = lua.wait_with_output().expect("lua5.4 ran");
    assert!(
        output.status.success(),
        "the health check failed on {object}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_owned(), message.to_owned())
}

fn now() -> Time {
    Time("2026-11-30T10:00:00Z".parse().expect("time"))
}

fn facts() -> StreamFacts {
    StreamFacts {
        arn: Some("arn:aws:kinesis:us-east-1:000000000000:stream/clicks".to_owned()),
        open_shards: Some(4),
        endpoint: "http://clicks.shop.svc:4567".to_owned(),
        selector: "brook.dev/stream=clicks".to_owned(),
        autoscaling: None,
    }
}

fn stream(generation: i64, status: Option<&StreamStatus>) -> Value {
    json!({
        "apiVersion": "brook.dev/v1alpha1",
        "kind": "Stream",
        "metadata": {"name": "clicks", "namespace": "shop", "generation": generation},
        "spec": {"shards": 4},
        "status": status.map(|s| serde_json::to_value(s).expect("status")),
    })
}

fn stream_in(phase: &StreamPhase, generation: i64) -> Value {
    let status = stream_status(None, Some(generation), phase, &facts(), now());
    stream(generation, Some(&status))
}

#[test]
fn a_new_stream_progresses_until_the_operator_reports_it_ready() {
    let (status, message) = health(&stream(1, None));
    assert_eq!(status, "Progressing");
    assert!(
        message.contains("Waiting for the Brook operator"),
        "{message}"
    );

    let waiting = StreamPhase::WaitingForBrokers {
        ready: 1,
        declared: 3,
    };
    let (status, message) = health(&stream_in(&waiting, 1));
    assert_eq!(status, "Progressing");
    assert!(message.contains('1') && message.contains('3'), "{message}");

    let resharding = StreamPhase::Changing {
        reason: "Resharding",
        message: "resharding from 4 to 8 open shards".to_owned(),
    };
    let (status, message) = health(&stream_in(&resharding, 2));
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("Progressing", "resharding from 4 to 8 open shards")
    );

    let (status, _) = health(&stream_in(&StreamPhase::Serving, 2));
    assert_eq!(status, "Healthy");
}

#[test]
fn a_stream_the_operator_reports_degraded_is_degraded_with_its_reason() {
    for phase in [
        StreamPhase::InvalidSpec("brokers.replicas must be at least 1".to_owned()),
        StreamPhase::BrokersUnreachable("connection refused".to_owned()),
        StreamPhase::ChangeRefused {
            code: "LimitExceededException".to_owned(),
            message: "the shard limit is 10".to_owned(),
        },
    ] {
        let (status, message) = health(&stream_in(&phase, 3));
        assert_eq!(status, "Degraded", "{phase:?}");
        assert!(!message.is_empty(), "{phase:?}");
    }
}

#[test]
fn a_status_written_for_an_older_generation_is_not_trusted() {
    // Ready for generation 1, but the spec has moved on to generation 2 (a user just scaled).
    let status = stream_status(None, Some(1), &StreamPhase::Serving, &facts(), now());
    let (verdict, message) = health(&stream(2, Some(&status)));
    assert_eq!(verdict, "Progressing");
    assert!(message.contains("generation 2"), "{message}");
    // A status from before observedGeneration was written at all is as stale.
    let mut object = stream(1, Some(&status));
    object["status"]["observedGeneration"] = Value::Null;
    assert_eq!(health(&object).0, "Progressing");
}

#[test]
fn a_resource_being_deleted_is_progressing_whatever_its_status_said() {
    let mut object = stream_in(&StreamPhase::Serving, 1);
    object["metadata"]["deletionTimestamp"] = json!("2026-11-30T10:05:00Z");
    object["metadata"]["finalizers"] = json!(["brook.dev/stream"]);
    let (status, message) = health(&object);
    assert_eq!(status, "Progressing");
    assert!(message.contains("being deleted"), "{message}");
}

#[test]
fn consumers_queues_and_delivery_streams_are_judged_by_the_same_conditions() {
    let consumer = |status: &ConsumerStatus| {
        json!({
            "apiVersion": "brook.dev/v1alpha1", "kind": "Consumer",
            "metadata": {"name": "reader", "namespace": "shop", "generation": 1},
            "spec": {"streamName": "clicks"},
            "status": serde_json::to_value(status).expect("status"),
        })
    };
    let waiting = ConsumerPhase::WaitingForStream {
        reason: "StreamNotReady",
        message: "stream clicks is not serving yet".to_owned(),
    };
    let status = consumer_status(None, Some(1), &waiting, now());
    assert_eq!(health(&consumer(&status)).0, "Progressing");
    let active = ConsumerPhase::Registered {
        arn: "arn:aws:kinesis:us-east-1:000000000000:stream/clicks/consumer/reader:1".to_owned(),
        state: brook::api::consumer::ConsumerState::Active,
    };
    let status = consumer_status(None, Some(1), &active, now());
    assert_eq!(health(&consumer(&status)).0, "Healthy");
    let refused = ConsumerPhase::RegistrationRefused("LimitExceededException".to_owned());
    let status = consumer_status(None, Some(1), &refused, now());
    assert_eq!(health(&consumer(&status)).0, "Degraded");

    let queue = |status: &brook::api::QueueStatus| {
        json!({
            "apiVersion": "brook.dev/v1alpha1", "kind": "Queue",
            "metadata": {"name": "work", "namespace": "shop", "generation": 1},
            "spec": {"streamName": "clicks"},
            "status": serde_json::to_value(status).expect("status"),
        })
    };
    let creating = QueuePhase::Created {
        arn: "arn:aws:kinesis:us-east-1:000000000000:queue/clicks/abc".to_owned(),
        state: brook::api::queue::QueueState::Creating,
    };
    let status = queue_status(None, Some(1), &creating, now());
    assert_eq!(health(&queue(&status)).0, "Progressing");
    let active = QueuePhase::Created {
        arn: "arn:aws:kinesis:us-east-1:000000000000:queue/clicks/abc".to_owned(),
        state: brook::api::queue::QueueState::Active,
    };
    let status = queue_status(None, Some(1), &active, now());
    assert_eq!(health(&queue(&status)).0, "Healthy");
    let refused = QueuePhase::Refused("InvalidArgumentException: PROVISIONED".to_owned());
    let status = queue_status(None, Some(1), &refused, now());
    let (health_status, message) = health(&queue(&status));
    assert_eq!(health_status, "Degraded");
    assert!(message.contains("PROVISIONED"), "{message}");

    // No controller has written a DeliveryStream's status yet: it waits, never looks healthy.
    let delivery = json!({
        "apiVersion": "brook.dev/v1alpha1", "kind": "DeliveryStream",
        "metadata": {"name": "to-s3", "namespace": "shop", "generation": 1},
        "spec": {},
    });
    let (status, message) = health(&delivery);
    assert_eq!(status, "Progressing");
    assert!(message.contains("DeliveryStream"), "{message}");

    // Then the statuses the DeliveryStream controller writes.
    let delivery_in = |phase: &DeliveryPhase, behind: bool| {
        let status = delivery_status(None, Some(1), phase, None, behind, now());
        let mut object = delivery.clone();
        object["status"] = serde_json::to_value(status).expect("status");
        health(&object)
    };
    let waiting = DeliveryPhase::WaitingForStream {
        reason: "StreamNotReady",
        message: "waiting for Stream clicks to be Ready".to_owned(),
    };
    assert_eq!(delivery_in(&waiting, false).0, "Progressing");
    assert_eq!(
        delivery_in(&DeliveryPhase::WaitingForWorker, false).0,
        "Progressing"
    );
    let facts = WorkerFacts {
        freshness_seconds: 2,
        ..WorkerFacts::default()
    };
    assert_eq!(
        delivery_in(&DeliveryPhase::Delivering(Some(facts.clone())), false).0,
        "Healthy"
    );
    let (status, message) = delivery_in(&DeliveryPhase::Delivering(Some(facts)), true);
    assert_eq!(
        status, "Degraded",
        "a delivery that falls behind is Degraded while it runs"
    );
    assert!(message.contains("undelivered"), "{message}");
    let invalid = DeliveryPhase::InvalidSpec("prefix: unknown expression".to_owned());
    assert_eq!(delivery_in(&invalid, false).0, "Degraded");
}

#[test]
fn the_argocd_configuration_files_carry_the_check_for_every_kind() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config_map: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/argocd/argocd-cm.yaml")).expect("argocd-cm"),
    )
    .expect("YAML");
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/argocd/values.yaml")).expect("values"),
    )
    .expect("YAML");
    assert_eq!(config_map["metadata"]["name"], "argocd-cm");
    for kind in KINDS {
        let key = health_key(kind);
        assert_eq!(config_map["data"][&key], HEALTH_LUA, "{key}");
        assert_eq!(values["configs"]["cm"][&key], HEALTH_LUA, "{key}");
    }
    assert_eq!(
        health_key("Stream"),
        "resource.customizations.health.brook.dev_Stream"
    );
}
