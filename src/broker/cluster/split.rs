//! PutRecords across pods: the records are grouped by the pod that owns their shard, each
//! group is sent to its pod (this pod's own group is stored here) in parallel, and the
//! per-record results are put back in the request's order. A group whose pod cannot be
//! reached, or refuses it, comes back as per-record `InternalFailure` results, which the
//! SDKs and the KPL retry; the other groups are stored.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{CALLER_HEADER, Cluster, HOME, Route, caller_header, owner_of};
use crate::broker::ops::Caller;
use crate::broker::protocol::Operation;
use crate::broker::protocol::json::{self, PutRecordsEntry, PutRecordsInput};
use crate::broker::routing::{parse_hash_key, partition_hash};
use crate::broker::state::{Broker, LiveStream};

/// How a PutRecords is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every record's shard is owned here, or the request is one Kinesis refuses (refused
    /// here, whole, before any record is sent anywhere).
    Here,
    /// Another pod serves it whole: pod 0 for a stream this pod's replica does not have
    /// yet, or a pod with open shards for a stream under the AUTO distribution strategy when
    /// this pod has none.
    Elsewhere(u32),
    /// Records go to several pods: the groups to send, and how many records in all.
    Split(Vec<Group>, usize),
}

/// The records of a PutRecords that one pod stores.
#[derive(Debug, PartialEq, Eq)]
pub struct Group {
    /// The pod.
    pub owner: u32,
    /// The records' positions in the request.
    pub positions: Vec<usize>,
    /// The PutRecords body of these records.
    pub body: Bytes,
}

/// The pod owning each record's shard, or `None` when a record cannot be routed (no key,
/// a malformed hash key): the request is then refused here as a whole.
pub fn owners(stream: &LiveStream, entries: &[PutRecordsEntry<'_>]) -> Option<Vec<u32>> {
    entries
        .iter()
        .map(|entry| {
            let hash = match entry.explicit_hash_key.as_deref() {
                Some(explicit) => parse_hash_key(explicit)?,
                None => partition_hash(entry.partition_key.as_deref()?),
            };
            owner_of(stream, stream.route(hash)?.key.shard_index)
        })
        .collect()
}

/// Decides how pod `here` serves a PutRecords `body` (JSON), reading it once: a request
/// split over pods is checked whole and its groups' bodies are made from the same reading.
pub fn plan(broker: &Broker, here: u32, body: &[u8]) -> Plan {
    let Ok(input) = json::decode::<PutRecordsInput<'_>>(body) else {
        return Plan::Here;
    };
    if input.stream_name.is_none() && input.stream_arn.is_none() {
        return Plan::Here;
    }
    let Ok(stream) = broker.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())
    else {
        return if here == HOME {
            Plan::Here
        } else {
            Plan::Elsewhere(HOME)
        };
    };
    if stream.distributes_automatically() {
        return match super::auto_route(&stream, here) {
            Route::Here => Plan::Here,
            Route::Pod(pod) => Plan::Elsewhere(pod),
        };
    }
    let Some(entries) = input.records.as_deref() else {
        return Plan::Here;
    };
    match owners(&stream, entries) {
        Some(owners) if owners.iter().any(|&o| o != here) => {
            if crate::broker::ops::check_put_records(broker, &input).is_err() {
                return Plan::Here;
            }
            let groups = groups(&owners)
                .into_iter()
                .map(|(owner, positions)| Group {
                    owner,
                    body: group_body(&input, entries, &positions),
                    positions,
                })
                .collect();
            Plan::Split(groups, entries.len())
        }
        _ => Plan::Here,
    }
}

/// Record positions grouped by owner, each group in the request's order, groups by owner.
pub fn groups(owners: &[u32]) -> Vec<(u32, Vec<usize>)> {
    let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
    for (position, &owner) in owners.iter().enumerate() {
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, positions)) => positions.push(position),
            None => groups.push((owner, vec![position])),
        }
    }
    groups.sort_by_key(|(owner, _)| *owner);
    groups
}

/// What one group's pod answered: its PutRecords result entries, or why it failed.
pub type GroupAnswer = Result<Vec<Value>, String>;

/// The whole request's answer from its groups' answers: each record's result at its
/// position; every record of a failed group an `InternalFailure`.
pub fn merge(count: usize, answered: Vec<(Vec<usize>, GroupAnswer)>) -> Value {
    let mut results = vec![failure("The record was not answered."); count];
    for (positions, answer) in answered {
        let entries = match answer {
            Ok(entries) if entries.len() == positions.len() => entries,
            Ok(entries) => {
                let why = format!(
                    "The shard's pod answered {} results for {} records.",
                    entries.len(),
                    positions.len()
                );
                vec![failure(&why); positions.len()]
            }
            Err(why) => vec![failure(&why); positions.len()],
        };
        for (position, entry) in positions.into_iter().zip(entries) {
            results[position] = entry;
        }
    }
    let failed = results
        .iter()
        .filter(|r| r.get("ErrorCode").is_some())
        .count();
    json!({"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"})
}

fn failure(message: &str) -> Value {
    json!({"ErrorCode": "InternalFailure", "ErrorMessage": message})
}

