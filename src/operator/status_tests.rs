use k8s_openapi::jiff::Timestamp;

use super::*;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("valid time"))
}

fn facts() -> StreamFacts {
    StreamFacts {
        arn: Some("arn:aws:kinesis:us-east-1:000000000000:stream/orders".to_owned()),
        open_shards: Some(4),
        endpoint: "http://orders.shop.svc:4567".to_owned(),
        selector: "app=brook".to_owned(),
        autoscaling: None,
    }
}

fn condition_of<'a>(
    status: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (&'a str, &'a str) {
    let found = status
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (found.status.as_str(), found.reason.as_str())
}

#[test]
fn shard_changes_step_by_at_most_double_or_half() {
    let cases = [
        (1, 1, 1),
        (1, 4, 2),
        (2, 4, 4),
        (4, 3, 3),
        (10, 1, 5),
        (5, 1, 3),
        (3, 1, 2),
        (2, 1, 1),
        (3, 100, 6),
    ];
    for (open, desired, next) in cases {
        assert_eq!(next_shard_step(open, desired), next, "{open} -> {desired}");
    }
}

#[test]
fn a_serving_stream_is_ready_and_neither_progressing_nor_degraded() {
    let status = stream_status(None, Some(3), &StreamPhase::Serving, &facts(), at(100));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(
        condition_of(&status.conditions, "Ready"),
        ("True", "Serving")
    );
    assert_eq!(
        condition_of(&status.conditions, "Progressing"),
        ("False", "Reconciled")
    );
    assert_eq!(
        condition_of(&status.conditions, "Degraded"),
        ("False", "AsExpected")
    );
    assert_eq!(status.open_shards, Some(4));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://orders.shop.svc:4567")
    );
    assert_eq!(
        status.stream_arn.as_deref(),
        Some("arn:aws:kinesis:us-east-1:000000000000:stream/orders")
    );
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert!(
        ready.is_some_and(|c| c.message.contains("4 open shards")),
        "{ready:?}"
    );
}

#[test]
fn the_same_situation_twice_gives_the_same_status_so_the_write_is_skipped() {
    let first = stream_status(None, Some(1), &StreamPhase::Serving, &facts(), at(100));
    let second = stream_status(
        Some(&first),
        Some(1),
        &StreamPhase::Serving,
        &facts(),
        at(500),
    );
    assert_eq!(first, second);
}

#[test]
fn waiting_for_brokers_is_progressing_and_keeps_what_was_known() {
    let serving = stream_status(None, Some(1), &StreamPhase::Serving, &facts(), at(100));
    let phase = StreamPhase::WaitingForBrokers {
        ready: 0,
        declared: 3,
    };
    let unknown = StreamFacts {
        arn: None,
        open_shards: None,
        ..facts()
    };
    let status = stream_status(Some(&serving), Some(2), &phase, &unknown, at(200));
    assert_eq!(
        condition_of(&status.conditions, "Progressing"),
        ("True", "WaitingForBrokers")
    );
    assert_eq!(
        condition_of(&status.conditions, "Ready"),
        ("False", "WaitingForBrokers")
    );
    assert_eq!(status.open_shards, Some(4), "last known count kept");
    assert!(status.stream_arn.is_some());
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert_eq!(
        ready.map(|c| c.last_transition_time.clone()),
        Some(at(200)),
        "Ready flipped"
    );
    assert!(ready.is_some_and(|c| c.message == "0 of 3 broker pods are ready"));
}

#[test]
fn unreachable_brokers_and_refused_changes_are_degraded_with_the_cause() {
    let unreachable = stream_status(
        None,
        Some(1),
        &StreamPhase::BrokersUnreachable("connection refused".to_owned()),
        &facts(),
        at(1),
    );
    assert_eq!(
        condition_of(&unreachable.conditions, "Degraded"),
        ("True", "BrokersUnreachable")
    );
    assert_eq!(
        condition_of(&unreachable.conditions, "Ready"),
        ("False", "BrokersUnreachable")
    );
    let refused = stream_status(
        None,
        Some(1),
        &StreamPhase::ChangeRefused {
            code: "LimitExceededException".to_owned(),
            message: "10 reshards a day".to_owned(),
        },
        &facts(),
        at(1),
    );
    assert_eq!(
        condition_of(&refused.conditions, "Degraded"),
        ("True", "LimitExceeded")
    );
    assert_eq!(
        condition_of(&refused.conditions, "Ready"),
        ("True", "ServingWithDrift")
    );
    let invalid = stream_status(
        None,
        Some(1),
        &StreamPhase::InvalidSpec("minShards exceeds maxShards".to_owned()),
        &facts(),
        at(1),
    );
    assert_eq!(
        condition_of(&invalid.conditions, "Degraded"),
        ("True", "InvalidSpec")
    );
}

