//! The Stream controller: fetch → validate → build → apply the children → bring the stream in
//! the brokers to the declared shards, retention and record size → status. Deletion goes
//! through a finalizer that deletes the stream in the brokers, then the children.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::{apply, apply_over, apply_status};
use super::context::{Context, ReconcileError, finalized};
use super::kinesis::{AdminError, BrokerAdmin, StreamSummary};
use super::resources::{
    self, ADMIN_ACCESS_KEY_ID, ChildNames, SERVICE_MONITOR_RESOURCE, STREAM_LABEL,
};
use super::status::{StreamFacts, StreamPhase, stream_status};
use super::stream_autoscaling;
pub use super::stream_change::{StreamChange, next_change};
use super::stream_pods::{self, BrokerPods, PodsOutcome};
use crate::api::Stream;
use crate::api::stream::{DeletionPolicy, StreamSpec};
use crate::api::validation::validate_stream;

/// The finalizer that holds a Stream until its brokers have let the stream go.
pub const FINALIZER: &str = "brook.dev/stream-cleanup";
/// How soon a stream that is changing is looked at again.
const CHANGING_REQUEUE: Duration = Duration::from_secs(2);
/// How soon brokers that are starting or unreachable are tried again.
const WAITING_REQUEUE: Duration = Duration::from_secs(10);

fn now() -> Time {
    Time(Timestamp::now())
}

/// Reconciles one Stream, as the controller runtime calls it.
pub async fn reconcile(stream: Arc<Stream>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ctx = ctx.as_ref();
    finalized(
        stream,
        ctx,
        FINALIZER,
        |stream| async move { apply_stream(&stream, ctx).await },
        |stream| async move { cleanup(&stream, ctx).await },
    )
    .await
}

/// The admin key of a stream's brokers, created on first need.
pub async fn admin_secret(
    ctx: &Context,
    stream: &Stream,
    namespace: &str,
) -> Result<String, ReconcileError> {
    let names = ChildNames::for_stream(&stream.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = secrets
        .get_opt(&names.admin_secret)
        .await?
        .and_then(|secret| secret.data)
        .and_then(|data| data.get(ADMIN_ACCESS_KEY_ID).cloned());
    if let Some(key) = existing {
        return Ok(String::from_utf8_lossy(&key.0).trim().to_owned());
    }
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| ReconcileError::Randomness(e.to_string()))?;
    let key: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let secret = Secret {
        metadata: resources::child_meta(stream, &names.admin_secret),
        string_data: Some([(ADMIN_ACCESS_KEY_ID.to_owned(), key.clone())].into()),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(key),
        // Another reconcile created it first; use theirs.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Box::pin(admin_secret(ctx, stream, namespace)).await
        }
        Err(error) => Err(error.into()),
    }
}

