"""Graceful worker shutdown (SIGTERM, as Kubernetes stops a pod) in the middle of a step; a new worker finishes
the run. The worker stops polling, lets the running activity finish within its grace period, and exits; the
release goes on from where it was: same outcome, no rollback."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults import releases as R
from tests.faults.report import FaultReport
from tests.faults.scenario import hit, one_of_each, run_scenario, sleep_while_running
from tests.faults.stack import FaultStack, Workers

pytestmark = pytest.mark.faults

READY_DELAY = 50.0  # simulated seconds (5 s real): each health wait is a step long enough to be caught in
MAX_SIGTERMS = 12


@pytest.mark.timeout(600)
async def test_sigterm_mid_step_then_a_new_worker_finishes_without_rollback(
    fault_stack: FaultStack, workers: Workers, report: FaultReport
) -> None:
    began = time.monotonic()
    exit_codes: list[int] = []

    async def sigterm_mid_step(releases: list[R.Release]) -> None:
        """SIGTERM whenever a release not yet caught mid-step runs an activity; the replacement starts at once,
        as a Deployment's rolling update of the workers would start it."""
        while workers.terminations < MAX_SIGTERMS and await sleep_while_running(releases, 0.3):
            waiting = [r for r in releases if r.running and r.mid_activity == 0]
            if not waiting:
                return
            pid = workers.current.proc.pid if workers.current else None
            moments = await asyncio.gather(*(R.where(r, pid) for r in waiting))
            if not any(m.running_activity for m in moments):
                continue
            where = await hit(releases, workers)
            stopping = time.monotonic()
            exit_code = await workers.roll()
            exit_codes.append(exit_code)
            report.add(f"SIGTERM #{workers.terminations} at {stopping - began:.1f}s, during: {where}; the worker "
                       f"exited {exit_code} after {time.monotonic() - stopping:.1f}s, a new one polls")

    await run_scenario(fault_stack, workers, report,
                       f"SIGTERM of the worker mid-step (grace {fault_stack.shutdown_seconds:g}s)",
                       one_of_each("term", "gateway-api", fault_stack.prometheus_url, READY_DELAY), sigterm_mid_step,
                       timeout=400, min_mid_activity=1)
    assert exit_codes and set(exit_codes) == {0}, f"a SIGTERM'd worker must exit cleanly: exit codes {exit_codes}"
