//! The Helm chart `charts/brook`, rendered, linted and schema-checked by Helm's own library:
//! its generated parts are current, every object it renders is a well-formed Kubernetes object,
//! its RBAC is exactly the operator's, its CRDs are `crds/`, and bad values fail at install with
//! a message that names them.

mod support;

use std::path::Path;

use brook::operator::chart::{KEEP_ANNOTATION, generated_files};
use brook::operator::install::{cluster_rules, lease_rules, namespace_rules, namespaced_rules};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::helm::{helm, render};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn every_option() -> Value {
    json!({
        "replicaCount": 2,
        "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus"}},
        "networkPolicy": {"enabled": true, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
        "podDisruptionBudget": {"enabled": true},
        "grafanaDashboard": {"enabled": true, "namespace": "monitoring"},
        "prometheusRule": {"enabled": true},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "brook", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "brook-operator"}}}}]}},
        "imagePullSecrets": [{"name": "registry"}],
        "podAnnotations": {"example.com/team": "streaming"},
        "priorityClassName": "system-cluster-critical",
        "brokerImage": "registry.example/brook:0.1.0",
        "operator": {"extraEnv": [{"name": "RUST_LOG", "value": "debug"}]}
    })
}

/// Drops nulls, which a typed object never serializes.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Parses `object` as `T` and checks nothing was lost on the way (a misspelled or misplaced
/// field would be silently dropped by the typed object).
fn typed<T: DeserializeOwned + Serialize>(object: &Value) -> T {
    let name = format!("{} {}", object["kind"], object["metadata"]["name"]);
    let parsed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{name} is not a valid {}: {e}", object["kind"]));
    let back = serde_json::to_value(&parsed).expect("serializes");
    assert_eq!(
        back,
        without_nulls(object),
        "{name} holds fields its type does not know"
    );
    parsed
}

fn check_every_object_is_well_formed(objects: &[Value]) {
    for object in objects {
        match object["kind"].as_str().unwrap_or_default() {
            "Deployment" => drop(typed::<Deployment>(object)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
            "Service" => drop(typed::<Service>(object)),
            "ClusterRole" => drop(typed::<ClusterRole>(object)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(object)),
            "Role" => drop(typed::<Role>(object)),
            "RoleBinding" => drop(typed::<RoleBinding>(object)),
            "NetworkPolicy" => drop(typed::<NetworkPolicy>(object)),
            "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(object)),
            "ConfigMap" => drop(typed::<ConfigMap>(object)),
            "Pod" => drop(typed::<Pod>(object)),
            "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(object)),
            "ServiceMonitor" | "PrometheusRule" => {
                assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
                assert!(object["spec"].is_object(), "{object}");
            }
            other => panic!("the chart renders a {other} no test checks"),
        }
    }
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<T: DeserializeOwned + Serialize>(objects: &[Value], kind: &str, name: &str) -> T {
    let found: Vec<_> = of_kind(objects, kind)
        .into_iter()
        .filter(|o| o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name} in {objects:#?}");
    typed(found[0])
}

fn lint_findings(values: &Value) -> Vec<Value> {
    let lint = helm(&["lint", &values.to_string()]);
    assert_eq!(lint["errors"], json!([]), "{lint}");
    // Severity 1 is information (such as "icon is recommended"); warnings and errors fail.
    lint["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) > 1)
        .collect()
}

#[test]
fn the_committed_chart_files_match_what_brook_generate_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in generated_files(VERSION).expect("generated files") {
        let committed = std::fs::read_to_string(root.join(&file.path)).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); run `make generate`",
                file.path.display()
            )
        });
        assert_eq!(
            committed,
            file.content,
            "{} is stale; run `make generate` and commit the result",
            file.path.display()
        );
    }
}

#[test]
fn the_chart_lints_clean_with_defaults_and_with_every_option() {
    for values in [
        json!({}),
        every_option(),
        json!({"watchNamespace": "team-a"}),
    ] {
        assert_eq!(lint_findings(&values), Vec::<Value>::new(), "{values}");
    }
}

