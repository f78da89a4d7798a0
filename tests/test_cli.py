"""The `deployflow` CLI: spec checks in-process, and start/status/pause/abort as real subprocesses against the
Temporal dev server, a worker and the simulator, asserting what ends up in the cluster."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from deployflow.cli import app
from deployflow.temporal import DEFAULT_TASK_QUEUE

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
    assert strategy in STRATEGIES, f"{example} names strategy {strategy!r}, which no request model serves"
    result = runner.invoke(app, ["validate", str(EXAMPLES / example)])
    assert result.exit_code == 0, result.output
    # A release is locked by its target; a train, which releases into many, by its name.
    assert ("train/" if strategy == "train" else "deploy/sim/") in result.output


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


# ---------------------------------------------------------------------------------------------- against Temporal

WAIT = 60.0  # bounds a hang; not a speed assertion


async def deployflow(dev_env: WorkflowEnvironment, *args: str, queue: str = "") -> tuple[int, str]:
    """The installed CLI as a user runs it: a separate process, configured by the environment."""
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "DEPLOYFLOW_TASK_QUEUE": queue or DEFAULT_TASK_QUEUE, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deployflow.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=WAIT * 2)
    return proc.returncode or 0, out.decode()


def served_version(sim_url: str, namespace: str, service: str = "shop") -> str:
    resp = httpx.get(f"{sim_url}/api/v1/namespaces/{namespace}/services/{service}/proxy/", timeout=10)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["version"])


async def status_json(dev_env: WorkflowEnvironment, ref: str, *extra: str) -> dict[str, Any]:
    code, out = await deployflow(dev_env, "status", ref, "--json", *extra)
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


async def test_start_status_pause_abort_leave_the_stable_version_serving(
    dev_env: WorkflowEnvironment, worker: str, sim: Any, namespace: str, tmp_path: Path
) -> None:
    workflow_id = f"deploy/sim/{namespace}/shop"
    v1 = write_spec(tmp_path, bluegreen_doc(namespace, version="1.0.0"), "v1.yaml")
    code, out = await deployflow(dev_env, "start", str(v1), "--wait", queue=worker)
    assert code == 0, out
    assert workflow_id in out and "Succeeded" in out
    assert served_version(sim.url, namespace) == "1.0.0"

    v2 = write_spec(tmp_path, bluegreen_doc(namespace, version="2.0.0", standby="10m",
                                            promotion={"mode": "manual"}), "v2.yaml")
    code, out = await deployflow(dev_env, "start", str(v2), queue=worker)
    assert code == 0, out
    assert f"started BlueGreenDeployment {workflow_id}" in out

    # A second release of the same app is refused while the first runs, naming it.
    code, out = await deployflow(dev_env, "start", str(v2), queue=worker)
    assert code == 1, out
    assert f"already running as workflow {workflow_id}" in out

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while (await status_json(dev_env, "shop", "-n", namespace))["phase"] != "WaitingPromotion":
        assert loop.time() < deadline, "v2 never reached the manual gate"
        await asyncio.sleep(0.2)

    code, out = await deployflow(dev_env, "status", workflow_id)
    assert code == 0, out
    assert "WaitingPromotion" in out and "1.0.0 → 2.0.0" in out and "RUNNING" in out

    code, out = await deployflow(dev_env, "pause", "shop", "-n", namespace, "--reason", "checking dashboards")
    assert code == 0, out
    assert "pause accepted" in out
    code, out = await deployflow(dev_env, "pause", workflow_id)
    assert code == 1, out
    assert "pause refused" in out and "already paused" in out

    code, out = await deployflow(dev_env, "resume", workflow_id, "--no-wait")
    assert code == 0, out
    assert f"sent resume to {workflow_id}" in out
    deadline = loop.time() + WAIT
    while (await status_json(dev_env, workflow_id))["paused"]:
        assert loop.time() < deadline, "the resume signal never took effect"
        await asyncio.sleep(0.2)

    code, out = await deployflow(dev_env, "abort", workflow_id, "--reason", "checkout errors")
    assert code == 0, out
    code, out = await deployflow(dev_env, "wait", workflow_id)
    assert code == 1, out
    assert "checkout errors" in out

    # The cluster is back where it started: v1 serves, and the status says so.
    final = await status_json(dev_env, workflow_id)
    assert final["phase"] == "RolledBack", final
    assert final["execution_status"] == "FAILED"
    for _ in range(5):
        assert served_version(sim.url, namespace) == "1.0.0"

    code, out = await deployflow(dev_env, "list", "--app", "shop", "-n", namespace, "--json")
    assert code == 0, out
    runs = json.loads(out)
    assert [r["workflow_id"] for r in runs] == [workflow_id, workflow_id]
    assert {r["status"] for r in runs} == {"FAILED", "COMPLETED"}


async def test_status_of_an_unknown_app_says_so(dev_env: WorkflowEnvironment, worker: str) -> None:
    code, out = await deployflow(dev_env, "status", "no-such-app")
    assert code == 1
    assert "no deployment found for app 'no-such-app'" in out


async def test_approve_then_rollback_after_the_switch(
    dev_env: WorkflowEnvironment, worker: str, sim: Any, namespace: str, tmp_path: Path
) -> None:
    workflow_id = f"deploy/sim/{namespace}/shop"
    v1 = write_spec(tmp_path, bluegreen_doc(namespace, version="1.0.0"), "v1.yaml")
    code, out = await deployflow(dev_env, "start", str(v1), "--wait", queue=worker)
    assert code == 0, out
    v2 = write_spec(tmp_path, bluegreen_doc(namespace, version="2.0.0", standby="10m",
                                            promotion={"mode": "manual"}), "v2.yaml")
    code, out = await deployflow(dev_env, "start", str(v2), queue=worker)
    assert code == 0, out

    # Rollback makes no sense before the switch: refused with the reason.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while (await status_json(dev_env, workflow_id))["phase"] != "WaitingPromotion":
        assert loop.time() < deadline, "v2 never reached the manual gate"
        await asyncio.sleep(0.2)
    code, out = await deployflow(dev_env, "rollback", workflow_id)
    assert code == 1, out
    assert "rollback refused" in out

    code, out = await deployflow(dev_env, "approve", workflow_id, "--approver", "alice", "--comment", "LGTM")
    assert code == 0, out
    deadline = loop.time() + WAIT
    while (await status_json(dev_env, workflow_id))["phase"] != "Standby":
        assert loop.time() < deadline, "v2 never went live"
        await asyncio.sleep(0.2)
    assert served_version(sim.url, namespace) == "2.0.0"
    events = " ".join(e["message"] for e in (await status_json(dev_env, workflow_id))["events"])
    assert "alice" in events

    code, out = await deployflow(dev_env, "rollback", "shop", "-n", namespace, "--reason", "latency regression")
    assert code == 0, out
    code, out = await deployflow(dev_env, "wait", workflow_id)
    assert code == 1, out
    assert "latency regression" in out
    assert (await status_json(dev_env, workflow_id))["phase"] == "RolledBack"
    for _ in range(5):
        assert served_version(sim.url, namespace) == "1.0.0"


async def test_start_warns_when_no_worker_polls(dev_env: WorkflowEnvironment, namespace: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, bluegreen_doc(namespace, version="1.0.0"))
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "DEPLOYFLOW_TASK_QUEUE": f"nobody-polls-{namespace}", "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deployflow.cli", "start", str(spec), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), timeout=WAIT))[0].decode()
    assert proc.returncode == 0, out
    assert f"no worker polls task queue nobody-polls-{namespace}" in out
    # Nothing ran, so nothing needs rolling back: terminating this never-started run is safe.
    await dev_env.client.get_workflow_handle(f"deploy/sim/{namespace}/shop").terminate("test cleanup")
