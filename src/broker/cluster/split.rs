//! PutRecords across pods: the request is decoded and checked once, where the client sent
//! it; its records are grouped by the pod that owns their shard; this pod's group is stored
//! here and each other group goes to its pod, decoded, in parallel ([`super::put_part`]),
//! joined with other requests' parts for that pod when an exchange with it is under way
//! ([`super::part_lane`]); the per-record results are put back in the request's order. A
//! group whose pod cannot be reached, or refuses it, comes back as per-record
//! `InternalFailure` results, which the SDKs and the KPL retry; the other groups are stored.

use std::sync::Arc;

use super::{Cluster, Entry, HOME, Route, caller_header, misrouted};
use crate::broker::ops::put::{self, PutRecord, RecordResult};
use crate::broker::ops::{Answer, Caller, Encoding};
use crate::broker::protocol::ApiError;
use crate::broker::protocol::body::Body;
use crate::broker::protocol::json::PutRecordsInput;
use crate::broker::state::{Broker, LiveStream};

/// How a PutRecords was served.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// This pod serves it as a broker on its own would: a request Kinesis refuses as a whole
    /// (the usual path words the refusal), or one this pod decides nothing about.
    Here,
    /// Another pod serves it whole: pod 0 for a stream this pod's replica does not have
    /// yet, or a pod with open shards for a stream under the AUTO distribution strategy when
    /// this pod has none.
    Elsewhere(u32),
    /// Stored, here and on the records' pods: the answer, in the request's protocol.
    Answered(Answer),
}

/// The pod owning each record's shard, or `None` for a record whose hash key has no open
/// shard in this pod's map: a reshard's parent closed here before this pod's map had its
/// children.
pub fn owners(stream: &LiveStream, records: &[PutRecord<'_>]) -> Vec<Option<u32>> {
    records
        .iter()
        .map(|record| stream.route(record.hash).map(|shard| shard.owner))
        .collect()
}

/// Why a record with no open shard in this pod's map was not stored (an `InternalFailure`
/// the client retries once this pod has the newer map).
fn unplaced_reason(here: u32) -> String {
    format!(
        "Pod {here}'s placement map has no open shard for this record yet (a reshard is under way); retry."
    )
}

/// Serves a PutRecords `body` that reached pod `here`, reading it once.
pub async fn put_records(
    broker: &Arc<Broker>,
    cluster: &Arc<Cluster>,
    entry: Entry,
    body: Body<'_>,
    caller: &Caller,
    encoding: Encoding,
) -> Result<Served, ApiError> {
    let here = cluster.ordinal;
    let Ok(input) = body.decode::<PutRecordsInput<'_>>() else {
        return Ok(Served::Here);
    };
    if input.stream_name.is_none() && input.stream_arn.is_none() {
        return Ok(Served::Here);
    }
    let Ok(stream) = broker.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())
    else {
        return Ok(if here == HOME {
            Served::Here
        } else {
            Served::Elsewhere(HOME)
        });
    };
    if stream.distributes_automatically() {
        return Ok(match super::auto_route(&stream, here) {
            Route::Here => Served::Here,
            Route::Pod(pod) => Served::Elsewhere(pod),
        });
    }
    let Ok((stream, decoded)) = put::decode_put_records(broker, &input) else {
        return Ok(Served::Here);
    };
    let records = decoded.records();
    let owners = owners(&stream, &records);
    if owners.iter().all(|&owner| owner == Some(here)) {
        let results = put::store_records(broker, stream.clone(), &records).await?;
        let answer = put::put_records_answer(broker, &stream, &results, encoding);
        return Ok(Served::Answered(Answer::of(answer, encoding)));
    }
    // Another pod sends a part only to its records' owner; it sends a whole request only to
    // pod 0 (a stream its replica lacks), which splits it.
    if entry == Entry::Peer && here != HOME {
        return Err(misrouted(here, Route::Pod(HOME)));
    }
    let caller = caller_header(caller);
    let (placed, unplaced) = groups(&owners);
    let sends = placed.into_iter().map(|(owner, positions)| {
        let part: Vec<PutRecord<'_>> = positions.iter().map(|&i| records[i]).collect();
        let (stream, caller) = (&stream, &caller);
        async move {
            let answer = if owner == here {
                put::store_records(broker, stream.clone(), &part)
                    .await
                    .map_err(|e| e.message)
            } else {
                let named = (stream.record.key, stream.record.name.as_str());
                super::part_lane::send(cluster, owner, named, &part, caller).await
            };
            (positions, answer)
        }
    });
    let mut answered = futures::future::join_all(sends).await;
    if !unplaced.is_empty() {
        answered.push((unplaced, Err(unplaced_reason(here))));
    }
    if answered.iter().any(|(_, answer)| answer.is_err()) {
        // This pod's map may lag a reshard or another pod's: follow pod 0's once, before the
        // client sends the failed records again.
        super::replica::refresh(broker, cluster).await;
    }
    let results = merge(records.len(), answered);
    let answer = put::put_records_answer(broker, &stream, &results, encoding);
    Ok(Served::Answered(Answer::of(answer, encoding)))
}

