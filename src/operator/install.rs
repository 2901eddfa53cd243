//! How the operator itself is installed: its least-privilege RBAC rules (the one place they
//! are written; `deploy/operator.yaml` and the Helm chart are generated from here) and a
//! plain-manifest install for `kubectl apply`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Namespace,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Name of the operator's ServiceAccount, roles, bindings and Deployment.
pub const OPERATOR_NAME: &str = "brook-operator";
/// Name of the Lease the operator replicas elect a leader with.
pub const LEASE_NAME: &str = "brook-operator-leader";
/// Port of the operator's `/metrics`, `/healthz` and `/readyz`.
pub const OPERATOR_METRICS_PORT: i32 = 9090;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// Everything the operator does across namespaces, and nothing more.
pub fn cluster_rules() -> Vec<PolicyRule> {
    let mut rules = namespaced_rules();
    rules.extend(namespace_rules(None));
    rules
}

/// What the operator does inside a namespace it watches: the rules of the Role bound in that
/// namespace when the operator watches only one (`cluster_rules` holds them too).
pub fn namespaced_rules() -> Vec<PolicyRule> {
    const OWNED: &[&str] = &[
        "get", "list", "watch", "create", "patch", "update", "delete",
    ];
    vec![
        // Its own resources: watched, finalizers added and removed, never spec-edited except
        // through metadata patches; status written.
        rule(
            &["brook.dev"],
            &["streams", "consumers", "queues", "deliverystreams"],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule(
            &["brook.dev"],
            &[
                "streams/status",
                "consumers/status",
                "queues/status",
                "deliverystreams/status",
            ],
            &["get", "patch", "update"],
        ),
        // Owner references with blockOwnerDeletion need update on the owner's finalizers.
        rule(
            &["brook.dev"],
            &[
                "streams/finalizers",
                "consumers/finalizers",
                "queues/finalizers",
                "deliverystreams/finalizers",
            ],
            &["update"],
        ),
        rule(&["apps"], &["statefulsets", "deployments"], OWNED),
        rule(&[""], &["services", "configmaps"], OWNED),
        rule(&["policy"], &["poddisruptionbudgets"], OWNED),
        rule(&["networking.k8s.io"], &["networkpolicies"], OWNED),
        // Secrets: the admin key it creates and reads; never listed or watched.
        rule(&[""], &["secrets"], &["get", "create", "delete"]),
        // Volumes are deleted with a Stream whose deletionPolicy is Delete; a
        // DeliveryStream's worker volume is created and watched.
        rule(
            &[""],
            &["persistentvolumeclaims"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            &["monitoring.coreos.com"],
            &["servicemonitors"],
            &["get", "create", "patch", "delete"],
        ),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

/// The one cluster-scoped read: nothing is applied in a namespace that is being deleted. With
/// `watched`, only that namespace may be read.
pub fn namespace_rules(watched: Option<&str>) -> Vec<PolicyRule> {
    let mut read = rule(&[""], &["namespaces"], &["get"]);
    read.resource_names = watched.map(|namespace| vec![namespace.to_owned()]);
    vec![read]
}

/// The rules of the operator's own namespace: its leader-election Lease.
pub fn lease_rules() -> Vec<PolicyRule> {
    vec![rule(
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "create", "update"],
    )]
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            OPERATOR_NAME.to_owned(),
        ),
        ("app.kubernetes.io/part-of".to_owned(), "brook".to_owned()),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

fn subject(namespace: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: OPERATOR_NAME.to_owned(),
        namespace: Some(namespace.to_owned()),
        api_group: None,
    }]
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    }
}

