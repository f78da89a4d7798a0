"""A restart of the Temporal dev server (same SQLite file, same port) while releases run: the worker reconnects by
itself, nothing is lost, every release finishes as it would have."""

from __future__ import annotations

import random
import time

import pytest

from tests.faults import releases as R
from tests.faults.report import FaultReport
from tests.faults.scenario import hit, one_of_each, run_scenario, sleep_while_running
from tests.faults.stack import FaultStack, Workers

pytestmark = pytest.mark.faults

READY_DELAY = 30.0
DOWN_SECONDS = 5.0  # the server stays away this long, longer than a workflow task's timeout would forgive
RESTART_AFTER = (2.0, 6.0)  # seconds into the releases, drawn from the seeded generator


@pytest.mark.timeout(600)
async def test_releases_finish_across_a_restart_of_the_temporal_server(
    fault_stack: FaultStack, workers: Workers, report: FaultReport, seed: int
) -> None:
    rng = random.Random(seed)
    worker = workers.current

    async def restart_once(releases: list[R.Release]) -> None:
        began = time.monotonic()
        if not await sleep_while_running(releases, rng.uniform(*RESTART_AFTER)):
            return
        where = await hit(releases, workers)
        stopped = time.monotonic()
        await fault_stack.restart_temporal(DOWN_SECONDS)
        report.add(f"Temporal dev server stopped at {stopped - began:.1f}s, started again {DOWN_SECONDS:g}s later "
                   f"on the same port and SQLite file (serving after {time.monotonic() - stopped:.1f}s), "
                   f"during: {where}")

    await run_scenario(fault_stack, workers, report, "restart of the Temporal dev server",
                       one_of_each("restart", "istio", fault_stack.prometheus_url, READY_DELAY), restart_once,
                       timeout=400)
    assert workers.current is worker and worker is not None and worker.proc.returncode is None, (
        "the worker must ride out the restart (it reconnects), not die with the server"
    )
    report.add("the same worker process ran before, during and after the restart")
