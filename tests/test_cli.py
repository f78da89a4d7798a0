"""The `deployflow` CLI: spec checks in-process, and start/status/pause/abort as real subprocesses against the
Temporal dev server, a worker and the simulator, asserting what ends up in the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from deployflow.cli import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write_spec(tmp_path: Path, doc: dict[str, Any] | str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def bluegreen_doc(namespace: str = "demo", app_name: str = "shop", version: str = "2.0.0", **extra: Any) -> dict:
    return {
        "strategy": "blue-green",
        "target": {"cluster": "sim", "namespace": namespace, "app": app_name},
        "workload": {"image": f"registry.example.com/shop/web:{version}", "replicas": 2},
        "standby": "0s",
        **extra,
    }


# ---------------------------------------------------------------------------------------------- schema / validate


def test_schema_is_json_schema_of_every_strategy() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["discriminator"]["propertyName"] == "strategy"
    assert "blue-green" in doc["discriminator"]["mapping"]


def test_schema_of_one_strategy_lists_its_fields() -> None:
    result = runner.invoke(app, ["schema", "--strategy", "blue-green"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"strategy", "target", "workload"} <= set(doc["properties"])
    assert set(doc["required"]) >= {"target", "workload"}


def test_schema_of_unknown_strategy_is_refused() -> None:
    result = runner.invoke(app, ["schema", "--strategy", "big-bang"])
    assert result.exit_code == 2
    assert "blue-green" in result.output


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_validates(example: str) -> None:
    from deployflow.spec import STRATEGIES

    strategy = yaml.safe_load((EXAMPLES / example).read_text())["strategy"]
    if strategy not in STRATEGIES:
        pytest.skip(f"strategy {strategy} is not registered in this build")
    result = runner.invoke(app, ["validate", str(EXAMPLES / example)])
    assert result.exit_code == 0, result.output
    assert "deploy/sim/" in result.output


def test_validate_names_every_bad_field_with_its_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, (
        "strategy: blue-green\n"
        "target:\n"
        "  cluster: sim\n"
        "  namespace: Demo\n"
        "  app: shop\n"
        "workload:\n"
        "  image: registry.example.com/shop/web:2.0.0\n"
        "  replicas: 0\n"
        "  colour: blue\n"
    ))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert f"{spec}:4: target.namespace" in result.output
    assert f"{spec}:8: workload.replicas" in result.output
    assert f"{spec}:9: workload.colour: unknown field" in result.output


def test_validate_missing_field(tmp_path: Path) -> None:
    doc = bluegreen_doc()
    del doc["workload"]
    result = runner.invoke(app, ["validate", str(write_spec(tmp_path, doc))])
    assert result.exit_code == 2
    assert "workload: required field is missing" in result.output


def test_validate_unknown_strategy_lists_known_ones(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write_spec(tmp_path, {"strategy": "big-bang"}))])
    assert result.exit_code == 2
    assert "strategy: unknown strategy 'big-bang'" in result.output
    assert "blue-green" in result.output


def test_validate_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "strategy: blue-green\ntarget:\n  app: [shop\n  namespace: demo\n")
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "YAML syntax error" in result.output
    assert f"{spec}:" in result.output


def test_validate_missing_file() -> None:
    result = runner.invoke(app, ["validate", "/nonexistent/spec.yaml"])
    assert result.exit_code == 2
    assert "spec file not found: /nonexistent/spec.yaml" in result.output


def test_validate_json_output_round_trips(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--json", str(EXAMPLES / "bluegreen.yaml")])
    assert result.exit_code == 0, result.output
    again = write_spec(tmp_path, result.stdout, "spec.json")
    assert runner.invoke(app, ["validate", str(again)]).exit_code == 0


def test_start_refuses_an_invalid_spec_before_connecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: a spec error must be reported before any connection is tried.
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    result = runner.invoke(app, ["start", str(write_spec(tmp_path, bluegreen_doc(namespace="Bad_NS")))])
    assert result.exit_code == 2
    assert "target.namespace" in result.output


def test_start_says_where_temporal_was_expected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    result = runner.invoke(app, ["start", str(write_spec(tmp_path, bluegreen_doc()))])
    assert result.exit_code == 1
    assert "cannot connect to Temporal at 127.0.0.1:1" in result.output
    assert "deployflow dev" in result.output