#[test]
fn consumer_status_follows_registration() {
    let waiting = consumer_status(
        None,
        Some(1),
        &ConsumerPhase::WaitingForStream {
            reason: "StreamNotFound",
            message: "no Stream orders in shop".to_owned(),
        },
        at(1),
    );
    assert_eq!(
        condition_of(&waiting.conditions, "Ready"),
        ("False", "StreamNotFound")
    );
    assert_eq!(waiting.consumer_arn, None);
    let active = consumer_status(
        Some(&waiting),
        Some(1),
        &ConsumerPhase::Registered {
            arn: "arn:consumer".to_owned(),
            state: ConsumerState::Active,
        },
        at(2),
    );
    assert_eq!(
        condition_of(&active.conditions, "Ready"),
        ("True", "Active")
    );
    assert_eq!(active.consumer_arn.as_deref(), Some("arn:consumer"));
    assert_eq!(active.consumer_status, Some(ConsumerState::Active));
    let again = consumer_status(
        Some(&active),
        Some(1),
        &ConsumerPhase::Registered {
            arn: "arn:consumer".to_owned(),
            state: ConsumerState::Active,
        },
        at(3),
    );
    assert_eq!(active, again);
}

#[test]
fn queue_status_follows_creation_and_keeps_the_arn_through_a_refusal() {
    let creating = queue_status(
        None,
        Some(1),
        &QueuePhase::Created {
            arn: "arn:queue".to_owned(),
            state: QueueState::Creating,
        },
        at(1),
    );
    assert_eq!(
        condition_of(&creating.conditions, "Ready"),
        ("False", "Creating")
    );
    let active = queue_status(
        Some(&creating),
        Some(1),
        &QueuePhase::Created {
            arn: "arn:queue".to_owned(),
            state: QueueState::Active,
        },
        at(2),
    );
    assert_eq!(
        condition_of(&active.conditions, "Ready"),
        ("True", "Active")
    );
    assert_eq!(active.queue_status, Some(QueueState::Active));
    let refused = queue_status(
        Some(&active),
        Some(2),
        &QueuePhase::Refused("InvalidArgumentException: PROVISIONED".to_owned()),
        at(3),
    );
    assert_eq!(
        condition_of(&refused.conditions, "Degraded"),
        ("True", "QueueRefused")
    );
    assert_eq!(refused.queue_arn.as_deref(), Some("arn:queue"));
    assert_eq!(refused.observed_generation, Some(2));
}

#[test]
fn delivery_status_reports_the_worker_and_a_delivery_that_falls_behind() {
    let facts = WorkerFacts {
        delivered_records: 10,
        delivered_bytes: 100,
        failed_records: 0,
        freshness_seconds: 4,
        last_delivery_seconds: Some(1_796_000_000),
    };
    let waiting = delivery_status(
        None,
        Some(2),
        &DeliveryPhase::WaitingForWorker,
        None,
        false,
        at(1),
    );
    assert_eq!(
        condition_of(&waiting.conditions, "Ready"),
        ("False", "WaitingForWorker")
    );
    assert_eq!(
        condition_of(&waiting.conditions, "Progressing"),
        ("True", "WaitingForWorker")
    );
    let running = delivery_status(
        Some(&waiting),
        Some(2),
        &DeliveryPhase::Delivering(Some(facts.clone())),
        Some("http://x-delivery.shop.svc:4573".into()),
        is_behind(&facts, 60, 300),
        at(2),
    );
    assert_eq!(
        condition_of(&running.conditions, "Ready"),
        ("True", "Delivering")
    );
    assert_eq!(
        condition_of(&running.conditions, "Degraded"),
        ("False", "AsExpected")
    );
    assert_eq!(running.delivered_records, Some(10));
    assert_eq!(running.data_freshness_seconds, Some(4));
    assert_eq!(running.last_delivery_time, Some(at(1_796_000_000)));
    assert_eq!(running.observed_generation, Some(2));

    let late = WorkerFacts {
        freshness_seconds: 400,
        ..facts
    };
    assert!(is_behind(&late, 60, 300));
    let behind = delivery_status(
        Some(&running),
        Some(2),
        &DeliveryPhase::Delivering(Some(late)),
        None,
        true,
        at(3),
    );
    assert_eq!(
        condition_of(&behind.conditions, "Ready"),
        ("True", "Delivering")
    );
    assert_eq!(
        condition_of(&behind.conditions, "Degraded"),
        ("True", "DeliveryBehind")
    );
    // Metrics that could not be read keep the last known figures.
    let unread = delivery_status(
        Some(&behind),
        Some(2),
        &DeliveryPhase::Delivering(None),
        None,
        false,
        at(4),
    );
    assert_eq!(unread.delivered_records, Some(10));
}
