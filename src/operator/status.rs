//! Pure status decisions: where a reconcile got to, in, the status a human reads, out.
//! Conditions keep their transition time unless they flip, so an unchanged situation yields
//! an identical status and the controller skips the write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::common::{condition, condition_types, merge_condition};
use crate::api::delivery::DeliveryStreamStatus;
use crate::api::queue::{QueueState, QueueStatus};
use crate::api::stream::StreamStatus;
use crate::api::{ConsumerStatus, consumer::ConsumerState};

/// Where a Stream's reconcile got to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamPhase {
    /// The spec breaks a rule the schema could not check.
    InvalidSpec(String),
    /// The StatefulSet has no ready broker yet.
    WaitingForBrokers {
        /// Ready broker pods.
        ready: i32,
        /// Declared broker pods.
        declared: i32,
    },
    /// Brokers are ready but do not answer the admin calls.
    BrokersUnreachable(String),
    /// Pod 0, which holds the catalog, does not answer, but the other pods serve their shards
    /// (a restart of pod 0): serving, with changes waiting.
    HomePodUnavailable(String),
    /// The stream is being created, resharded or updated by the brokers.
    Changing {
        /// Short CamelCase reason, such as `Resharding`.
        reason: &'static str,
        /// What is happening, for humans.
        message: String,
    },
    /// The brokers refused a change; the reason is their error code.
    ChangeRefused {
        /// The Kinesis error code.
        code: String,
        /// What was refused and why.
        message: String,
    },
    /// Serving as declared.
    Serving,
}

/// What the brokers report of the stream, when they were reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamFacts {
    /// The stream's ARN.
    pub arn: Option<String>,
    /// Open shards.
    pub open_shards: Option<i32>,
    /// Kinesis endpoint of the client Service.
    pub endpoint: String,
    /// Label selector of the broker pods.
    pub selector: String,
    /// The autoscaler's new decision, when it made one this reconcile.
    pub autoscaling: Option<crate::api::stream::AutoscalingStatus>,
}

/// The shard count of the next UpdateShardCount call towards `desired`: Kinesis allows at
/// most doubling or halving per call, so larger changes take several steps.
pub fn next_shard_step(open: i32, desired: i32) -> i32 {
    if desired > open {
        desired.min(open.saturating_mul(2))
    } else if desired < open {
        desired.max((open + 1) / 2)
    } else {
        open
    }
}

/// One condition's (status, reason, message).
type Verdict<'a> = (bool, &'a str, String);

/// Not ready because something is wrong: Degraded with the same reason.
fn failing<'a>(reason: &'a str, message: &str) -> [Verdict<'a>; 3] {
    [
        (false, reason, message.to_owned()),
        (false, reason, String::new()),
        (true, reason, message.to_owned()),
    ]
}

/// Not ready yet because work is under way: Progressing with the same reason.
fn under_way<'a>(reason: &'a str, message: &str) -> [Verdict<'a>; 3] {
    [
        (false, reason, message.to_owned()),
        (true, reason, message.to_owned()),
        (false, "AsExpected", String::new()),
    ]
}

/// Ready and settled.
fn settled<'a>(reason: &'a str, message: String) -> [Verdict<'a>; 3] {
    [
        (true, reason, message),
        (false, "Reconciled", String::new()),
        (false, "AsExpected", String::new()),
    ]
}