/// Writes `value` as a JSON string (or `null`).
fn write_string(out: &mut Vec<u8>, value: Option<&str>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// The PutRecords body of one group, written straight out (no document built first).
fn group_body(
    input: &PutRecordsInput<'_>,
    entries: &[PutRecordsEntry<'_>],
    positions: &[usize],
) -> Bytes {
    let size: usize = positions
        .iter()
        .map(|&i| {
            let entry = &entries[i];
            64 + entry.data.as_deref().map_or(0, str::len)
                + entry.partition_key.as_deref().map_or(0, str::len)
                + entry.explicit_hash_key.as_deref().map_or(0, str::len)
        })
        .sum();
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(b"{\"Records\":[");
    for (n, &i) in positions.iter().enumerate() {
        let entry = &entries[i];
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Data\":");
        write_string(&mut out, entry.data.as_deref());
        out.extend_from_slice(b",\"PartitionKey\":");
        write_string(&mut out, entry.partition_key.as_deref());
        if let Some(explicit) = entry.explicit_hash_key.as_deref() {
            out.extend_from_slice(b",\"ExplicitHashKey\":");
            write_string(&mut out, Some(explicit));
        }
        out.push(b'}');
    }
    out.push(b']');
    if let Some(name) = input.stream_name.as_deref() {
        out.extend_from_slice(b",\"StreamName\":");
        write_string(&mut out, Some(name));
    }
    if let Some(arn) = input.stream_arn.as_deref() {
        out.extend_from_slice(b",\"StreamARN\":");
        write_string(&mut out, Some(arn));
    }
    out.push(b'}');
    Bytes::from(out)
}

fn result_entries(answer: &[u8]) -> GroupAnswer {
    let value: Value = serde_json::from_slice(answer).map_err(|e| e.to_string())?;
    match value.get("Records").and_then(Value::as_array) {
        Some(entries) => Ok(entries.clone()),
        None => Err(format!(
            "The shard's pod refused the records: {}",
            value
                .get("message")
                .or_else(|| value.get("Message"))
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        )),
    }
}

async fn send_group(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    owner: u32,
    body: Bytes,
    caller: String,
) -> GroupAnswer {
    if owner == cluster.ordinal {
        let answer = crate::broker::ops::dispatch(&broker, Operation::PutRecords, &body)
            .await
            .map_err(|e| e.message)?;
        return result_entries(&answer);
    }
    let request = http::Request::post("/")
        .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amz-target", "Kinesis_20131202.PutRecords")
        .header(CALLER_HEADER, caller);
    let answer = cluster
        .send(owner, request, "/", body)
        .await
        .map_err(|e| e.to_string())?;
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let entries = result_entries(&bytes);
    if entries.is_err() {
        // The pod may hold a newer placement map: follow it before the client retries.
        super::replica::refresh(&broker, &cluster).await;
    }
    entries
}

/// Serves a PutRecords whose `count` records belong to several pods: `groups` from
/// [`plan`], sent in parallel.
pub async fn put_records(
    broker: &Arc<Broker>,
    cluster: &Arc<Cluster>,
    groups: Vec<Group>,
    count: usize,
    caller: &Caller,
) -> Vec<u8> {
    let caller = caller_header(caller);
    let sends = groups.into_iter().map(|group| {
        let send = send_group(
            broker.clone(),
            cluster.clone(),
            group.owner,
            group.body,
            caller.clone(),
        );
        async move { (group.positions, send.await) }
    });
    let answered = futures::future::join_all(sends).await;
    serde_json::to_vec(&merge(count, answered)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_records_are_grouped_by_owner_in_request_order() {
        assert_eq!(
            groups(&[2, 0, 2, 1, 0]),
            vec![(0, vec![1, 4]), (1, vec![3]), (2, vec![0, 2])]
        );
        assert_eq!(groups(&[]), vec![]);
    }

    #[test]
    fn cluster_results_go_back_to_their_positions_and_a_failed_group_fails_its_records() {
        let ok =
            |n: u32| json!({"SequenceNumber": n.to_string(), "ShardId": "shardId-000000000000"});
        let merged = merge(
            4,
            vec![
                (vec![1, 3], Ok(vec![ok(1), ok(3)])),
                (vec![0, 2], Err("pod 2 is unreachable".to_owned())),
            ],
        );
        assert_eq!(merged["FailedRecordCount"], json!(2));
        let records = merged["Records"].as_array().expect("records");
        assert_eq!(records[1], ok(1));
        assert_eq!(records[3], ok(3));
        for failed in [&records[0], &records[2]] {
            assert_eq!(failed["ErrorCode"], json!("InternalFailure"));
            assert_eq!(failed["ErrorMessage"], json!("pod 2 is unreachable"));
        }
        // A throttled record inside a stored group still counts as failed.
        let throttled = json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"});
        let merged = merge(2, vec![(vec![0, 1], Ok(vec![ok(0), throttled.clone()]))]);
        assert_eq!(merged["FailedRecordCount"], json!(1));
        assert_eq!(merged["Records"][1], throttled);
        // A group answered with the wrong number of results fails rather than misplaces.
        let merged = merge(2, vec![(vec![0, 1], Ok(vec![ok(0)]))]);
        assert_eq!(merged["FailedRecordCount"], json!(2));
    }
}
