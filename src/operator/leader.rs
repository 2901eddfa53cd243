//! Leader election through a `coordination.k8s.io` Lease, so two operator replicas can run
//! and only one reconciles. The decision is a pure function of the Lease and the clock; the
//! I/O around it reads the Lease and writes it with its resourceVersion, so two candidates
//! never both win one round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

/// What a candidate does with the Lease it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nobody holds it, or the holder let it expire: take it.
    Take,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and renews it: wait.
    Wait,
}

/// Decides what `me` does with `lease` at `now`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseAction {
    let Some(spec) = lease else {
        return LeaseAction::Take;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => LeaseAction::Take,
        Some(holder) if holder == me => LeaseAction::Renew,
        Some(_) => {
            let duration = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(15).max(1),
            ));
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed {
                Some(renewed) if renewed + duration > now => LeaseAction::Wait,
                _ => LeaseAction::Take,
            }
        }
    }
}

/// The Lease spec after `me` takes or renews it at `now`.
pub fn next_spec(
    lease: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseSpec {
    let previous = lease.cloned().unwrap_or_default();
    let ours = previous.holder_identity.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(duration.as_secs().clamp(1, i32::MAX as u64) as i32),
        acquire_time: if ours {
            previous.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            previous.lease_transitions.unwrap_or(0) + if ours || lease.is_none() { 0 } else { 1 },
        ),
        ..previous
    }
}

/// The Lease spec after `me` gives it up on a clean stop, so a follower takes it at its next
/// round instead of waiting for it to lapse; `None` when `me` does not hold it.
pub fn released_spec(lease: Option<&LeaseSpec>, me: &str) -> Option<LeaseSpec> {
    let spec = lease?;
    (spec.holder_identity.as_deref() == Some(me)).then(|| LeaseSpec {
        holder_identity: None,
        ..spec.clone()
    })
}

/// Why a round of the election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or written.
    #[error("lease: {0}")]
    Kube(#[from] kube::Error),
}

/// One candidate in the election for a named Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    /// A candidate called `identity` for the Lease `name` in `namespace`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// How long a held Lease lasts without renewal.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// One round: reads the Lease, takes or renews it when the decision says so; returns
    /// whether this candidate leads now. A write that loses a race (409) is "not leading".
    pub async fn try_lead(&self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let live = self.api.get_opt(&self.name).await?;
        let spec = live.as_ref().and_then(|l| l.spec.as_ref());
        match decide(spec, &self.identity, now) {
            LeaseAction::Wait => return Ok(false),
            LeaseAction::Take | LeaseAction::Renew => {}
        }
        let next = next_spec(spec, &self.identity, now, self.duration);
        self.write(live, next).await
    }

    /// Writes `spec` over the `live` Lease (or creates it), only if nobody wrote it since it
    /// was read; returns whether the write won.
    async fn write(&self, live: Option<Lease>, spec: LeaseSpec) -> Result<bool, LeaderError> {
        let exists = live.is_some();
        let next = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: live.and_then(|l| l.metadata.resource_version),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        let written = if exists {
            self.api
                .replace(&self.name, &PostParams::default(), &next)
                .await
        } else {
            self.api.create(&PostParams::default(), &next).await
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Gives the Lease up if this candidate holds it; returns whether it did.
    pub async fn release(&self) -> Result<bool, LeaderError> {
        let live = self.api.get_opt(&self.name).await?;
        match released_spec(live.as_ref().and_then(|l| l.spec.as_ref()), &self.identity) {
            Some(spec) => self.write(live, spec).await,
            None => Ok(false),
        }
    }

    /// Waits until this candidate leads, trying every third of the lease duration.
    pub async fn acquire(&self) {
        loop {
            match self.try_lead().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election round failed"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the Lease every third of its duration; returns when leadership is lost (another
    /// holder, or no successful renewal for a whole lease duration).
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_lead().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, "could not renew the leader lease");
                    if last_renewal.elapsed() >= self.duration {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_holder_releases_a_lease_and_it_keeps_its_history() {
        let held = next_spec(None, "a", Timestamp::UNIX_EPOCH, Duration::from_secs(15));
        let released = released_spec(Some(&held), "a").expect("the holder releases");
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, held.lease_transitions);
        assert_eq!(released_spec(Some(&held), "b"), None);
        assert_eq!(released_spec(None, "a"), None);
        assert_eq!(
            decide(Some(&released), "b", Timestamp::UNIX_EPOCH),
            LeaseAction::Take
        );
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid time")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn an_absent_or_empty_lease_is_taken() {
        assert_eq!(decide(None, "a", at(100)), LeaseAction::Take);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(100)),
            LeaseAction::Take
        );
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_it_expires() {
        let lease = held_by("a", 100);
        assert_eq!(decide(Some(&lease), "a", at(110)), LeaseAction::Renew);
        assert_eq!(decide(Some(&lease), "b", at(110)), LeaseAction::Wait);
        assert_eq!(decide(Some(&lease), "b", at(114)), LeaseAction::Wait);
        assert_eq!(decide(Some(&lease), "b", at(115)), LeaseAction::Take);
        assert_eq!(decide(Some(&lease), "b", at(300)), LeaseAction::Take);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let lease = held_by("a", 100);
        let renewed = next_spec(Some(&lease), "a", at(105), Duration::from_secs(15));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = next_spec(Some(&lease), "b", at(200), Duration::from_secs(15));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(200))));
        assert_eq!(taken.lease_transitions, Some(1));
        let first = next_spec(None, "a", at(1), Duration::from_secs(15));
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.lease_duration_seconds, Some(15));
    }
}