fn conditions_for(
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    generation: Option<i64>,
    now: &Time,
    [ready, progressing, degraded]: [Verdict<'_>; 3],
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let mut conditions = previous.to_vec();
    for (type_, (status, reason, message)) in [
        (condition_types::READY, ready),
        (condition_types::PROGRESSING, progressing),
        (condition_types::DEGRADED, degraded),
    ] {
        conditions = merge_condition(
            &conditions,
            condition(type_, status, reason, message, generation, now.clone()),
        );
    }
    conditions
}

/// The status of a Stream after a reconcile that reached `phase`.
pub fn stream_status(
    previous: Option<&StreamStatus>,
    generation: Option<i64>,
    phase: &StreamPhase,
    facts: &StreamFacts,
    now: Time,
) -> StreamStatus {
    let previous = previous.cloned().unwrap_or_default();
    let verdicts = match phase {
        StreamPhase::InvalidSpec(message) => failing("InvalidSpec", message),
        StreamPhase::WaitingForBrokers { ready, declared } => under_way(
            "WaitingForBrokers",
            &format!("{ready} of {declared} broker pods are ready"),
        ),
        StreamPhase::BrokersUnreachable(message) => failing("BrokersUnreachable", message),
        StreamPhase::HomePodUnavailable(message) => [
            (true, "PartlyServing", message.clone()),
            (false, "HomePodUnavailable", String::new()),
            (true, "HomePodUnavailable", message.clone()),
        ],
        StreamPhase::Changing { reason, message } => under_way(reason, message),
        StreamPhase::ChangeRefused { code, message } => [
            (true, "ServingWithDrift", message.clone()),
            (false, "ChangeRefused", String::new()),
            (true, code.trim_end_matches("Exception"), message.clone()),
        ],
        StreamPhase::Serving => settled(
            "Serving",
            format!(
                "{} open shards served at {}",
                facts.open_shards.unwrap_or_default(),
                facts.endpoint
            ),
        ),
    };
    let conditions = conditions_for(&previous.conditions, generation, &now, verdicts);
    StreamStatus {
        observed_generation: generation,
        conditions,
        open_shards: facts.open_shards.or(previous.open_shards),
        selector: Some(facts.selector.clone()),
        stream_arn: facts.arn.clone().or(previous.stream_arn),
        endpoint: Some(facts.endpoint.clone()),
        autoscaling: facts.autoscaling.clone().or(previous.autoscaling),
    }
}

/// Where a Consumer's reconcile got to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerPhase {
    /// The spec breaks a rule the schema could not check.
    InvalidSpec(String),
    /// The Stream it reads does not exist or is not serving yet.
    WaitingForStream {
        /// `StreamNotFound` or `StreamNotReady`.
        reason: &'static str,
        /// What it waits for.
        message: String,
    },
    /// The stream's brokers do not answer.
    BrokersUnreachable(String),
    /// The brokers refused the registration.
    RegistrationRefused(String),
    /// Registered; `state` says whether it is active yet.
    Registered {
        /// The consumer's ARN.
        arn: String,
        /// Its state in the stream.
        state: ConsumerState,
    },
}

/// The status of a Consumer after a reconcile that reached `phase`.
pub fn consumer_status(
    previous: Option<&ConsumerStatus>,
    generation: Option<i64>,
    phase: &ConsumerPhase,
    now: Time,
) -> ConsumerStatus {
    let previous = previous.cloned().unwrap_or_default();
    let verdicts = match phase {
        ConsumerPhase::InvalidSpec(message) => failing("InvalidSpec", message),
        ConsumerPhase::WaitingForStream { reason, message } => under_way(reason, message),
        ConsumerPhase::BrokersUnreachable(message) => failing("BrokersUnreachable", message),
        ConsumerPhase::RegistrationRefused(message) => failing("RegistrationRefused", message),
        ConsumerPhase::Registered { state, .. } if *state == ConsumerState::Active => {
            settled("Active", "registered and active".to_owned())
        }
        ConsumerPhase::Registered { .. } => under_way("Registering", "registration in progress"),
    };
    let conditions = conditions_for(&previous.conditions, generation, &now, verdicts);
    let (arn, state) = match phase {
        ConsumerPhase::Registered { arn, state } => (Some(arn.clone()), Some(*state)),
        _ => (previous.consumer_arn.clone(), previous.consumer_status),
    };
    ConsumerStatus {
        observed_generation: generation,
        conditions,
        consumer_arn: arn,
        consumer_status: state,
        ..previous
    }
}

/// Where a Queue's reconcile got to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueuePhase {
    /// The spec breaks a rule the schema could not check.
    InvalidSpec(String),
    /// The Stream does not exist or is not serving yet.
    WaitingForStream {
        /// `StreamNotFound` or `StreamNotReady`.
        reason: &'static str,
        /// What it waits for.
        message: String,
    },
    /// The stream's brokers do not answer.
    BrokersUnreachable(String),
    /// The brokers refused to create or update the queue (such as a PROVISIONED stream).
    Refused(String),
    /// The queue exists with the declared attributes; `state` says whether it is active.
    Created {
        /// The queue's ARN.
        arn: String,
        /// Its state.
        state: QueueState,
    },
}

