"""Prometheus unreachable, or answering no data, while a canary's analysis runs: the analysis is inconclusive and
the release waits for a person; it never promotes on missing data. Once Prometheus answers again and a person
sends `promote`, the release goes on to success."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from deployflow.status import Phase
from tests.faults import releases as R
from tests.faults.cluster import read_state
from tests.faults.proxy import FaultProxy
from tests.faults.report import FaultReport
from tests.faults.scenario import Pair, hit, run_scenario
from tests.faults.stack import FaultStack, Workers

# Under CI=true a skip for a missing prometheus binary is a failure (tests/conftest.py).
pytestmark = [pytest.mark.faults, pytest.mark.prometheus]

HELD_WEIGHT = 20
GATE_TIMEOUT = 180.0  # bounds the wait for the release to stop at its gate; not a speed assertion


def analysed_canary(namespace: str, prometheus: FaultProxy, fault: str) -> R.Release:
    """A canary whose analysis asks Prometheus through `prometheus` (the proxy the scenario breaks)."""
    analysis = {"analysis": R.canary_analysis(prometheus.url)}
    steps: list[dict[str, Any]] = [{"set_weight": HELD_WEIGHT}, analysis, {"set_weight": 50}, analysis,
                                   {"set_weight": 100}]
    release = R.canary(namespace, "2.0.0", "gateway-api", prometheus_url=prometheus.url, steps=steps, ready_delay=20)
    release.label = f"canary, Prometheus {fault}"
    return release


def has_data(prometheus_url: str, namespace: str, version: str) -> bool:
    """Whether Prometheus (through the proxy, as the analysis asks it) has the canary's traffic again."""
    query = f'sum(rate(http_requests_total{{namespace="{namespace}",version="{version}"}}[10s]))'
    try:
        answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
    except httpx.HTTPError:
        return False
    return bool(answer.get("data", {}).get("result"))


FAULTS = {"unreachable": FaultProxy.go_down, "answering no data": FaultProxy.answer_no_data}
REPAIRS = {"unreachable": FaultProxy.come_up, "answering no data": FaultProxy.clear}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_canary_waits_on_missing_metrics_and_goes_on_when_promoted(
    fault_stack: FaultStack, workers: Workers, report: FaultReport, seed: int, fault: str
) -> None:
    if fault_stack.prometheus_url is None:
        pytest.skip("prometheus is not installed: the canaries' analysis needs it")
    namespace = "prom-" + fault.split()[-1]
    proxy = FaultProxy(fault_stack.prometheus_url, seed, f"prometheus-{fault}").start()
    try:
        pair = Pair(R.canary(namespace, "1.0.0", "gateway-api", prometheus_url=fault_stack.prometheus_url),
                    analysed_canary(namespace, proxy, fault))

        async def break_hold_restore_promote(releases: list[R.Release]) -> None:
            (release,) = releases
            FAULTS[fault](proxy)
            await hit(releases, workers)
            status = await R.eventually(lambda: waiting_at_gate(release), f"{release.label}: stopping at a gate",
                                        GATE_TIMEOUT)
            moment = await R.where(release, workers.current.proc.pid if workers.current else None)
            state = await asyncio.to_thread(read_state, fault_stack.kubeconfig, release.namespace)
            held = {"phase": status.phase, "weights": status.weights, "pending activities": moment.activities,
                    "stable": state.deployments[f"{release.app}-stable"].version,
                    "route": state.weights.get(f"httproutes/{release.app}"),
                    "inconclusive": "inconclusive" in status.message,
                    "passed measurements": [m.message for m in status.measurements if m.verdict == "Successful"]}
            assert held == {"phase": Phase.WAITING_PROMOTION, "weights": {"stable": 80, "canary": HELD_WEIGHT},
                            "pending activities": (), "stable": "1.0.0",
                            "route": {f"{release.app}-stable": 100 - HELD_WEIGHT, f"{release.app}-canary": HELD_WEIGHT},
                            "inconclusive": True, "passed measurements": []}
            report.add(f"{release.label}: it waits at {HELD_WEIGHT}% with {release.app}-stable on 1.0.0 and "
                       f"nothing running: {status.message}")
            REPAIRS[fault](proxy)
            await R.eventually(lambda: asyncio.to_thread(has_data, proxy.url, release.namespace, release.version),
                               f"{release.label}: Prometheus answering with data again", GATE_TIMEOUT)
            assert release.handle is not None
            await release.handle.execute_update("promote", {"full": False})
            release.promoted = True
            report.add(f"{release.label}: Prometheus back with data; `promote` sent as an update and accepted")

        await run_scenario(fault_stack, workers, report, f"Prometheus {fault} during a canary's analysis", [pair],
                           break_hold_restore_promote, timeout=400)
    finally:
        proxy.stop()


async def waiting_at_gate(release: R.Release) -> Any:
    status = await R.query(release)
    if status is not None and status.phase in (Phase.WAITING_PROMOTION, Phase.PAUSED):
        return status
    if status is not None and status.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED):
        measured = "; ".join(f"{m.verdict}: {m.message}" for m in status.measurements)
        raise AssertionError(f"{release.label}: ended {status.phase} while Prometheus had no data: {status.message}; "
                             f"its measurements: {measured}")
    return None
