"""Helm's own library (helm-python-sdk, Helm v4's SDK) on the Brook chart, for the Rust tests
and the e2e. Every command prints one JSON document on stdout.

  helm.py render VALUES_JSON [NAMESPACE]   {"manifests": {template: text}, "notes": text}
  helm.py lint VALUES_JSON                 Helm's lint findings
  helm.py validate VALUES_JSON             {"error": null} or {"error": "<Helm's message>"}
  helm.py install|upgrade CHART RELEASE NAMESPACE VALUES_JSON [--take-ownership]
                                           the release (needs KUBECONFIG); --take-ownership is
                                           `helm install --take-ownership --force-conflicts`:
                                           objects an earlier install left (such as CRDs
                                           applied with kubectl) are adopted
  helm.py test|uninstall RELEASE NAMESPACE                      the result (needs KUBECONFIG)
"""

import json
import os
import sys

import helm_python as helm
import helm_python.config as helm_config

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "charts", "brook")


def main(argv):
    command = argv[0]
    if command == "render":
        values = json.loads(argv[1])
        namespace = argv[2] if len(argv) > 2 else "brook-system"
        with helm.Chart.load(CHART) as chart:
            rendered = chart.render(values, name="brook", namespace=namespace)
        notes = {k: v for k, v in rendered.items() if k.endswith("NOTES.txt")}
        manifests = {k: v for k, v in rendered.items() if not k.endswith("NOTES.txt")}
        return {"manifests": manifests, "notes": "".join(notes.values())}
    if command == "lint":
        return helm.lint(CHART, json.loads(argv[1]), strict=True)
    if command == "validate":
        with helm.Chart.load(CHART) as chart:
            try:
                chart.validate_schema(json.loads(argv[1]))
            except helm.HelmError as error:
                return {"error": str(error)}
        return {"error": None}
    if command in ("install", "upgrade"):
        chart, release, namespace, values = argv[1], argv[2], argv[3], json.loads(argv[4])
        if "--take-ownership" in argv[5:]:
            take_ownership()
        with helm.Config(namespace=namespace) as config:
            action = config.install if command == "install" else config.upgrade
            extra = {"create_namespace": True} if command == "install" else {}
            result = action(chart, release, values, namespace=namespace, wait="watcher",
                            timeout=300, **extra)
        return {"name": result.get("name"), "version": result.get("version"),
                "status": result.get("info", {}).get("status", result.get("status"))}
    if command == "test":
        release, namespace = argv[1], argv[2]
        with helm.Config(namespace=namespace) as config:
            result = config.test(release, timeout=120, logs=True)
        return {"logs": result.get("logs", "")}
    if command == "uninstall":
        release, namespace = argv[1], argv[2]
        with helm.Config(namespace=namespace) as config:
            config.uninstall(release, wait="watcher", timeout=300)
        return {"uninstalled": release}
    raise SystemExit(f"unknown command {command}; see the docstring")


def take_ownership():
    """Adds Helm's take_ownership and force_conflicts options, which the SDK's Python layer
    does not name, to the options its native install and upgrade calls receive."""
    options = helm_config._opts

    def with_ownership(**pairs):
        if "create_namespace" in pairs or "reuse_values" in pairs:
            pairs["take_ownership"] = True
            pairs["force_conflicts"] = True
        return options(**pairs)

    helm_config._opts = with_ownership


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