#[test]
fn the_default_install_runs_one_hardened_operator_of_this_version_with_the_operators_rbac() {
    let (objects, notes) = render(&json!({}), "brook-system");
    check_every_object_is_well_formed(&objects);
    let kinds: std::collections::BTreeSet<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default())
        .collect();
    for optional in [
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ConfigMap",
    ] {
        assert!(
            !kinds.contains(optional),
            "{optional} is optional, off by default"
        );
    }

    let deployment: Deployment = one(&objects, "Deployment", "brook-operator");
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.expect("pod spec");
    let security = pod.security_context.expect("pod security context");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".to_owned())
    );
    let container = &pod.containers[0];
    let image = format!("localhost/brook:{VERSION}");
    assert_eq!(container.image.as_deref(), Some(image.as_str()));
    let hardening = container
        .security_context
        .clone()
        .expect("security context");
    assert_eq!(hardening.allow_privilege_escalation, Some(false));
    assert_eq!(hardening.read_only_root_filesystem, Some(true));
    assert_eq!(
        hardening.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert!(
        container
            .resources
            .as_ref()
            .is_some_and(|r| r.requests.is_some())
    );
    let env = container.env.clone().unwrap_or_default();
    let value_of = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value_of("BROOK_BROKER_IMAGE"), Some(image.clone()));
    assert_eq!(value_of("BROOK_WATCH_NAMESPACE"), None);
    assert!(env.iter().any(|e| e.name == "BROOK_OPERATOR_IDENTITY"));
    let account = pod.service_account_name.expect("service account");

    // RBAC: exactly the rules written in src/operator/install.rs, bound to the pod's account.
    let cluster_role: ClusterRole = one(&objects, "ClusterRole", "brook-operator-brook-system");
    assert_eq!(cluster_role.rules, Some(cluster_rules()));
    let lease_role: Role = one(&objects, "Role", "brook-operator-leader-election");
    assert_eq!(lease_role.rules, Some(lease_rules()));
    assert_eq!(
        lease_role.metadata.namespace.as_deref(),
        Some("brook-system")
    );
    for subjects in [
        one::<ClusterRoleBinding>(
            &objects,
            "ClusterRoleBinding",
            "brook-operator-brook-system",
        )
        .subjects,
        one::<RoleBinding>(&objects, "RoleBinding", "brook-operator-leader-election").subjects,
    ] {
        let subject = &subjects.expect("subjects")[0];
        assert_eq!(subject.name, account);
        assert_eq!(subject.namespace.as_deref(), Some("brook-system"));
    }
    let _: ServiceAccount = one(&objects, "ServiceAccount", &account);

    // The CRDs are crds/, kept when the release is uninstalled.
    let mut rendered_crds: Vec<CustomResourceDefinition> =
        of_kind(&objects, "CustomResourceDefinition")
            .into_iter()
            .map(typed)
            .collect();
    rendered_crds.sort_by_key(|c| c.metadata.name.clone());
    let mut expected = brook::api::crds();
    expected.sort_by_key(|c| c.metadata.name.clone());
    assert_eq!(rendered_crds.len(), expected.len());
    for (mut rendered, expected) in rendered_crds.into_iter().zip(expected) {
        let annotations = rendered.metadata.annotations.take().unwrap_or_default();
        assert_eq!(
            annotations.get(KEEP_ANNOTATION.0).map(String::as_str),
            Some(KEEP_ANNOTATION.1)
        );
        assert_eq!(rendered, expected, "the chart's CRD differs from crds/");
    }

    // `helm test` probes /readyz through the Service.
    let service: Service = one(&objects, "Service", "brook-operator");
    let port = service.spec.and_then(|s| s.ports).expect("ports")[0].port;
    let test_pod: Pod = one(&objects, "Pod", "brook-operator-test-readyz");
    assert_eq!(
        test_pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("helm.sh/hook"))
            .map(String::as_str),
        Some("test")
    );
    let args = test_pod.spec.expect("spec").containers[0]
        .args
        .clone()
        .expect("args");
    assert_eq!(args[0], "probe");
    assert_eq!(
        args[1],
        format!("http://brook-operator.brook-system.svc:{port}/readyz")
    );

    assert!(notes.contains("kubectl apply"), "{notes}");
    assert!(notes.contains("kind: Stream"), "{notes}");
    assert!(notes.contains("helm test brook -n brook-system"), "{notes}");
}