/// Applies every child in order; returns the live StatefulSet, or None while a StatefulSet of
/// an earlier build is being replaced. The StatefulSet keeps its pods when fewer are declared
/// ([`resources::broker_replicas`]) unless `shrink_to` says the leaving pods hold nothing
/// readable any more.
async fn apply_children(
    ctx: &Context,
    stream: &Stream,
    namespace: &str,
    shrink_to: Option<i32>,
) -> Result<Option<StatefulSet>, ReconcileError> {
    let client = &ctx.client;
    let config = resources::broker_config_map(stream, &ctx.defaults);
    let hash = resources::config_hash(&config);
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), namespace),
        &config,
        &ctx.metrics,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    apply(
        &services,
        &resources::headless_service(stream),
        &ctx.metrics,
    )
    .await?;
    apply(&services, &resources::client_service(stream), &ctx.metrics).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let live = sets.get_opt(&stream.name_any()).await?;
    let live_replicas = live
        .as_ref()
        .and_then(|set| set.spec.as_ref())
        .and_then(|spec| spec.replicas);
    let replicas = shrink_to
        .unwrap_or_else(|| resources::broker_replicas(stream.spec.brokers.replicas, live_replicas));
    let mut desired = resources::statefulset(stream, &ctx.defaults, &hash, replicas);
    if let Some(old) = &live
        && resources::selector_changed(&desired, old)
    {
        replace_statefulset(ctx, stream, &sets, old).await?;
        return Ok(None);
    }
    if let Some(live) = &live
        && resources::keep_live_claim_templates(&mut desired, live)
        // Once per edit of the spec, not on every re-check.
        && stream.status.as_ref().and_then(|s| s.observed_generation) != stream.metadata.generation
    {
        ctx.event(
            &stream.object_ref(&()),
            true,
            "StorageChangeNotApplied",
            "Apply",
            "Kubernetes does not change the volumes of existing brokers: the declared storage applies to new Streams only; the brokers keep their volumes".to_owned(),
        )
        .await;
    }
    let set = apply_over(&sets, &desired, live, &ctx.metrics).await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace),
        &resources::pod_disruption_budget(stream),
        &ctx.metrics,
    )
    .await?;
    apply(
        &Api::<NetworkPolicy>::namespaced(client.clone(), namespace),
        &resources::network_policy(stream),
        &ctx.metrics,
    )
    .await?;
    if ctx.service_monitors {
        let monitors: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &*SERVICE_MONITOR_RESOURCE);
        apply(&monitors, &resources::service_monitor(stream), &ctx.metrics).await?;
    }
    Ok(Some(set))
}

/// A StatefulSet's selector cannot change: one that selects by an earlier build's labels is
/// deleted with its pods orphaned (they keep serving, and their volumes stay), and the next
/// reconcile creates the new one, which adopts them.
async fn replace_statefulset(
    ctx: &Context,
    stream: &Stream,
    sets: &Api<StatefulSet>,
    old: &StatefulSet,
) -> Result<(), ReconcileError> {
    if old.metadata.deletion_timestamp.is_none() {
        let orphan = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
            ..DeleteParams::default()
        };
        sets.delete(&stream.name_any(), &orphan).await?;
        ctx.event(
            &stream.object_ref(&()),
            false,
            "ReplacingStatefulSet",
            "Apply",
            "The brokers' StatefulSet selects its pods by an earlier Brook's labels, which Kubernetes cannot change: it is replaced, its pods and volumes kept and adopted by the new one".to_owned(),
        )
        .await;
    }
    Ok(())
}

async fn write_status(
    ctx: &Context,
    stream: &Stream,
    phase: &StreamPhase,
    facts: &StreamFacts,
) -> Result<(), ReconcileError> {
    let next = stream_status(
        stream.status.as_ref(),
        stream.metadata.generation,
        phase,
        facts,
        now(),
    );
    if stream.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let api: Api<Stream> = Api::namespaced(
        ctx.client.clone(),
        stream.metadata.namespace.as_deref().unwrap_or_default(),
    );
    apply_status(&api, &stream.name_any(), &next, &ctx.metrics).await?;
    Ok(())
}