/// The status of a Queue after a reconcile that reached `phase`.
pub fn queue_status(
    previous: Option<&QueueStatus>,
    generation: Option<i64>,
    phase: &QueuePhase,
    now: Time,
) -> QueueStatus {
    let previous = previous.cloned().unwrap_or_default();
    let verdicts = match phase {
        QueuePhase::InvalidSpec(message) => failing("InvalidSpec", message),
        QueuePhase::WaitingForStream { reason, message } => under_way(reason, message),
        QueuePhase::BrokersUnreachable(message) => failing("BrokersUnreachable", message),
        QueuePhase::Refused(message) => failing("QueueRefused", message),
        QueuePhase::Created { state, .. } if *state == QueueState::Active => {
            settled("Active", "created and active".to_owned())
        }
        QueuePhase::Created { .. } => under_way("Creating", "the queue is being created"),
    };
    let conditions = conditions_for(&previous.conditions, generation, &now, verdicts);
    let (arn, state) = match phase {
        QueuePhase::Created { arn, state } => (Some(arn.clone()), Some(*state)),
        _ => (previous.queue_arn.clone(), previous.queue_status),
    };
    QueueStatus {
        observed_generation: generation,
        conditions,
        queue_arn: arn,
        queue_status: state,
    }
}

/// What a DeliveryStream's worker reports on its metrics (since it started).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerFacts {
    /// Records delivered.
    pub delivered_records: i64,
    /// Bytes delivered.
    pub delivered_bytes: i64,
    /// Records sent to the error output.
    pub failed_records: i64,
    /// Age of the oldest undelivered record, in seconds.
    pub freshness_seconds: i64,
    /// When the last batch was delivered, in Unix seconds; none before the first.
    pub last_delivery_seconds: Option<i64>,
}

/// Where a DeliveryStream's reconcile got to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryPhase {
    /// The spec breaks a rule the schema could not check.
    InvalidSpec(String),
    /// The source Stream is missing or not serving.
    WaitingForStream {
        /// `StreamNotFound` or `StreamNotReady`.
        reason: &'static str,
        /// What is awaited.
        message: String,
    },
    /// The worker's pod is not available yet.
    WaitingForWorker,
    /// The worker runs; its metrics when they could be read.
    Delivering(Option<WorkerFacts>),
}

/// Freshness past which a running DeliveryStream counts as behind: the buffering interval
/// plus `slack_seconds` (a retry or two of a slow destination).
pub fn is_behind(facts: &WorkerFacts, interval_seconds: i64, slack_seconds: i64) -> bool {
    facts.freshness_seconds > interval_seconds + slack_seconds
}

/// The status of a DeliveryStream after a reconcile that reached `phase`; `behind` says the
/// worker's freshness is past what its buffering explains.
pub fn delivery_status(
    previous: Option<&DeliveryStreamStatus>,
    generation: Option<i64>,
    phase: &DeliveryPhase,
    endpoint: Option<String>,
    behind: bool,
    now: Time,
) -> DeliveryStreamStatus {
    let previous = previous.cloned().unwrap_or_default();
    let verdicts = match phase {
        DeliveryPhase::InvalidSpec(message) => failing("InvalidSpec", message),
        DeliveryPhase::WaitingForStream { reason, message } => under_way(reason, message),
        DeliveryPhase::WaitingForWorker => {
            under_way("WaitingForWorker", "waiting for the delivery worker's pod")
        }
        DeliveryPhase::Delivering(facts) if behind => {
            let age = facts.as_ref().map_or(0, |f| f.freshness_seconds);
            [
                (true, "Delivering", "the worker is delivering".to_owned()),
                (false, "Reconciled", String::new()),
                (
                    true,
                    "DeliveryBehind",
                    format!(
                        "the oldest undelivered record is {age} s old: the destination is slow or failing"
                    ),
                ),
            ]
        }
        DeliveryPhase::Delivering(_) => {
            settled("Delivering", "the worker is delivering".to_owned())
        }
    };
    let conditions = conditions_for(&previous.conditions, generation, &now, verdicts);
    let mut status = DeliveryStreamStatus {
        observed_generation: generation,
        conditions,
        endpoint,
        ..previous
    };
    if let DeliveryPhase::Delivering(Some(facts)) = phase {
        status.delivered_records = Some(facts.delivered_records);
        status.delivered_bytes = Some(facts.delivered_bytes);
        status.failed_records = Some(facts.failed_records);
        status.data_freshness_seconds = Some(facts.freshness_seconds);
        if let Some(seconds) = facts.last_delivery_seconds
            && let Ok(at) = k8s_openapi::jiff::Timestamp::from_second(seconds)
        {
            status.last_delivery_time = Some(Time(at));
        }
    }
    status
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
