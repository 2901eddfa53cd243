//! Server-side apply that writes only when something would change: the live object is read
//! first, and a desired object whose every field the live one already holds is not sent.
//! A steady reconcile therefore makes reads only, and never wakes its own watches.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::context::OperatorMetrics;
use super::quantity::same_amount;
use super::resources::MANAGER;

/// Keys whose values are maps of resource quantities, or a quantity themselves.
const QUANTITY_MAPS: &[&str] = &["requests", "limits", "capacity"];
const QUANTITY_FIELDS: &[&str] = &["sizeLimit"];

/// Whether every field set in `desired` has the same value in `live`: objects compare key by
/// key (extra live keys, such as defaults and status, are ignored), lists item by item, and
/// resource quantities by amount (the API server stores `0.5` CPU as `500m`).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    subset_at(desired, live, Place::Plain)
}

/// What the values being compared are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Plain,
    /// A map of resource name to quantity.
    QuantityMap,
    /// A quantity.
    Quantity,
}

fn subset_at(desired: &Value, live: &Value, place: Place) -> bool {
    match (desired, live) {
        (Value::Null, _) => true,
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(key, value)| {
            let inner = match place {
                Place::QuantityMap => Place::Quantity,
                _ if QUANTITY_MAPS.contains(&key.as_str()) => Place::QuantityMap,
                _ if QUANTITY_FIELDS.contains(&key.as_str()) => Place::Quantity,
                _ => Place::Plain,
            };
            value.is_null()
                || have
                    .get(key)
                    .is_some_and(|live| subset_at(value, live, inner))
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| subset_at(w, h, place))
        }
        (Value::String(want), Value::String(have)) if place == Place::Quantity => {
            want == have || same_amount(want, have) == Some(true)
        }
        (want, have) => want == have,
    }
}

/// Applies `desired` with the operator's field manager unless the live object already
/// matches it, counting every write sent in `metrics`; returns the live object either way.
pub async fn apply<K>(
    api: &Api<K>,
    desired: &K,
    metrics: &OperatorMetrics,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let live = api.get_opt(&desired.name_any()).await?;
    apply_over(api, desired, live, metrics).await
}

/// [`apply`] for a caller that already read the live object.
pub async fn apply_over<K>(
    api: &Api<K>,
    desired: &K,
    live: Option<K>,
    metrics: &OperatorMetrics,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let wanted = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    if let Some(live) = live {
        let have = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if is_subset(&wanted, &have) {
            return Ok(live);
        }
    }
    let params = PatchParams::apply(MANAGER).force();
    let live = api
        .patch(&desired.name_any(), &params, &Patch::Apply(desired))
        .await?;
    metrics.applied(wanted["kind"].as_str().unwrap_or("unknown"));
    Ok(live)
}

/// Writes `status` through the status subresource with the operator's field manager, counted
/// as `<Kind>/status` in `metrics`.
pub async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl Serialize,
    metrics: &OperatorMetrics,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    metrics.applied(&format!("{}/status", K::kind(&())));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_status_on_the_live_object_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 3, "template": {"labels": {"a": "b"}}}});
        let live = json!({
            "metadata": {"resourceVersion": "7"},
            "spec": {"replicas": 3, "revisionHistoryLimit": 10, "template": {"labels": {"a": "b"}}},
            "status": {"readyReplicas": 1},
        });
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_field_is_drift() {
        let desired = json!({"spec": {"replicas": 3, "image": "brook:1"}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 2, "image": "brook:1"}})
        ));
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 3}})));
    }

    #[test]
    fn hardening_quantities_the_api_server_normalized_are_not_drift() {
        let desired = json!({"containers": [{"resources": {
            "requests": {"cpu": "0.5", "memory": "1Gi"},
            "limits": {"cpu": "1000m"}
        }}], "volumes": [{"emptyDir": {"sizeLimit": "0.5Gi"}}]});
        let live = json!({"containers": [{"resources": {
            "requests": {"cpu": "500m", "memory": "1073741824"},
            "limits": {"cpu": "1"}
        }}], "volumes": [{"emptyDir": {"sizeLimit": "512Mi"}}]});
        assert!(is_subset(&desired, &live));
        let grown = json!({"containers": [{"resources": {"requests": {"cpu": "600m"}}}]});
        assert!(!is_subset(&grown, &live));
    }

    #[test]
    fn strings_outside_quantities_compare_as_text() {
        // "1" and "1.0" are one amount, but an annotation is text.
        let desired = json!({"metadata": {"annotations": {"brook.dev/config-hash": "1"}}});
        let live = json!({"metadata": {"annotations": {"brook.dev/config-hash": "1.0"}}});
        assert!(!is_subset(&desired, &live));
    }

    #[test]
    fn lists_compare_item_by_item_and_by_length() {
        let desired = json!({"ports": [{"name": "kinesis", "port": 4567}]});
        assert!(is_subset(
            &desired,
            &json!({"ports": [{"name": "kinesis", "port": 4567, "protocol": "TCP"}]})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"ports": [{"name": "kinesis", "port": 4567}, {"name": "x", "port": 1}]})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"ports": [{"name": "kinesis", "port": 4568}]})
        ));
    }
}