async fn apply_stream(stream: &Stream, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = stream.name_any();
    let namespace = stream
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let reference = stream.object_ref(&());
    let mut facts = StreamFacts {
        arn: None,
        open_shards: None,
        endpoint: resources::client_endpoint(&name, &namespace, stream.spec.tls.is_some()),
        selector: resources::selector_string(&name),
        autoscaling: None,
    };
    if let Err(problems) = validate_stream(&name, &stream.spec) {
        let message = crate::api::validation::describe(&problems);
        if !has_reason(stream, "InvalidSpec") {
            ctx.event(&reference, true, "InvalidSpec", "Validate", message.clone())
                .await;
        }
        write_status(ctx, stream, &StreamPhase::InvalidSpec(message), &facts).await?;
        return Ok(Action::await_change());
    }

    let admin_key = admin_secret(ctx, stream, &namespace).await?;
    let set = apply_children(ctx, stream, &namespace, None).await?;
    let ready = set
        .as_ref()
        .and_then(|set| set.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let pods = BrokerPods {
        current: set
            .as_ref()
            .and_then(|set| set.spec.as_ref())
            .and_then(|spec| spec.replicas)
            .unwrap_or(stream.spec.brokers.replicas),
        ready,
    };
    if ready == 0 {
        let phase = StreamPhase::WaitingForBrokers {
            ready,
            declared: stream.spec.brokers.replicas,
        };
        write_status(ctx, stream, &phase, &facts).await?;
        return Ok(Action::requeue(WAITING_REQUEUE));
    }

    let admin = ctx
        .admin_with_key(&namespace, &name, &admin_key)
        .with_tls(ctx.broker_tls(stream).await?);
    let (phase, requeue) = match converge(ctx, stream, &admin, pods, &mut facts).await {
        Ok(Converged::Done(phase, requeue)) => (phase, requeue),
        Ok(Converged::Shrink(replicas)) => {
            apply_children(ctx, stream, &namespace, Some(replicas)).await?;
            let phase = StreamPhase::Changing {
                reason: "ShrinkingBrokers",
                message: format!("shrinking to {replicas} broker pods"),
            };
            (phase, CHANGING_REQUEUE)
        }
        Err(AdminError::Unreachable { message, .. })
            if let Some(summary) =
                served_without_home(ctx, stream, &namespace, &admin_key, pods).await =>
        {
            facts.arn = Some(summary.arn);
            facts.open_shards = Some(summary.open_shards);
            let message = format!(
                "pod {name}-0, which holds the stream's catalog, does not answer ({message}); the other pods serve their shards, and changes to the stream wait for pod 0"
            );
            if !has_reason(stream, "HomePodUnavailable") {
                ctx.event(
                    &reference,
                    true,
                    "HomePodUnavailable",
                    "Reconcile",
                    message.clone(),
                )
                .await;
            }
            (StreamPhase::HomePodUnavailable(message), WAITING_REQUEUE)
        }
        Err(AdminError::Unreachable { message, .. }) => {
            if !has_reason(stream, "BrokersUnreachable") {
                ctx.event(
                    &reference,
                    true,
                    "BrokersUnreachable",
                    "Reconcile",
                    message.clone(),
                )
                .await;
            }
            (StreamPhase::BrokersUnreachable(message), WAITING_REQUEUE)
        }
        Err(error) => return Err(error.into()),
    };
    write_status(ctx, stream, &phase, &facts).await?;
    Ok(Action::requeue(requeue))
}

fn has_reason(stream: &Stream, reason: &str) -> bool {
    stream
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.reason == reason))
}

/// Where one step towards the declared stream got to.
enum Converged {
    /// The phase reached, and when to look again.
    Done(StreamPhase, Duration),
    /// The StatefulSet may shrink to this many pods.
    Shrink(i32),
}