#[test]
fn every_optional_object_renders_well_formed_when_asked_for() {
    let (objects, _) = render(&every_option(), "brook-system");
    check_every_object_is_well_formed(&objects);
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ConfigMap",
    ] {
        assert_eq!(of_kind(&objects, kind).len(), 1, "{kind}");
    }
    let deployment: Deployment = one(&objects, "Deployment", "brook-operator");
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod");
    assert!(pod.affinity.is_some() && pod.tolerations.is_some() && pod.node_selector.is_some());
    let broker_image = pod.containers[0]
        .env
        .as_ref()
        .and_then(|env| env.iter().find(|e| e.name == "BROOK_BROKER_IMAGE"))
        .and_then(|e| e.value.clone());
    assert_eq!(
        broker_image.as_deref(),
        Some("registry.example/brook:0.1.0")
    );

    let dashboard: ConfigMap = one(&objects, "ConfigMap", "brook-dashboard");
    assert_eq!(dashboard.metadata.namespace.as_deref(), Some("monitoring"));
    assert_eq!(
        dashboard
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("grafana_dashboard"))
            .map(String::as_str),
        Some("1")
    );
    let json = &dashboard.data.expect("data")["brook.json"];
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/brook/files/dashboard.json"),
    )
    .expect("dashboard");
    assert_eq!(
        serde_json::from_str::<Value>(json).expect("the ConfigMap holds JSON"),
        serde_json::from_str::<Value>(&committed).expect("dashboard JSON")
    );

    let rule = of_kind(&objects, "PrometheusRule")[0];
    let committed: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/brook/files/alerts.yaml"),
        )
        .expect("alerts"),
    )
    .expect("alerts YAML");
    assert_eq!(rule["spec"], committed);
    let monitor = of_kind(&objects, "ServiceMonitor")[0];
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"],
        "brook-operator"
    );
}

#[test]
fn gateway_the_chart_installs_one_endpoint_for_a_namespaces_streams_with_read_only_rbac() {
    let (objects, _) = render(&json!({}), "brook-system");
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"]["name"] != "brook-gateway"),
        "no gateway unless asked for"
    );
    let (objects, _) = render(
        &json!({"gateway": {"enabled": true, "namespace": "shop", "replicas": 3}}),
        "brook-system",
    );
    check_every_object_is_well_formed(&objects);
    let deployment: Deployment = one(&objects, "Deployment", "brook-gateway");
    assert_eq!(deployment.metadata.namespace.as_deref(), Some("shop"));
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.expect("pod");
    assert_eq!(pod.service_account_name.as_deref(), Some("brook-gateway"));
    let container = &pod.containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(
            &[
                "gateway".to_owned(),
                "--namespace".into(),
                "shop".into(),
                "--shutdown-delay-seconds".into(),
                "5".into()
            ][..]
        )
    );
    assert_eq!(
        container.image.as_deref(),
        Some(format!("localhost/brook:{VERSION}").as_str())
    );
    let service = of_kind(&objects, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "brook-gateway")
        .expect("the gateway's Service");
    assert_eq!(service["metadata"]["namespace"], "shop");
    assert_eq!(service["spec"]["ports"][0]["port"], 4567);
    assert_eq!(service["spec"]["ports"][1]["name"], "metrics");
    assert_eq!(service["spec"]["ports"][1]["targetPort"], "metrics");
    assert_eq!(
        service["spec"]["selector"],
        spec.selector
            .match_labels
            .map(|l| json!(l))
            .unwrap_or_default()
    );
    let role = of_kind(&objects, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "brook-gateway")
        .expect("the gateway's Role");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["brook.dev"], "resources": ["streams"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = of_kind(&objects, "RoleBinding")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "brook-gateway")
        .expect("the gateway's RoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "brook-gateway");
    assert_eq!(binding["subjects"][0]["namespace"], "shop");
    assert!(
        lint_findings(&json!({"gateway": {"enabled": true}})).is_empty(),
        "the chart lints clean with the gateway"
    );
    assert!(pod.volumes.is_none() && container.volume_mounts.is_none());

    // TLS to its clients and trust of HTTPS brokers, each from a Secret.
    let values = json!({"gateway": {"enabled": true, "tlsSecret": "gateway-cert", "brokerCaSecret": "brokers-ca"}});
    let (objects, _) = render(&values, "brook-system");
    check_every_object_is_well_formed(&objects);
    let deployment: Deployment = one(&objects, "Deployment", "brook-gateway");
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod");
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap_or_default();
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    assert_eq!(after("--tls-cert"), Some("/etc/brook/gateway-tls/tls.crt"));
    assert_eq!(after("--tls-key"), Some("/etc/brook/gateway-tls/tls.key"));
    assert_eq!(after("--broker-ca"), Some("/etc/brook/broker-ca/ca.crt"));
    let mounts: Vec<(String, String)> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("tls".to_owned(), "/etc/brook/gateway-tls".to_owned()),
            ("broker-ca".to_owned(), "/etc/brook/broker-ca".to_owned())
        ]
    );
    let secrets: Vec<(String, Option<String>)> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            (
                v.name.clone(),
                v.secret.as_ref().and_then(|s| s.secret_name.clone()),
            )
        })
        .collect();
    assert_eq!(
        secrets,
        [
            ("tls".to_owned(), Some("gateway-cert".to_owned())),
            ("broker-ca".to_owned(), Some("brokers-ca".to_owned()))
        ]
    );
    assert!(
        lint_findings(&values).is_empty(),
        "the chart lints clean with gateway TLS"
    );
}

