"""The Grafana dashboard and the Prometheus rules, checked against a real Prometheus scraping a worker that ran
releases: every panel's query parses and returns data, and the rules pass promtool."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console

from deployflow.cli.release import start_deployment
from deployflow.demo import EXAMPLES, NAMESPACE, demo_plan, run_step, validate_spec
from deployflow.dev import DevPorts, DevStack
from deployflow.prometheus import prometheus_binary
from deployflow.status import DeploymentStatus, Phase

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARD = GRAFANA / "deployflow-dashboard.json"
STEP_TIMEOUT = 120.0  # per release: a hang guard, not a speed assertion
DATA_WAIT = 60.0  # for the scrapes that bring the last release's series in

# What Grafana substitutes before it sends a query. The windows cover the releases this test just ran.
VARIABLES = {"$namespace": ".*", "$app": ".*", "$__rate_interval": "5m", "$__range": "1h", "$__interval": "15s"}


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, variables substituted as Grafana would."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(name, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            queries.append((panel["title"], expr))
    return queries


def test_every_panel_has_a_query_and_a_place() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles))
    assert all(p["targets"] and p["gridPos"]["w"] > 0 for p in dashboard["panels"])
    names = set(re.findall(r"\b(deployflow_\w+|temporal_\w+)", " ".join(q for _, q in panel_queries())))
    for metric in ("deployflow_releases_total", "deployflow_release_duration_seconds_bucket",
                   "deployflow_rollbacks_total", "deployflow_rollback_duration_seconds_bucket",
                   "deployflow_releases_in_flight", "deployflow_analysis_measurement",
                   "temporal_workflow_task_execution_latency_bucket", "temporal_activity_execution_latency_bucket"):
        assert metric in names


needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


@pytest.mark.prometheus
@needs_promtool
def test_rules_pass_promtool() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(GRAFANA / "alerts.yml")], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=GRAFANA, capture_output=True,
                            text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((GRAFANA / "alerts.yml").read_text())
    assert any(r.get("alert") == "DeployflowReleaseRolledBack" for g in rules["groups"] for r in g["rules"])


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevStack]:
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed")
    dev = DevStack(DevPorts.free(), state_dir=tmp_path / "stack", time_factor=20.0, persistent=False,
                   namespaces=(NAMESPACE,))
    yield dev


def _query(url: str, promql: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", f"{promql}: {answer}"
    return list(answer["data"]["result"])


def _has_numbers(result: list[dict]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


@pytest.mark.prometheus
@pytest.mark.slow  # a whole stack and three canary releases: about a minute, like the demo's own test
async def test_every_panel_returns_data_from_a_worker_that_ran_releases(
    stack: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = Console(quiet=True)
    try:
        await asyncio.wait_for(stack.start(), timeout=STEP_TIMEOUT)
        for key, value in stack.child_env().items():
            monkeypatch.setenv(key, value)
        assert stack.prometheus_url is not None
        # A good canary (promoted under Prometheus analysis) and a bad one (rolled back by analysis).
        steps = [s for s in demo_plan(stack.prometheus_url) if s.example.startswith("canary")]
        assert [s.expect for s in steps] == [Phase.SUCCEEDED, Phase.SUCCEEDED, Phase.ROLLED_BACK]
        for step in steps:
            result = await run_step(console, stack, step, STEP_TIMEOUT)
            assert result.ok, f"{step.title}: {result.phase} {result.detail}"
        # One release held at its manual gate, so the in-flight panel has something to show.
        doc = yaml.safe_load((EXAMPLES / "bluegreen-manual.yaml").read_text())
        client = await stack.client()
        handle = await start_deployment(client, validate_spec(doc, origin="bluegreen-manual.yaml"))
        for _ in range(int(STEP_TIMEOUT * 10)):
            status = await handle.query("status", result_type=DeploymentStatus)
            if status.phase == Phase.WAITING_PROMOTION:
                break
            await asyncio.sleep(0.1)
        assert status.phase == Phase.WAITING_PROMOTION

        loop = asyncio.get_running_loop()
        for title, promql in panel_queries():
            deadline = loop.time() + DATA_WAIT
            result = _query(stack.prometheus_url, promql)
            while not _has_numbers(result) and loop.time() < deadline:
                await asyncio.sleep(0.5)
                result = _query(stack.prometheus_url, promql)
            assert _has_numbers(result), f"panel {title!r} has no data: {promql}"
        rollbacks = _query(stack.prometheus_url, "sum by (reason) (deployflow_rollbacks_total) > 0")
        assert {r["metric"]["reason"] for r in rollbacks} == {"analysis"}
    finally:
        await stack.stop()
