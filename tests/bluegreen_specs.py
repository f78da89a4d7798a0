"""Blue-green specs the tests share: a minimal good one, and bad ones with the field their refusal must name."""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "strategy": "blue-green",
    "target": {"cluster": "prod-eu", "namespace": "shop", "app": "web"},
    "workload": {"image": "registry.example.com/shop/web:1.4.2"},
}


def spec(**changes: Any) -> dict[str, Any]:
    """BASE with nested changes: spec(workload={"replicas": 0}) merges into BASE["workload"]."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


# (name, spec, the field the message must name, a phrase of the reason)
BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    ("zero replicas", spec(workload={"replicas": 0}), "workload.replicas", "greater than or equal to 1"),
    ("negative standby", spec(standby="-5m"), "standby", "negative"),
    ("negative standby seconds", spec(standby=-30), "standby", "negative"),
    ("unknown top-level field", spec(colour="blue"), "colour", "Extra inputs are not permitted"),
    ("unknown workload field", spec(workload={"replica": 3}), "workload.replica", "Extra inputs"),
    ("missing target", {k: v for k, v in BASE.items() if k != "target"}, "target", "Field required"),
    ("missing namespace", spec(target={"namespace": None}), "target.namespace", "string"),
    ("namespace not a DNS label", spec(target={"namespace": "Shop_EU"}), "target.namespace", "DNS-1123"),
    ("bad image reference", spec(workload={"image": "Registry/Web::1"}), "workload.image", "image reference"),
    ("image with spaces", spec(workload={"image": "web app:1"}), "workload.image", "image reference"),
    ("no image and no manifest", spec(workload={"image": None}), "workload", "image: required"),
    ("version not a label value", spec(workload={"version": "1.0 beta"}), "workload.version", "label value"),
    ("untagged image without version", spec(workload={"image": "web"}), "workload", "version: required"),
    ("bad pod label value", spec(workload={"pod_labels": {"tier": "front end"}}), "workload.pod_labels", "label"),
    ("bad pod label key", spec(workload={"pod_labels": {"-tier": "x"}}), "workload.pod_labels", "valid key"),
    ("reserved pod label", spec(workload={"pod_labels": {"deployflow.io/color": "red"}}), "pod_labels", "managed"),
    ("active equals preview", spec(active_service="web", preview_service="web"), "preview_service", "differ"),
    ("port out of range", spec(workload={"port": 70000}), "workload.port", "less than or equal to 65535"),
    (
        "literal secret in env",
        spec(workload={"env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}),
        "workload.env.0",
        "secretKeyRef",
    ),
    (
        "literal API key in env",
        spec(workload={"env": [{"name": "stripe_api_key", "value": "sk_live"}]}),
        "workload.env.0",
        "looks like a secret",
    ),
    (
        "literal token inside a full manifest",
        spec(
            workload={
                "image": None,
                "manifest": {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "web",
                                        "image": "web:2",
                                        "env": [{"name": "GITHUB_TOKEN", "value": "ghp_x"}],
                                    }
                                ]
                            }
                        }
                    }
                },
            }
        ),
        "manifest.spec.template.spec.containers[0]",
        "looks like a secret",
    ),
    ("manifest of the wrong kind", spec(workload={"manifest": {"kind": "StatefulSet"}}), "manifest.kind", "Deployment"),
    ("after gate without delay", spec(promotion={"mode": "after"}), "delay", "required"),
    ("manual gate with delay", spec(promotion={"mode": "manual", "delay": "5m"}), "delay", "only meaningful"),
    ("unknown gate mode", spec(promotion={"mode": "sometimes"}), "promotion.mode", "auto"),
    ("smoke path without slash", spec(smoke_tests=[{"path": "health"}]), "smoke_tests.0.path", "pattern"),
    ("smoke status out of range", spec(smoke_tests=[{"expected_status": 99}]), "smoke_tests.0.expected_status", "100"),
    ("smoke zero attempts", spec(smoke_tests=[{"attempts": 0}]), "smoke_tests.0.attempts", "greater than"),
    ("zero health timeout", spec(workload={"health_timeout": "0s"}), "workload.health_timeout", "longer than zero"),
    ("wrong strategy", spec(strategy="purple-orange"), "strategy", "blue-green"),
]