/// One step towards the declared stream: create it, move shards off leaving broker pods,
/// reshard it, change its retention or record size, or report it serving.
async fn converge(
    ctx: &Context,
    stream: &Stream,
    admin: &BrokerAdmin,
    pods: BrokerPods,
    facts: &mut StreamFacts,
) -> Result<Converged, AdminError> {
    let name = stream.name_any();
    let reference = stream.object_ref(&());
    let spec = &stream.spec;
    // With autoscaling on, the autoscaler's count (within its bounds) is the one to reach.
    let target = StreamSpec {
        shards: stream_autoscaling::target_shards(stream),
        ..spec.clone()
    };
    let spec = &target;
    let Some(summary) = admin.describe_stream(&name).await? else {
        // The first shards are spread over every pod: all of them must be there.
        if pods.ready < pods.current {
            let phase = StreamPhase::WaitingForBrokers {
                ready: pods.ready,
                declared: pods.current,
            };
            return Ok(Converged::Done(phase, CHANGING_REQUEUE));
        }
        stream_pods::place_on_declared_pods(stream, admin, None).await?;
        admin
            .create_stream(&name, spec.shards, spec.stream_mode.as_api())
            .await?;
        // A stream the status already knew was lost by the brokers or deleted behind the
        // operator's back.
        let recreated = stream
            .status
            .as_ref()
            .and_then(|s| s.stream_arn.as_ref())
            .is_some();
        let (reason, note) = if recreated {
            (
                "StreamRecreated",
                format!(
                    "the brokers no longer had stream {name}; created it again with {} shards",
                    spec.shards
                ),
            )
        } else {
            (
                "StreamCreated",
                format!("created stream {name} with {} shards", spec.shards),
            )
        };
        ctx.event(&reference, recreated, reason, "CreateStream", note)
            .await;
        let phase = StreamPhase::Changing {
            reason: "Creating",
            message: format!("creating stream {name}"),
        };
        return Ok(Converged::Done(phase, CHANGING_REQUEUE));
    };
    facts.arn = Some(summary.arn.clone());
    facts.open_shards = Some(summary.open_shards);
    if summary.status != "ACTIVE" {
        let phase = StreamPhase::Changing {
            reason: if summary.status == "CREATING" {
                "Creating"
            } else {
                "Updating"
            },
            message: format!("the stream is {}", summary.status),
        };
        return Ok(Converged::Done(phase, CHANGING_REQUEUE));
    }
    // The broker pods first: a half-done move of a shard off a leaving pod leaves one shard
    // more open than declared, which only the move's own merge should take back.
    let pods_waiting = match stream_pods::step(ctx, stream, admin, pods).await? {
        PodsOutcome::Proceed => None,
        PodsOutcome::Waiting(reason, message) => Some((reason, message)),
        PodsOutcome::Resharding(phase) => return Ok(Converged::Done(phase, CHANGING_REQUEUE)),
        PodsOutcome::Shrink(replicas) => return Ok(Converged::Shrink(replicas)),
    };
    let Some(change) = next_change(&summary, spec) else {
        facts.autoscaling = stream_autoscaling::autoscale(ctx, stream, admin).await;
        // The autoscaler resharded: the stream is changing, as after a spec edit.
        if let Some(desired) = facts.autoscaling.as_ref().and_then(|a| a.desired_shards)
            && desired != summary.open_shards
        {
            let phase = StreamPhase::Changing {
                reason: "Resharding",
                message: format!(
                    "autoscaling from {} to {desired} open shards",
                    summary.open_shards
                ),
            };
            return Ok(Converged::Done(phase, CHANGING_REQUEUE));
        }
        let recheck = stream_autoscaling::enabled(stream).map_or(ctx.recheck, |a| {
            ctx.recheck.min(Duration::from_secs(
                u64::try_from(a.period_seconds).unwrap_or(30).max(1),
            ))
        });
        if let Some((reason, message)) = pods_waiting {
            // A copy is checked on soon; retention is waited out at the usual pace.
            let requeue = if reason == stream_pods::DRAINING {
                CHANGING_REQUEUE
            } else {
                recheck
            };
            let phase = StreamPhase::Changing { reason, message };
            return Ok(Converged::Done(phase, requeue));
        }
        return Ok(Converged::Done(StreamPhase::Serving, recheck));
    };
    let applied = match change {
        StreamChange::Mode { to, .. } => admin.update_stream_mode(&summary.arn, to.as_api()).await,
        StreamChange::Reshard { to, .. } => admin.update_shard_count(&name, to).await,
        StreamChange::Retention { from, to } => admin.set_retention(&name, from, to).await,
        StreamChange::MaxRecordSize { to, .. } => admin.set_max_record_size(&name, to).await,
    };
    match applied {
        Ok(()) => {}
        Err(AdminError::Api { code, message, .. }) => {
            let phase = StreamPhase::ChangeRefused { code, message };
            return Ok(Converged::Done(phase, WAITING_REQUEUE * 6));
        }
        Err(other) => return Err(other),
    }
    let (reason, action, note) = change.event();
    ctx.event(&reference, false, reason, action, note.clone())
        .await;
    let phase = StreamPhase::Changing {
        reason: change.progress_reason(),
        message: note,
    };
    Ok(Converged::Done(phase, CHANGING_REQUEUE))
}

