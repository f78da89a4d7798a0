"""A misbehaving Kubernetes API between the worker and the cluster (the fault proxy in the worker's kubeconfig):
answers 500/503/429, 409 conflicts on writes, answers slowed by seconds, and the API unreachable for 20 s.
Activities retry what a retry can fix; every release still ends as its inputs dictate."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.faults import releases as R
from tests.faults.proxy import FaultPlan, FaultProxy
from tests.faults.report import FaultReport
from tests.faults.scenario import hit, one_of_each, run_scenario, sleep_while_running
from tests.faults.stack import FaultStack, Workers

pytestmark = pytest.mark.faults

READY_DELAY = 30.0
FLAKY = FaultPlan(error_rate=0.10, codes=(500, 503, 429), conflict_rate=0.10, slow_rate=0.10, slow_seconds=2.0)
OUTAGE_SECONDS = 20.0
OUTAGE_AFTER = (2.0, 5.0)  # seconds into the releases, drawn from the seeded generator


def proxy_of(stack: FaultStack) -> FaultProxy:
    assert stack.api_proxy is not None
    return stack.api_proxy


@pytest.mark.timeout(600)
async def test_releases_survive_api_errors_conflicts_and_slow_answers(
    fault_stack: FaultStack, workers: Workers, report: FaultReport
) -> None:
    proxy = proxy_of(fault_stack)

    async def flaky_api(releases: list[R.Release]) -> None:
        before = proxy.counters.injected_total
        proxy.set_plan(FLAKY)
        await hit(releases, workers)
        report.add(f"from the first release on: {FLAKY.describe()}")
        try:
            while await sleep_while_running(releases, 1.0):
                pass
        finally:
            proxy.clear()
        c = proxy.counters
        report.add(f"the proxy forwarded {c.forwarded} requests, answered {c.injected_total - before} itself "
                   f"({', '.join(f'{n}×{code}' for code, n in sorted(c.injected.items()))}), slowed {c.slowed}")
        assert c.injected_total > before and c.slowed, "the plan must have hurt some requests"

    await run_scenario(fault_stack, workers, report, "a flaky Kubernetes API",
                       one_of_each("flaky", "nginx", fault_stack.prometheus_url, READY_DELAY), flaky_api, timeout=400)


@pytest.mark.timeout(600)
async def test_releases_survive_the_api_unreachable_for_20_seconds(
    fault_stack: FaultStack, workers: Workers, report: FaultReport, seed: int
) -> None:
    proxy = proxy_of(fault_stack)
    rng = random.Random(seed)

    async def outage(releases: list[R.Release]) -> None:
        began = time.monotonic()
        if not await sleep_while_running(releases, rng.uniform(*OUTAGE_AFTER)):
            return
        where = await hit(releases, workers)
        cut = time.monotonic()
        proxy.go_down()
        try:
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: what is checked comes after, on the outcome
        finally:
            proxy.come_up()
        report.add(f"the API refused connections from {cut - began:.1f}s for {time.monotonic() - cut:.0f}s "
                   f"({proxy.counters.refused_while_down} open connections cut), during: {where}")

    await run_scenario(fault_stack, workers, report, f"the Kubernetes API unreachable for {OUTAGE_SECONDS:g}s",
                       one_of_each("outage", "nginx", fault_stack.prometheus_url, READY_DELAY), outage, timeout=400)
