"""`kill -9` of the worker at random moments of every strategy; a new worker takes over each time.

Every release runs beside the others on one worker, so each kill lands at a random moment of each of them (a
weight shift, a health wait, an analysis, a switch, a batch, a timer, an attempt the server still waits on).
Each release must have lost an activity running on the killed worker at least once. Gated releases hold at a
promotion gate until they have lived through enough kills; then the scenario sends `promote`, as a person would,
and the kills go on until every release has ended.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from tests.faults import releases as R
from tests.faults.report import FaultReport
from tests.faults.scenario import Pair, hit, open_gates, run_scenario, sleep_while_running
from tests.faults.stack import FaultStack, Workers

# Under CI=true a skip for a missing prometheus binary is a failure (tests/conftest.py).
pytestmark = [pytest.mark.faults, pytest.mark.prometheus]

MIN_KILLS = 10
KILL_GAP = (1.0, 5.0)  # seconds from a new worker polling to the next kill, drawn from the seeded generator
ACTIVITY_AIM = 8.0  # seconds a kill may wait for an activity of a release no kill has caught mid-activity yet
READY_DELAY = 30.0  # simulated seconds (3 s real) before a new pod is ready: health waits worth interrupting


def canary_steps(prometheus_url: str, *, bad: bool) -> list[dict[str, Any]]:
    """Weight shifts, timed pauses and analyses, then a gate (`pause: {}`) the scenario opens once enough kills hit
    the release (it holds only a release that got there too fast). The bad version meets its analysis after the
    gate, so it too lives through every kill before it fails."""
    analysis = {"analysis": R.canary_analysis(prometheus_url)}
    short = {"pause": {"duration": "2s"}}
    if bad:
        return [{"set_weight": 10}, short, {"set_weight": 20}, short, {"set_weight": 30}, short, {"set_weight": 40},
                {"pause": {}}, analysis]
    return [{"set_weight": 10}, short, {"set_weight": 20}, analysis, {"set_weight": 40}, short, {"set_weight": 60},
            analysis, {"set_weight": 80}, {"pause": {}}, {"set_weight": 100}]


def kill_pairs(prometheus_url: str) -> list[Pair]:
    pairs = [Pair(R.bluegreen("kill-bg", "1.0.0", standby="0s"),
                  # Its pods take long to be ready, so kills land in its health wait before it reaches the gate.
                  R.bluegreen("kill-bg", "2.0.0", gated=True, standby="5s", ready_delay=5 * READY_DELAY))]
    for router in R.ROUTERS:
        ns = f"kill-{router}"
        pairs.append(Pair(R.canary(ns, "1.0.0", router, prometheus_url=prometheus_url),
                          R.canary(ns, "2.0.0", router, prometheus_url=prometheus_url, ready_delay=READY_DELAY,
                                   steps=canary_steps(prometheus_url, bad=False))))
    pairs.append(Pair(R.canary("kill-bad", "1.0.0", "istio", prometheus_url=prometheus_url),
                      R.canary("kill-bad", "3.0.0", "istio", prometheus_url=prometheus_url, bad=True,
                               ready_delay=READY_DELAY, steps=canary_steps(prometheus_url, bad=True))))
    pairs.append(Pair(None, R.rolling("kill-rolling", "2.0.0", gated=True, ready_delay=READY_DELAY)))
    return pairs


@pytest.mark.timeout(900)
async def test_every_strategy_survives_kill_9_of_its_worker(fault_stack: FaultStack, workers: Workers,
                                                            report: FaultReport, seed: int) -> None:
    if fault_stack.prometheus_url is None:
        pytest.skip("prometheus is not installed: the canaries' analysis needs it")
    rng = random.Random(seed)
    began = time.monotonic()

    async def until_an_activity_runs_where_none_was_hit(releases: list[R.Release]) -> None:
        """A release whose kills have all fallen between its activities (one that waits at its gate most of the
        time) gets the next kill aimed at a moment one of its activities runs, within ACTIVITY_AIM seconds."""
        deadline = time.monotonic() + ACTIVITY_AIM
        pid = workers.current.proc.pid if workers.current else None
        while time.monotonic() < deadline:
            unhit = [r for r in releases if r.running and r.mid_activity == 0]
            if not unhit:
                return
            for r in unhit:
                if (await R.where(r, pid)).running_activity:
                    return
            await asyncio.sleep(0.1)

    async def kill_at_random_moments(releases: list[R.Release]) -> None:
        while await sleep_while_running(releases, rng.uniform(*KILL_GAP)):
            await until_an_activity_runs_where_none_was_hit(releases)
            where = await hit(releases, workers)
            await workers.kill()
            report.add(f"kill -9 #{workers.kills} at {time.monotonic() - began:.1f}s, during: {where}")
            await workers.start()
            await open_gates(releases, ready=lambda r: r.kills >= MIN_KILLS)

    await run_scenario(fault_stack, workers, report, f"kill -9 of the worker (seed {seed}, gap {KILL_GAP} s)",
                       kill_pairs(fault_stack.prometheus_url), kill_at_random_moments, timeout=720,
                       min_faults=MIN_KILLS, min_mid_activity=1)
