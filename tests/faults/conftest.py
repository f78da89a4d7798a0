"""Fixtures of the fault suite: one stack of real processes for the session, a worker per scenario.

`DEPLOYFLOW_FAULT_SEED` replays a run: every random choice (kill moments, injected faults) comes from it.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from deployflow.dev import DevPorts
from tests.faults.report import REPORT, FaultReport
from tests.faults.stack import FaultStack, Workers

SEED = int(os.environ.get("DEPLOYFLOW_FAULT_SEED") or random.SystemRandom().randrange(1, 1_000_000))
TIME_FACTOR = 10.0  # simulated seconds per real second: pods and traffic ten times faster
# Every process logs here (temporal.log, simulator.log, worker-<n>.log): kept after the run for CI to archive.
STATE_DIR = Path(os.environ.get("DEPLOYFLOW_FAULT_STATE", ".deployflow/faults")).resolve()


def pytest_report_header(config: pytest.Config) -> str:
    return f"fault suite seed: {SEED} (replay with DEPLOYFLOW_FAULT_SEED={SEED})"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not REPORT.lines:
        return
    lines = REPORT.render("passed" if exitstatus == 0 else f"FAILED (exit status {exitstatus})")
    lines.insert(0, f"seed {SEED} (replay with DEPLOYFLOW_FAULT_SEED={SEED})")
    path = REPORT.write(lines)
    terminalreporter.section("fault suite: what was injected and what was checked")
    for line in lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(also written to {path})")


@pytest.fixture(scope="session")
def seed() -> int:
    return SEED


@pytest.fixture(scope="session")
def report() -> FaultReport:
    return REPORT


@pytest.fixture(scope="session")
async def fault_stack() -> AsyncIterator[FaultStack]:
    """Temporal dev server (SQLite file), simulator, Prometheus and the fault proxy; no worker."""
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    stack = FaultStack(DevPorts.free(), state_dir=STATE_DIR, time_factor=TIME_FACTOR, persistent=True,
                       namespaces=(), seed=SEED)
    async with stack:
        REPORT.section("stack")
        REPORT.add(f"Temporal dev server {stack.temporal_address} (SQLite {stack.state_dir / 'temporal.db'}), "
                   f"simulator {stack.sim_url} ×{TIME_FACTOR:g}, Prometheus {stack.prometheus_url or 'not installed'}")
        REPORT.add(f"logs: {stack.state_dir}")
        REPORT.add("every release is checked for: its result and final `status` phase; the exact cluster state its "
                   "inputs dictate (Deployments, live pods by version, route weights, hook Jobs); the status agreeing "
                   "with the cluster; the simulator's count of requests without a ready backend (0 on success)")
        yield stack


@pytest.fixture
async def workers(fault_stack: FaultStack, request: pytest.FixtureRequest) -> AsyncIterator[Workers]:
    """A worker on a task queue of this scenario's own, started; whatever still runs at the end is stopped."""
    assert fault_stack.api_proxy is not None
    fault_stack.api_proxy.clear()
    pool = Workers(fault_stack, f"faults-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}")
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()
        fault_stack.api_proxy.clear()
