"""The blue-green request: good specs parse with their defaults, bad ones are refused naming the field."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from deployflow.spec import STRATEGIES, BlueGreenRequest, describe_validation_error, parse_spec
from deployflow.spec.common import Workload

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


def rejection(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        parse_spec(data)
    return describe_validation_error(err.value)


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


@pytest.mark.parametrize(("name", "data", "field", "reason"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(name: str, data: dict[str, Any], field: str, reason: str) -> None:
    message = rejection(data)
    assert field in message, message
    assert reason in message, message


def test_at_least_fifteen_kinds_of_bad_input_are_covered() -> None:
    assert len({field for _, _, field, _ in BAD_SPECS}) >= 15


def test_defaults_of_a_minimal_spec() -> None:
    request = parse_spec(BASE)
    assert isinstance(request, BlueGreenRequest)
    assert request.version == "1.4.2"  # from the image tag
    assert request.active_service_name == "web" and request.preview_service_name == "web-preview"
    assert request.standby == timedelta(hours=1)
    assert request.promotion.mode == "auto"
    assert request.workload.replicas == 2 and request.workload.health_timeout == timedelta(minutes=10)
    assert request.target.workflow_id() == "deploy/prod-eu/shop/web"


def test_durations_accept_go_style_iso_and_seconds() -> None:
    assert parse_spec(spec(standby="1h30m")).standby == timedelta(minutes=90)  # type: ignore[attr-defined]
    assert parse_spec(spec(standby="PT2H")).standby == timedelta(hours=2)  # type: ignore[attr-defined]
    assert parse_spec(spec(standby=45)).standby == timedelta(seconds=45)  # type: ignore[attr-defined]
    assert parse_spec(spec(standby="250ms")).standby == timedelta(milliseconds=250)  # type: ignore[attr-defined]


def test_secrets_are_referenced_not_inlined() -> None:
    request = parse_spec(
        spec(
            workload={
                "env": [
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "LOG_LEVEL", "value": "info"},
                ]
            }
        )
    )
    env = request.workload.env  # type: ignore[attr-defined]
    reference = {"secretKeyRef": {"name": "db", "key": "password"}}
    assert env[0].manifest() == {"name": "DB_PASSWORD", "valueFrom": reference}


def test_json_round_trip_is_lossless() -> None:
    """What the CLI sends is what the worker decodes (durations travel as ISO 8601)."""
    request = parse_spec(
        spec(standby="10m", promotion={"mode": "after", "delay": "90s"}, smoke_tests=[{"path": "/health"}])
    )
    again = BlueGreenRequest.model_validate_json(request.model_dump_json())
    assert again == request


def test_version_comes_from_a_manifest_label_or_its_image() -> None:
    manifest = {
        "spec": {
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/version": "2024.05"}},
                "spec": {"containers": [{"name": "web", "image": "web@sha256:" + "a" * 64}]},
            }
        }
    }
    assert Workload(manifest=manifest).resolved_version("web") == "2024.05"


def test_the_registry_names_the_workflow_and_model() -> None:
    assert STRATEGIES["blue-green"] == ("BlueGreenDeployment", BlueGreenRequest)
