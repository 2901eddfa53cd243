//! The Queue controller: create the queue on its Stream's brokers with the admin key, keep its
//! visibility timeout and dead-letter handling as declared (UpdateQueue), report its ARN and
//! state, and delete it through a finalizer. A Queue whose Stream is missing or not serving
//! waits, and says so; one the brokers refuse (a PROVISIONED stream, 20 consumers and queues
//! already) is Degraded with their error.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::apply_status;
use super::consumer::stream_admin;
use super::context::{Context, ReconcileError, finalized};
use super::kinesis::{AdminError, QueueAttributes, QueueStart, QueueSummary};
use super::status::{QueuePhase, queue_status};
use crate::api::Queue;
use crate::api::queue::{QueueSpec, QueueState};
use crate::api::validation::validate_queue;

/// The finalizer that holds a Queue until the brokers deleted it.
pub const FINALIZER: &str = "brook.dev/queue-cleanup";
const WAITING_REQUEUE: Duration = Duration::from_secs(10);
const CHANGING_REQUEUE: Duration = Duration::from_secs(2);

/// The queue name in the stream's brokers: `spec.queueName`, else the resource's name.
pub fn queue_name(queue: &Queue) -> String {
    queue
        .spec
        .queue_name
        .clone()
        .unwrap_or_else(|| queue.name_any())
}

/// The attributes the spec declares.
pub fn declared_attributes(spec: &QueueSpec) -> QueueAttributes {
    QueueAttributes {
        visibility_timeout_seconds: i64::from(spec.visibility_timeout_seconds),
        max_receive_count: spec.dead_letters.max_receive_count().map(i64::from),
    }
}

/// Where a new queue starts, as the spec says.
fn declared_start(spec: &QueueSpec) -> QueueStart<'_> {
    QueueStart {
        kind: spec.starting_position.kind.as_api(),
        timestamp_seconds: spec
            .starting_position
            .timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond() as f64 / 1000.0),
    }
}

/// What the controller does with the queue the brokers have (or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueAction {
    /// Create it.
    Create,
    /// Set its attributes to the declared ones.
    Update,
    /// Nothing: it is as declared (or being deleted, which a later reconcile creates again).
    Keep,
}

/// Decides what to do with `found` for `declared` attributes.
pub fn next_action(found: Option<&QueueSummary>, declared: &QueueAttributes) -> QueueAction {
    match found {
        None => QueueAction::Create,
        Some(queue) if queue.status == "DELETING" => QueueAction::Keep,
        Some(queue) if queue.attributes != *declared => QueueAction::Update,
        Some(_) => QueueAction::Keep,
    }
}

fn state_of(status: &str) -> QueueState {
    match status {
        "ACTIVE" => QueueState::Active,
        "DELETING" => QueueState::Deleting,
        _ => QueueState::Creating,
    }
}

/// Reconciles one Queue, as the controller runtime calls it.
pub async fn reconcile(queue: Arc<Queue>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ctx = ctx.as_ref();
    finalized(
        queue,
        ctx,
        FINALIZER,
        |queue| async move { apply_queue(&queue, ctx).await },
        |queue| async move { cleanup(&queue, ctx).await },
    )
    .await
}

async fn write_status(
    ctx: &Context,
    queue: &Queue,
    phase: &QueuePhase,
) -> Result<(), ReconcileError> {
    let next = queue_status(
        queue.status.as_ref(),
        queue.metadata.generation,
        phase,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
    );
    if queue.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let api: Api<Queue> = Api::namespaced(
        ctx.client.clone(),
        queue.metadata.namespace.as_deref().unwrap_or_default(),
    );
    apply_status(&api, &queue.name_any(), &next, &ctx.metrics).await?;
    Ok(())
}

