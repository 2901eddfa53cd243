//! The Consumer controller: register the consumer on its Stream's brokers, report its ARN and
//! state, deregister it through a finalizer. A Consumer whose Stream is missing or not serving
//! waits, and says so.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::apply_status;
use super::context::{Context, ReconcileError, finalized};
use super::kinesis::{AdminError, BrokerAdmin};
use super::status::{ConsumerPhase, consumer_status};
use crate::api::common::condition_types;
use crate::api::consumer::ConsumerState;
use crate::api::validation::validate_consumer;
use crate::api::{Consumer, Stream};

/// The finalizer that holds a Consumer until it is deregistered.
pub const FINALIZER: &str = "brook.dev/consumer-cleanup";
const WAITING_REQUEUE: Duration = Duration::from_secs(10);
const CHANGING_REQUEUE: Duration = Duration::from_secs(2);

/// The consumer name registered in the stream: `spec.consumerName`, else the resource's name.
pub fn consumer_name(consumer: &Consumer) -> String {
    consumer
        .spec
        .consumer_name
        .clone()
        .unwrap_or_else(|| consumer.name_any())
}

/// Reconciles one Consumer, as the controller runtime calls it.
pub async fn reconcile(
    consumer: Arc<Consumer>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ctx = ctx.as_ref();
    finalized(
        consumer,
        ctx,
        FINALIZER,
        |consumer| async move { apply_consumer(&consumer, ctx).await },
        |consumer| async move { cleanup(&consumer, ctx).await },
    )
    .await
}

/// Why a resource that reads a stream waits for it: a reason and a message.
pub type StreamWait = (&'static str, String);

/// The admin client and ARN of the Stream `stream_name` in `namespace`, when it serves;
/// otherwise why not. Consumers and Queues wait for their stream with it.
pub async fn stream_admin(
    ctx: &Context,
    stream_name: &str,
    namespace: &str,
) -> Result<Result<(BrokerAdmin, String), StreamWait>, ReconcileError> {
    let streams: Api<Stream> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(stream) = streams.get_opt(stream_name).await? else {
        return Ok(Err((
            "StreamNotFound",
            format!("waiting for Stream {stream_name} in namespace {namespace}"),
        )));
    };
    let status = stream.status.clone().unwrap_or_default();
    let serving = status
        .conditions
        .iter()
        .any(|c| c.type_ == condition_types::READY && c.status == "True");
    let (Some(arn), true) = (status.stream_arn, serving) else {
        return Ok(Err((
            "StreamNotReady",
            format!("waiting for Stream {stream_name} to be Ready"),
        )));
    };
    let Some(admin) = ctx.broker_admin(&stream).await? else {
        return Ok(Err((
            "StreamNotReady",
            format!("waiting for the brokers of Stream {stream_name}"),
        )));
    };
    Ok(Ok((admin, arn)))
}

async fn write_status(
    ctx: &Context,
    consumer: &Consumer,
    phase: &ConsumerPhase,
) -> Result<(), ReconcileError> {
    let next = consumer_status(
        consumer.status.as_ref(),
        consumer.metadata.generation,
        phase,
        Time(Timestamp::now()),
    );
    if consumer.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let api: Api<Consumer> = Api::namespaced(
        ctx.client.clone(),
        consumer.metadata.namespace.as_deref().unwrap_or_default(),
    );
    apply_status(&api, &consumer.name_any(), &next, &ctx.metrics).await?;
    Ok(())
}

fn state_of(status: &str) -> ConsumerState {
    match status {
        "ACTIVE" => ConsumerState::Active,
        "DELETING" => ConsumerState::Deleting,
        _ => ConsumerState::Creating,
    }
}

async fn apply_consumer(consumer: &Consumer, ctx: &Context) -> Result<Action, ReconcileError> {
    let namespace = consumer
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let reference = consumer.object_ref(&());
    if let Err(problems) = validate_consumer(&consumer.spec) {
        let message = crate::api::validation::describe(&problems);
        write_status(ctx, consumer, &ConsumerPhase::InvalidSpec(message)).await?;
        return Ok(Action::await_change());
    }
    let (admin, stream_arn) =
        match stream_admin(ctx, &consumer.spec.stream_name, &namespace).await? {
            Ok(found) => found,
            Err((reason, message)) => {
                let waiting = ConsumerPhase::WaitingForStream { reason, message };
                write_status(ctx, consumer, &waiting).await?;
                return Ok(Action::requeue(WAITING_REQUEUE));
            }
        };
    let name = consumer_name(consumer);
    let outcome = match admin.describe_consumer(&stream_arn, &name).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            let registered = admin.register_consumer(&stream_arn, &name).await;
            if registered.is_ok() {
                let again = consumer
                    .status
                    .as_ref()
                    .and_then(|s| s.consumer_arn.as_ref())
                    .is_some();
                let (reason, note) = if again {
                    (
                        "ConsumerReregistered",
                        format!("the stream no longer had consumer {name}; registered it again"),
                    )
                } else {
                    ("ConsumerRegistered", format!("registered consumer {name}"))
                };
                ctx.event(&reference, again, reason, "RegisterStreamConsumer", note)
                    .await;
            }
            registered
        }
        Err(error) => Err(error),
    };
    let (phase, requeue) = match outcome {
        Ok(found) => {
            let state = state_of(&found.status);
            let requeue = if state == ConsumerState::Active {
                ctx.recheck
            } else {
                CHANGING_REQUEUE
            };
            (
                ConsumerPhase::Registered {
                    arn: found.arn,
                    state,
                },
                requeue,
            )
        }
        Err(AdminError::Unreachable { message, .. }) => {
            (ConsumerPhase::BrokersUnreachable(message), WAITING_REQUEUE)
        }
        Err(AdminError::Api { code, message, .. }) => {
            ctx.event(
                &reference,
                true,
                "RegistrationRefused",
                "RegisterStreamConsumer",
                format!("{code}: {message}"),
            )
            .await;
            (
                ConsumerPhase::RegistrationRefused(format!("{code}: {message}")),
                WAITING_REQUEUE * 6,
            )
        }
        Err(error) => return Err(error.into()),
    };
    write_status(ctx, consumer, &phase).await?;
    Ok(Action::requeue(requeue))
}

async fn cleanup(consumer: &Consumer, ctx: &Context) -> Result<Action, ReconcileError> {
    let namespace = consumer
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let reference = consumer.object_ref(&());
    // A stream that is gone took its consumers with it; nothing holds the finalizer then.
    let Ok((admin, stream_arn)) = stream_admin(ctx, &consumer.spec.stream_name, &namespace).await?
    else {
        return Ok(Action::await_change());
    };
    let name = consumer_name(consumer);
    match admin.deregister_consumer(&stream_arn, &name).await {
        Ok(()) => {
            ctx.event(
                &reference,
                false,
                "ConsumerDeregistered",
                "DeregisterStreamConsumer",
                format!("deregistered consumer {name}"),
            )
            .await;
        }
        Err(error) if error.is_not_found() => {}
        Err(error) => {
            ctx.event(
                &reference,
                true,
                "BrokersUnreachable",
                "DeregisterStreamConsumer",
                format!("could not deregister consumer {name} ({error}); releasing it anyway"),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}
