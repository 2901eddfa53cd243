//! Helm's own library on the chart, through `tests/chart/helm.py` (the PyPI package
//! `helm-python-sdk`, which `make test` installs into `.tools/venv`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of `make test`'s tools (`.tools/venv`), or `BROOK_TOOLS_PYTHON`.
pub fn python() -> PathBuf {
    std::env::var_os("BROOK_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/venv/bin/python"))
}

/// Runs `helm.py` with `args` and returns the JSON it prints.
pub fn helm(args: &[&str]) -> Value {
    let python = python();
    let output = Command::new(&python)
        .arg(root().join("tests/chart/helm.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): `make test` installs helm-python-sdk there",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "helm.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("helm.py prints JSON")
}

/// Every object the chart renders with `values` into `namespace`, as JSON values, and NOTES.txt.
pub fn render(values: &Value, namespace: &str) -> (Vec<Value>, String) {
    let result = helm(&["render", &values.to_string(), namespace]);
    let mut objects = Vec::new();
    let manifests = result["manifests"].as_object().expect("manifests");
    let mut templates: Vec<_> = manifests.iter().collect();
    templates.sort_by(|a, b| a.0.cmp(b.0));
    for (template, text) in templates {
        for document in serde_yaml::Deserializer::from_str(text.as_str().unwrap_or_default()) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{template} renders invalid YAML: {e}"));
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    (
        objects,
        result["notes"].as_str().unwrap_or_default().to_owned(),
    )
}
