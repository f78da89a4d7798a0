"""The fault proxy itself: it forwards faithfully (watches included), injects exactly what its plan says, and
refuses connections while down."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from deployflow.sim.server import Simulator
from tests.faults.proxy import FaultPlan, FaultProxy

pytestmark = pytest.mark.faults


@pytest.fixture
def proxy(sim: Simulator) -> Iterator[FaultProxy]:
    started = FaultProxy(sim.url, seed=1, name="test").start()
    try:
        yield started
    finally:
        started.stop()


def test_forwards_requests_and_streams_watches(proxy: FaultProxy, sim: Simulator) -> None:
    direct = httpx.get(f"{sim.url}/api/v1/namespaces/kube-system", timeout=10)
    through = httpx.get(f"{proxy.url}/api/v1/namespaces/kube-system", timeout=10)
    assert through.status_code == 200 and through.json() == direct.json()
    with httpx.stream("GET", f"{proxy.url}/api/v1/namespaces", params={"watch": "1", "timeoutSeconds": "1"},
                      timeout=10) as watch:
        events = [line for line in watch.iter_lines() if line]
    assert any('"kube-system"' in event for event in events), events
    assert proxy.counters.injected_total == 0


def test_answers_what_its_plan_says(proxy: FaultProxy) -> None:
    proxy.set_plan(FaultPlan(error_rate=1.0, codes=(503,)))
    answer = httpx.get(f"{proxy.url}/api/v1/namespaces", timeout=10)
    assert answer.status_code == 503 and answer.json()["reason"] == "ServiceUnavailable"

    proxy.set_plan(FaultPlan(conflict_rate=1.0))
    assert httpx.get(f"{proxy.url}/api/v1/namespaces", timeout=10).status_code == 200  # reads never conflict
    write = httpx.post(f"{proxy.url}/api/v1/namespaces", json={"metadata": {"name": "never-created"}}, timeout=10)
    assert write.status_code == 409 and write.json()["reason"] == "Conflict"

    proxy.answer_no_data()
    empty = httpx.get(f"{proxy.url}/api/v1/query", params={"query": "up"}, timeout=10).json()
    assert empty == {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert proxy.counters.injected == {503: 1, 409: 1}


def test_refuses_connections_while_down(proxy: FaultProxy) -> None:
    proxy.go_down()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proxy.url}/version", timeout=5)
    proxy.come_up()
    assert httpx.get(f"{proxy.url}/version", timeout=5).status_code == 200
