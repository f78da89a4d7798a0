"""`deployflow dev` as a user runs it: a subprocess on free ports, used with kubectl, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from deployflow.dev import DevPorts
from tests.stack_support import READY_TIMEOUT, alive, deployflow_cmd, descendants, wait_until


@pytest.fixture
def ports() -> DevPorts:
    return DevPorts.free()


def test_dev_stack_starts_serves_kubectl_and_stops_every_child_on_sigint(tmp_path: Path, ports: DevPorts) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [*deployflow_cmd(), "dev", "--temporal-port", str(ports.temporal), "--ui-port", str(ports.ui),
         "--sim-port", str(ports.sim), "--prometheus-port", str(ports.prometheus), "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        # Ready = the worker polls (the stack logs it) and the simulator answers through the kubeconfig it wrote.
        kubeconfig = state / "kubeconfig"
        wait_until(lambda: (state / "worker.log").exists() and "worker polling" in (state / "worker.log").read_text(),
                   READY_TIMEOUT, proc, "the worker polling")
        kubectl = shutil.which("kubectl")
        if kubectl:
            result = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "get", "ns"],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            assert "kube-system" in result.stdout
            assert "demo" in result.stdout.split()  # created so the examples run as they are
        else:
            assert os.environ.get("CI") != "true", "CI installs kubectl: this stack must be checked with it"
            resp = httpx.get(f"http://127.0.0.1:{ports.sim}/api/v1/namespaces", timeout=10)
            assert "kube-system" in resp.text
        # The UI and the gRPC frontend are where the stack said they would be.
        assert httpx.get(f"http://127.0.0.1:{ports.ui}/", timeout=10).status_code == 200
        with socket.create_connection(("127.0.0.1", ports.temporal), timeout=5):
            pass
        children = descendants(proc.pid)
        assert len(children) >= 3, children  # temporal, simulator, worker (and prometheus when installed)

        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "Temporal UI" in out and f"localhost:{ports.ui}" in out
    assert f"KUBECONFIG={kubeconfig.resolve()} kubectl get pods" in out
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)], "children outlived deployflow dev"


def test_dev_stack_refuses_a_taken_port(tmp_path: Path, ports: DevPorts) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.sim))
        taken.listen(1)
        result = subprocess.run(
            [*deployflow_cmd(), "dev", "--temporal-port", str(ports.temporal), "--ui-port", str(ports.ui),
             "--sim-port", str(ports.sim), "--prometheus-port", str(ports.prometheus),
             "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
    assert result.returncode == 1
    assert f"simulator port {ports.sim} already in use" in result.stderr + result.stdout


@pytest.mark.slow
def test_demo_runs_end_to_end_and_every_release_ends_as_expected(tmp_path: Path) -> None:
    """What `make demo` runs: it must finish by itself, exit 0 and print the summary, then the report."""
    result = subprocess.run(
        [*deployflow_cmd(), "demo", "--state-dir", str(tmp_path / "demo"), "--step-timeout", "120"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    out = result.stdout
    assert "deployflow demo: summary" in out
    assert "shop v1 → v2: blue-green" in out
    assert "requests that found no ready backend during the releases: 0" in out
    # It ends with `deployflow report` for its own releases, read back from Temporal, and the charts beside it.
    assert "deployflow report: the demo's releases" in out
    shop = next(line for line in out.splitlines() if line.split("│")[0].strip() == "shop")
    assert [c.strip() for c in shop.split("│")][1:3] == ["2", "100%"]  # releases, success rate
    charts = (tmp_path / "demo" / "report.png").resolve()
    assert f"charts: {charts}" in out
    assert charts.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("prometheus_url", [None, "http://127.0.0.1:9090"])
def test_the_demo_plans_every_strategy_and_canary_analysis_only_with_prometheus(prometheus_url: str | None) -> None:
    from deployflow.demo import EXAMPLES, deep_merge, demo_plan, validate_spec

    steps = demo_plan(prometheus_url)
    strategies = set()
    for step in steps:
        spec = deep_merge(yaml.safe_load((EXAMPLES / step.example).read_text()), step.overrides)
        strategies.add(validate_spec(spec).strategy)  # every release the demo starts is a valid spec
    expected = {"blue-green", "rolling"} | ({"canary"} if prometheus_url else set())
    assert strategies == expected
