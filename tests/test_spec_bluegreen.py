"""The blue-green request: good specs parse with their defaults, bad ones are refused naming the field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from deployflow.spec import STRATEGIES, BlueGreenRequest, describe_validation_error, parse_spec
from deployflow.spec.common import Workload
from tests.bluegreen_specs import BAD_SPECS, BASE, spec


def rejection(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        parse_spec(data)
    return describe_validation_error(err.value)


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