/// The operator's Deployment: two replicas (one leads), non-root, read-only root filesystem.
pub fn deployment(namespace: &str, image: &str) -> Deployment {
    let env = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    };
    Deployment {
        metadata: meta(OPERATOR_NAME, Some(namespace)),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(labels()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(OPERATOR_NAME.to_owned()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![Container {
                        name: "operator".to_owned(),
                        image: Some(image.to_owned()),
                        args: Some(vec![
                            "operator".to_owned(),
                            "--log-format".to_owned(),
                            "json".to_owned(),
                        ]),
                        env: Some(vec![
                            env("BROOK_OPERATOR_IDENTITY", "metadata.name"),
                            env("BROOK_OPERATOR_NAMESPACE", "metadata.namespace"),
                            // The brokers run the operator's own build unless a Stream says otherwise.
                            EnvVar {
                                name: "BROOK_BROKER_IMAGE".to_owned(),
                                value: Some(image.to_owned()),
                                value_from: None,
                            },
                        ]),
                        ports: Some(vec![ContainerPort {
                            name: Some("metrics".to_owned()),
                            container_port: OPERATOR_METRICS_PORT,
                            ..ContainerPort::default()
                        }]),
                        readiness_probe: Some(probe("/readyz")),
                        liveness_probe: Some(probe("/healthz")),
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".to_owned()]),
                                add: None,
                            }),
                            ..SecurityContext::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Every object of a plain install in `namespace`, as YAML documents joined by `---`.
pub fn install_yaml(namespace: &str, image: &str) -> Result<String, serde_yaml::Error> {
    let documents = [
        serde_yaml::to_string(&Namespace {
            metadata: meta(namespace, None),
            ..Namespace::default()
        })?,
        serde_yaml::to_string(&ServiceAccount {
            metadata: meta(OPERATOR_NAME, Some(namespace)),
            ..ServiceAccount::default()
        })?,
        serde_yaml::to_string(&ClusterRole {
            metadata: meta(OPERATOR_NAME, None),
            rules: Some(cluster_rules()),
            aggregation_rule: None,
        })?,
        serde_yaml::to_string(&ClusterRoleBinding {
            metadata: meta(OPERATOR_NAME, None),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: OPERATOR_NAME.to_owned(),
            },
            subjects: Some(subject(namespace)),
        })?,
        serde_yaml::to_string(&Role {
            metadata: meta(OPERATOR_NAME, Some(namespace)),
            rules: Some(lease_rules()),
        })?,
        serde_yaml::to_string(&RoleBinding {
            metadata: meta(OPERATOR_NAME, Some(namespace)),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "Role".to_owned(),
                name: OPERATOR_NAME.to_owned(),
            },
            subjects: Some(subject(namespace)),
        })?,
        serde_yaml::to_string(&deployment(namespace, image))?,
    ];
    Ok(documents.join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
        rules.iter().any(|rule| {
            rule.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == group))
                && rule
                    .resources
                    .as_ref()
                    .is_some_and(|r| r.iter().any(|r| r == resource))
                && rule.verbs.iter().any(|v| v == verb)
        })
    }

    #[test]
    fn the_operator_may_do_what_it_does_and_no_more() {
        let rules = cluster_rules();
        for (group, resource, verb) in [
            ("brook.dev", "streams", "watch"),
            ("brook.dev", "streams/status", "patch"),
            ("brook.dev", "consumers", "patch"),
            ("brook.dev", "queues", "patch"),
            ("brook.dev", "queues/status", "patch"),
            ("apps", "statefulsets", "patch"),
            ("", "services", "delete"),
            ("", "configmaps", "patch"),
            ("policy", "poddisruptionbudgets", "patch"),
            ("networking.k8s.io", "networkpolicies", "patch"),
            ("", "secrets", "create"),
            ("", "persistentvolumeclaims", "delete"),
            ("monitoring.coreos.com", "servicemonitors", "patch"),
            ("events.k8s.io", "events", "create"),
            ("", "namespaces", "get"),
        ] {
            assert!(
                allows(&rules, group, resource, verb),
                "{verb} {group}/{resource}"
            );
        }
        for (group, resource, verb) in [
            ("", "secrets", "list"),
            ("", "secrets", "watch"),
            ("", "pods", "delete"),
            ("brook.dev", "streams", "delete"),
            ("coordination.k8s.io", "leases", "update"),
            ("", "nodes", "get"),
            ("", "namespaces", "list"),
            ("", "namespaces", "delete"),
        ] {
            assert!(
                !allows(&rules, group, resource, verb),
                "must not {verb} {group}/{resource}"
            );
        }
        assert!(rules.iter().all(|r| !r.verbs.iter().any(|v| v == "*")));
        assert!(allows(
            &lease_rules(),
            "coordination.k8s.io",
            "leases",
            "update"
        ));
    }

    #[test]
    fn the_install_binds_the_roles_to_the_operator_service_account() {
        let yaml = install_yaml("brook-system", "registry.example/brook:test").expect("yaml");
        let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
            .collect();
        let kinds: Vec<&str> = documents
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment"
            ]
        );
        for binding in [&documents[3], &documents[5]] {
            assert_eq!(binding["subjects"][0]["name"], "brook-operator");
            assert_eq!(binding["subjects"][0]["namespace"], "brook-system");
        }
        let pod = &documents[6]["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "brook-operator");
        assert_eq!(pod["containers"][0]["image"], "registry.example/brook:test");
    }
}