/// When pod 0 does not answer: the stream as another pod's replica describes it, if the
/// Stream has other pods and one of them serves it.
async fn served_without_home(
    ctx: &Context,
    stream: &Stream,
    namespace: &str,
    admin_key: &str,
    pods: BrokerPods,
) -> Option<StreamSummary> {
    if pods.current < 2 {
        return None;
    }
    let name = stream.name_any();
    let tls = ctx.broker_tls(stream).await.ok()?;
    let admin = ctx.any_pod_admin(namespace, &name, admin_key).with_tls(tls);
    admin
        .describe_stream(&name)
        .await
        .ok()
        .flatten()
        .filter(|summary| summary.status == "ACTIVE" || summary.status == "UPDATING")
}

/// Deletion: the stream goes from the brokers (unless its data is retained), then the
/// children; brokers that are gone or unreachable never hold the finalizer.
async fn cleanup(stream: &Stream, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = stream.name_any();
    let namespace = stream
        .namespace()
        .ok_or(ReconcileError::Unnamed("namespace"))?;
    let reference = stream.object_ref(&());
    let names = ChildNames::for_stream(&name);
    let client = ctx.client.clone();
    let retain = stream.spec.deletion_policy == DeletionPolicy::Retain;
    // With Retain the stream's data stays with the volumes, so the brokers keep it too.
    let admin = match retain {
        true => None,
        false => ctx.broker_admin(stream).await?,
    };
    if let Some(admin) = admin {
        match admin.delete_stream(&name).await {
            Ok(()) => {
                ctx.event(
                    &reference,
                    false,
                    "StreamDeleted",
                    "DeleteStream",
                    format!("deleted stream {name} in the brokers"),
                )
                .await;
            }
            Err(error) if error.is_not_found() => {}
            Err(error) => {
                ctx.event(
                    &reference,
                    true,
                    "BrokersGone",
                    "DeleteStream",
                    format!("could not delete stream {name} in the brokers ({error}); releasing the Stream anyway so its namespace is not held"),
                )
                .await;
            }
        }
    }
    let params = DeleteParams::background();
    delete_ignoring_absent(
        &Api::<StatefulSet>::namespaced(client.clone(), &namespace),
        &names.statefulset,
        &params,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    delete_ignoring_absent(&services, &names.client_service, &params).await?;
    delete_ignoring_absent(&services, &names.headless_service, &params).await?;
    delete_ignoring_absent(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace),
        &names.pod_disruption_budget,
        &params,
    )
    .await?;
    delete_ignoring_absent(
        &Api::<NetworkPolicy>::namespaced(client.clone(), &namespace),
        &names.network_policy,
        &params,
    )
    .await?;
    delete_ignoring_absent(
        &Api::<ConfigMap>::namespaced(client.clone(), &namespace),
        &names.config_map,
        &params,
    )
    .await?;
    delete_ignoring_absent(
        &Api::<Secret>::namespaced(client.clone(), &namespace),
        &names.admin_secret,
        &params,
    )
    .await?;
    if ctx.service_monitors {
        let monitors: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &*SERVICE_MONITOR_RESOURCE);
        delete_ignoring_absent(&monitors, &names.service_monitor, &params).await?;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let selector = format!("{STREAM_LABEL}={name}");
    let listed = claims
        .list(&ListParams::default().labels(&selector))
        .await?;
    let claim_names: Vec<String> = listed.items.iter().map(ResourceExt::name_any).collect();
    if retain {
        if !claim_names.is_empty() {
            ctx.event(
                &reference,
                false,
                "VolumesRetained",
                "Delete",
                format!(
                    "deletionPolicy Retain keeps the brokers' volumes {}; a Stream named {name} in this namespace picks them up again, or delete them yourself",
                    claim_names.join(", ")
                ),
            )
            .await;
        }
    } else {
        for claim in &claim_names {
            delete_ignoring_absent(&claims, claim, &params).await?;
        }
    }
    Ok(Action::await_change())
}

async fn delete_ignoring_absent<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}
