"""A test that needs a tool CI installs (kubectl, prometheus) skips without it, except under CI=true, where the
run fails: a skip in CI would mean the behaviour was never checked against the real tool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

NEEDS = {
    "kubectl": "tests/test_sim_kubectl.py::test_apply_client_side_then_server_side_twice",
    "prometheus": "tests/test_prometheus.py::test_prometheus_scrapes_the_simulator",
}


def run_without_tools(test_id: str, tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    """One test in a pytest of its own, with neither tool to be found."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=str(empty), DEPLOYFLOW_PROMETHEUS=str(empty / "prometheus"))
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test_id],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tool", sorted(NEEDS))
def test_a_missing_tool_skips_outside_ci(tool: str, tmp_path: Path) -> None:
    result = run_without_tools(NEEDS[tool], tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "not installed" in result.stdout


@pytest.mark.parametrize("tool", sorted(NEEDS))
def test_a_missing_tool_fails_the_run_under_ci(tool: str, tmp_path: Path) -> None:
    result = run_without_tools(NEEDS[tool], tmp_path, ci=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "must be installed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