#[test]
fn a_watched_namespace_scopes_the_rbac_to_a_role_there() {
    let (objects, notes) = render(&json!({"watchNamespace": "team-a"}), "brook-system");
    check_every_object_is_well_formed(&objects);
    let role: Role = one(&objects, "Role", "brook-operator");
    assert_eq!(role.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(role.rules, Some(namespaced_rules()));
    let binding: RoleBinding = one(&objects, "RoleBinding", "brook-operator");
    assert_eq!(binding.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(binding.role_ref.name, "brook-operator");
    let cluster_role: ClusterRole = one(&objects, "ClusterRole", "brook-operator-brook-system");
    assert_eq!(cluster_role.rules, Some(namespace_rules(Some("team-a"))));
    let cluster_wide: Vec<&PolicyRule> = cluster_role.rules.iter().flatten().collect();
    assert!(
        cluster_wide
            .iter()
            .all(|r| r.resources.as_deref() == Some(&["namespaces".to_owned()][..])),
        "only the watched namespace is readable cluster-wide: {cluster_wide:?}"
    );
    let deployment: Deployment = one(&objects, "Deployment", "brook-operator");
    let env = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod")
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "BROOK_WATCH_NAMESPACE" && e.value.as_deref() == Some("team-a"))
    );
    assert!(notes.contains("namespace team-a only"), "{notes}");
}

#[test]
fn crds_install_false_leaves_the_crds_out() {
    let result = helm(&[
        "render",
        &json!({"crds": {"install": false}}).to_string(),
        "ops",
    ]);
    let manifests = result["manifests"].as_object().expect("manifests");
    assert!(
        manifests
            .iter()
            .filter(|(path, _)| path.contains("/crds/"))
            .all(|(_, text)| text.as_str().unwrap_or_default().trim().is_empty()),
        "no CRD with crds.install=false"
    );
}

#[test]
fn bad_values_fail_with_a_message_that_names_the_value() {
    for (values, names) in [
        (json!({"replicaCount": 0}), "/replicaCount"),
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"image": {"repository": ""}}), "/image/repository"),
        (json!({"watchNamespace": "Team_A"}), "/watchNamespace"),
        (
            json!({"operator": {"logFormat": "xml"}}),
            "/operator/logFormat",
        ),
        (
            json!({"operator": {"recheckSeconds": 0}}),
            "/operator/recheckSeconds",
        ),
        (
            json!({"resources": {"limits": {"memory": "lots"}}}),
            "/resources/limits/memory",
        ),
        (
            json!({"serviceMonitor": {"interval": "often"}}),
            "/serviceMonitor/interval",
        ),
        (json!({"crds": {"install": "yes"}}), "/crds/install"),
        (json!({"replicas": 2}), "replicas"),
        (json!({"service": {"port": 70000}}), "/service/port"),
    ] {
        let result = helm(&["validate", &values.to_string()]);
        let message = result["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{values} was accepted"));
        assert!(message.contains(names), "{values}: {message}");
    }
    assert_eq!(helm(&["validate", "{}"])["error"], Value::Null);
    assert_eq!(
        helm(&["validate", &every_option().to_string()])["error"],
        Value::Null
    );
}