async fn apply_queue(queue: &Queue, ctx: &Context) -> Result<Action, ReconcileError> {
    let namespace = queue
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let reference = queue.object_ref(&());
    if let Err(problems) = validate_queue(&queue.spec) {
        let message = crate::api::validation::describe(&problems);
        write_status(ctx, queue, &QueuePhase::InvalidSpec(message)).await?;
        return Ok(Action::await_change());
    }
    let (admin, stream_arn) = match stream_admin(ctx, &queue.spec.stream_name, &namespace).await? {
        Ok(found) => found,
        Err((reason, message)) => {
            write_status(
                ctx,
                queue,
                &QueuePhase::WaitingForStream { reason, message },
            )
            .await?;
            return Ok(Action::requeue(WAITING_REQUEUE));
        }
    };
    let name = queue_name(queue);
    let declared = declared_attributes(&queue.spec);
    let outcome = match admin.find_queue(&stream_arn, &name).await {
        Ok(found) => match next_action(found.as_ref(), &declared) {
            QueueAction::Keep => found.ok_or_else(|| AdminError::Decode {
                operation: "ListQueues",
                message: "a queue to keep that was not found".to_owned(),
            }),
            QueueAction::Update => {
                let arn = found.map(|f| f.arn).unwrap_or_default();
                let updated = admin.update_queue(&arn, &declared).await;
                if updated.is_ok() {
                    ctx.event(
                        &reference,
                        false,
                        "QueueUpdated",
                        "UpdateQueue",
                        format!("set the attributes of queue {name}"),
                    )
                    .await;
                }
                updated
            }
            QueueAction::Create => {
                let created = admin
                    .create_queue(&stream_arn, &name, declared_start(&queue.spec), &declared)
                    .await;
                if created.is_ok() {
                    let again = queue
                        .status
                        .as_ref()
                        .and_then(|s| s.queue_arn.as_ref())
                        .is_some();
                    let (reason, note) = if again {
                        (
                            "QueueRecreated",
                            format!("the stream no longer had queue {name}; created it again"),
                        )
                    } else {
                        ("QueueCreated", format!("created queue {name}"))
                    };
                    ctx.event(&reference, again, reason, "CreateQueue", note)
                        .await;
                }
                created
            }
        },
        Err(error) => Err(error),
    };
    let (phase, requeue) = match outcome {
        Ok(found) => {
            let state = state_of(&found.status);
            let requeue = if state == QueueState::Active {
                ctx.recheck
            } else {
                CHANGING_REQUEUE
            };
            (
                QueuePhase::Created {
                    arn: found.arn,
                    state,
                },
                requeue,
            )
        }
        Err(AdminError::Unreachable { message, .. }) => {
            (QueuePhase::BrokersUnreachable(message), WAITING_REQUEUE)
        }
        Err(AdminError::Api {
            operation,
            code,
            message,
        }) => {
            ctx.event(
                &reference,
                true,
                "QueueRefused",
                operation,
                format!("{code}: {message}"),
            )
            .await;
            (
                QueuePhase::Refused(format!("{code}: {message}")),
                WAITING_REQUEUE * 6,
            )
        }
        Err(error) => return Err(error.into()),
    };
    write_status(ctx, queue, &phase).await?;
    Ok(Action::requeue(requeue))
}

async fn cleanup(queue: &Queue, ctx: &Context) -> Result<Action, ReconcileError> {
    let namespace = queue
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let reference = queue.object_ref(&());
    // A stream that is gone took its queues with it; nothing holds the finalizer then.
    let Ok((admin, stream_arn)) = stream_admin(ctx, &queue.spec.stream_name, &namespace).await?
    else {
        return Ok(Action::await_change());
    };
    let name = queue_name(queue);
    let deleted = match admin.find_queue(&stream_arn, &name).await {
        Ok(Some(found)) if found.status != "DELETING" => admin.delete_queue(&found.arn).await,
        Ok(_) => Ok(()),
        Err(error) => Err(error),
    };
    match deleted {
        Ok(()) => {
            ctx.event(
                &reference,
                false,
                "QueueDeleted",
                "DeleteQueue",
                format!("deleted queue {name}"),
            )
            .await;
        }
        Err(error) if error.is_not_found() => {}
        Err(error) => {
            ctx.event(
                &reference,
                true,
                "BrokersUnreachable",
                "DeleteQueue",
                format!("could not delete queue {name} ({error}); releasing it anyway"),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(status: &str, visibility: i64, max: Option<i64>) -> QueueSummary {
        QueueSummary {
            arn: "arn:q".to_owned(),
            status: status.to_owned(),
            attributes: QueueAttributes {
                visibility_timeout_seconds: visibility,
                max_receive_count: max,
            },
        }
    }

    #[test]
    fn a_queue_is_created_updated_to_its_declared_attributes_or_kept() {
        let spec: QueueSpec =
            serde_json::from_value(serde_json::json!({"streamName": "orders"})).expect("a spec");
        let declared = declared_attributes(&spec);
        assert_eq!(
            declared,
            QueueAttributes {
                visibility_timeout_seconds: 30,
                max_receive_count: Some(6)
            },
            "Kinesis's defaults"
        );
        assert_eq!(next_action(None, &declared), QueueAction::Create);
        assert_eq!(
            next_action(Some(&found("ACTIVE", 30, Some(6))), &declared),
            QueueAction::Keep
        );
        assert_eq!(
            next_action(Some(&found("ACTIVE", 45, Some(6))), &declared),
            QueueAction::Update
        );
        assert_eq!(
            next_action(Some(&found("ACTIVE", 30, None)), &declared),
            QueueAction::Update
        );
        assert_eq!(
            next_action(Some(&found("DELETING", 45, None)), &declared),
            QueueAction::Keep,
            "a queue being deleted is left to go; the next reconcile creates it again"
        );
        let off: QueueSpec = serde_json::from_value(serde_json::json!({
            "streamName": "orders", "visibilityTimeoutSeconds": 0,
            "deadLetters": {"targetType": "NONE"},
            "startingPosition": {"type": "TRIM_HORIZON"}
        }))
        .expect("a spec");
        assert_eq!(
            declared_attributes(&off),
            QueueAttributes {
                visibility_timeout_seconds: 0,
                max_receive_count: None
            }
        );
        assert_eq!(
            declared_start(&off),
            QueueStart {
                kind: "TRIM_HORIZON",
                timestamp_seconds: None
            }
        );
    }
}
