//! Types shared by the three custom resources: secret references, conditions and the
//! schema helpers that keep the generated CRDs structural and list-aware.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The API group of every Brook custom resource.
pub const GROUP: &str = "brook.dev";
/// The served and stored version of every Brook custom resource.
pub const VERSION: &str = "v1alpha1";

/// A reference to a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to one key of a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to a Secret holding an AWS-style access key pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the access key id within the Secret.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    /// Key of the secret access key within the Secret.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "accessKeyId".to_owned()
}

fn default_secret_access_key_key() -> String {
    "secretAccessKey".to_owned()
}

/// The standard condition types every Brook resource reports.
pub mod condition_types {
    /// The resource is serving as declared.
    pub const READY: &str = "Ready";
    /// The operator is moving the resource towards its declared state.
    pub const PROGRESSING: &str = "Progressing";
    /// Something keeps the resource from its declared state; the reason says what.
    pub const DEGRADED: &str = "Degraded";
}

/// Returns `conditions` with `next` merged in: `lastTransitionTime` is kept from the existing
/// condition of the same type unless its status flips, so unchanged conditions never churn.
pub fn merge_condition(conditions: &[Condition], mut next: Condition) -> Vec<Condition> {
    let mut merged: Vec<Condition> = Vec::with_capacity(conditions.len() + 1);
    let mut replaced = false;
    for existing in conditions {
        if existing.type_ == next.type_ {
            if existing.status == next.status {
                next.last_transition_time = existing.last_transition_time.clone();
            }
            merged.push(next.clone());
            replaced = true;
        } else {
            merged.push(existing.clone());
        }
    }
    if !replaced {
        merged.push(next);
    }
    merged
}

/// Builds a condition with the given type, status (`"True"`, `"False"`, `"Unknown"`), reason
/// and message, stamped with `now` and the generation it describes.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// Schema for a list of conditions, keyed by `type` so server-side apply merges them per type.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// Schema for a string-to-string map (labels, node selectors, attributes).
pub fn string_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn merging_an_unchanged_status_keeps_the_transition_time() {
        let old = vec![condition("Ready", true, "Serving", "ok", Some(1), at(100))];
        let merged = merge_condition(
            &old,
            condition("Ready", true, "Serving", "ok", Some(2), at(200)),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].last_transition_time, at(100));
        assert_eq!(merged[0].observed_generation, Some(2));
    }

    #[test]
    fn merging_a_flipped_status_moves_the_transition_time() {
        let old = vec![
            condition("Ready", true, "Serving", "ok", Some(1), at(100)),
            condition("Degraded", false, "Healthy", "", Some(1), at(100)),
        ];
        let merged = merge_condition(
            &old,
            condition("Ready", false, "BrokersDown", "no broker", Some(1), at(300)),
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].status, "False");
        assert_eq!(merged[0].last_transition_time, at(300));
        assert_eq!(merged[1].type_, "Degraded");
    }

    #[test]
    fn merging_a_new_type_appends_it() {
        let merged = merge_condition(
            &[],
            condition("Progressing", true, "Creating", "", None, at(5)),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].type_, "Progressing");
    }
}