/// Record positions grouped by owner, each group in the request's order, groups by owner;
/// and the positions of the records no pod owns in this pod's map.
pub fn groups(owners: &[Option<u32>]) -> (Vec<(u32, Vec<usize>)>, Vec<usize>) {
    let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
    let mut unplaced = Vec::new();
    for (position, &owner) in owners.iter().enumerate() {
        let Some(owner) = owner else {
            unplaced.push(position);
            continue;
        };
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, positions)) => positions.push(position),
            None => groups.push((owner, vec![position])),
        }
    }
    groups.sort_by_key(|(owner, _)| *owner);
    (groups, unplaced)
}

/// What one group's pod answered: each of its records' results, or why it failed.
pub type GroupAnswer = Result<Vec<RecordResult>, String>;

/// Every record's result from its group's answer, at its position in the request; every
/// record of a failed group failed with the group's reason.
pub fn merge(count: usize, answered: Vec<(Vec<usize>, GroupAnswer)>) -> Vec<RecordResult> {
    // Unanswered positions hold `None` rather than a placeholder error, which would be a
    // string allocated and freed for every record of every request.
    let mut results: Vec<Option<RecordResult>> = vec![None; count];
    for (positions, answer) in answered {
        let group = match answer {
            Ok(group) if group.len() == positions.len() => group,
            Ok(group) => {
                let why = format!(
                    "The shard's pod answered {} results for {} records.",
                    group.len(),
                    positions.len()
                );
                vec![RecordResult::Failed(why); positions.len()]
            }
            Err(why) => vec![RecordResult::Failed(why); positions.len()],
        };
        for (position, result) in positions.into_iter().zip(group) {
            if let Some(slot) = results.get_mut(position) {
                *slot = Some(result);
            }
        }
    }
    results
        .into_iter()
        .map(|result| {
            result
                .unwrap_or_else(|| RecordResult::Failed("The record was not answered.".to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_records_are_grouped_by_owner_in_request_order() {
        assert_eq!(
            groups(&[Some(2), Some(0), Some(2), Some(1), Some(0)]),
            (vec![(0, vec![1, 4]), (1, vec![3]), (2, vec![0, 2])], vec![])
        );
        assert_eq!(groups(&[]), (vec![], vec![]));
        // Records with no open shard in the map are set apart, in order; the others group.
        assert_eq!(
            groups(&[None, Some(1), None, Some(1)]),
            (vec![(1, vec![1, 3])], vec![0, 2])
        );
        assert_eq!(groups(&[None]), (vec![], vec![0]));
    }

    #[test]
    fn cluster_results_go_back_to_their_positions_and_a_failed_group_fails_its_records() {
        let stored = |offset: u64| RecordResult::Stored {
            shard_index: 1,
            offset,
        };
        let failed = |why: &str| RecordResult::Failed(why.to_owned());
        let merged = merge(
            4,
            vec![
                (vec![1, 3], Ok(vec![stored(1), stored(3)])),
                (vec![0, 2], Err("pod 2 is unreachable".to_owned())),
            ],
        );
        assert_eq!(
            merged,
            vec![
                failed("pod 2 is unreachable"),
                stored(1),
                failed("pod 2 is unreachable"),
                stored(3)
            ]
        );
        // A throttled record inside a stored group keeps its result.
        let throttled = RecordResult::Throttled { shard_index: 4 };
        let merged = merge(
            2,
            vec![(vec![0, 1], Ok(vec![stored(0), throttled.clone()]))],
        );
        assert_eq!(merged, vec![stored(0), throttled]);
        // A group answered with the wrong number of results fails rather than misplaces.
        let merged = merge(2, vec![(vec![0, 1], Ok(vec![stored(0)]))]);
        assert!(merged.iter().all(|r| matches!(r, RecordResult::Failed(_))));
        // A record no group answered fails.
        assert_eq!(
            merge(1, Vec::new()),
            vec![failed("The record was not answered.")]
        );
    }
}
