"""Release metrics: reasons classed, live gauges, and a release counted once when a second worker finishes it."""

from __future__ import annotations

import asyncio
import gc
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from deployflow.metrics import LiveReleases, deciding_measurement, port_from_env, rollback_reason
from deployflow.spec.control import AbortRequest, PromoteRequest
from deployflow.status import DeploymentStatus, Measurement, Phase
from tests.bluegreen_support import bluegreen_request, start, wait_for
from tests.metrics_support import metrics_worker
from worker import build_worker

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reason", "after_promotion", "expected"),
    [
        ("aborted: wrong build", False, "abort"),
        ("aborted: found a bug in QA", True, "abort"),
        ("cancelled", False, "cancel"),
        ("at step 2 (10%): error_rate 0.183 > 0.02, 1 of 1 measurement failed", False, "analysis"),
        ("smoke test GET /health answered 500", False, "smoke_test"),
        ("batch 1/2: new pods are failing: pod web-1: CrashLoopBackOff", False, "health"),
        ("wait_healthy timed out (START_TO_CLOSE)", False, "health"),
        ("hook migrate (job) failed: exit 1", False, "hook"),
        ("errors after the switch", True, "post_promotion"),
        ("the moon is full", False, "other"),
    ],
)
def test_rollback_reasons_fall_into_a_few_classes(reason: str, after_promotion: bool, expected: str) -> None:
    assert rollback_reason(reason, after_promotion=after_promotion) == expected


def test_a_failed_measurement_makes_an_unexplained_rollback_an_analysis_one() -> None:
    measurements = [
        Measurement(time=NOW, metric="latency", value=0.1, verdict="Successful"),
        Measurement(time=NOW, metric="error_rate", value=0.2, condition="< 0.05", verdict="Failed"),
    ]
    decided = deciding_measurement(measurements)
    assert decided is not None and decided.metric == "error_rate"
    assert rollback_reason("step 3 failed", failed_measurement=True) == "analysis"


def test_port_from_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_PORT", "nine")
    with pytest.raises(ValueError, match="X_PORT"):
        port_from_env("X_PORT", 1)
    monkeypatch.setenv("X_PORT", "0")
    assert port_from_env("X_PORT", 1) == 0
    monkeypatch.delenv("X_PORT")
    assert port_from_env("X_PORT", 1) == 1


class _Run:
    def __init__(self, phase: Phase, version: str = "2.0") -> None:
        self.status = DeploymentStatus(strategy="canary", app="cart", namespace="n", cluster="c", version=version,
                                       phase=phase)


def _gauges(live: LiveReleases) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(s.name, tuple(s.labels.values())): s.value for family in live.collect() for s in family.samples}


def test_live_gauges_follow_runs_until_they_end_or_are_evicted() -> None:
    live = LiveReleases()
    a, b = _Run(Phase.PROGRESSING), _Run(Phase.PROGRESSING)
    live.track("a", a)
    live.track("b", b)
    assert _gauges(live)[("deployflow_releases_in_flight", ("canary", "Progressing"))] == 2
    a.status.measurements.append(Measurement(time=NOW, metric="error_rate", value=0.3, verdict="Failed"))
    a.status.phase = Phase.ROLLING_BACK
    gauges = _gauges(live)
    assert gauges[("deployflow_releases_in_flight", ("canary", "RollingBack"))] == 1
    assert gauges[("deployflow_analysis_measurement", ("error_rate", "cart", "2.0"))] == 0.3
    live.finished("a", a.status)
    del b  # a run evicted from the worker's cache is no longer counted
    gc.collect()
    gauges = _gauges(live)
    assert not [k for k in gauges if k[0] == "deployflow_releases_in_flight"]
    # The last measurement stays after its run ended.
    assert gauges[("deployflow_analysis_measurement", ("error_rate", "cart", "2.0"))] == 0.3


async def test_a_release_is_counted_once_when_a_second_worker_finishes_it(
    dev_env: WorkflowEnvironment, kubeconfig: str, namespace: str
) -> None:
    client = dev_env.client
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    manual = {"promotion": {"mode": "manual", "timeout": "10m"}, "standby": "0s"}
    labels = {"namespace": namespace, "app": "web", "strategy": "blue-green"}

    async with metrics_worker(client, kubeconfig, queue) as first:
        handle = await start(client, queue, bluegreen_request(namespace, "1.0", **manual))
        await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the promotion gate")
        assert first.total("deployflow_releases_in_flight", strategy="blue-green", phase="WaitingPromotion") >= 1
        counted_by_first = first.total("deployflow_releases_total", **labels)
    assert counted_by_first == 0  # stopped mid-run: nothing ended there

    async with metrics_worker(client, kubeconfig, queue, sdk_metrics=True) as second:
        await handle.execute_update("promote", PromoteRequest())
        status: DeploymentStatus = await handle.result()
        assert status.phase == Phase.SUCCEEDED
        assert second.total("deployflow_releases_total", outcome="succeeded", **labels) == 1
        assert len(second.samples("deployflow_release_duration_seconds_count", strategy="blue-green",
                                  outcome="succeeded")) == 1
        # The second worker replayed the first worker's phase changes without counting them, and a query of the
        # closed run (a full replay) counts nothing either.
        await handle.query("status", result_type=DeploymentStatus)
        assert second.total("deployflow_releases_total", **labels) == 1
        assert status.details["outcome"] == "succeeded" and status.details["duration"]

        aborted = await start(client, queue, bluegreen_request(namespace, "2.0", **manual))
        await wait_for(aborted, lambda s: s.phase == Phase.WAITING_PROMOTION, "the promotion gate")
        await aborted.execute_update("abort", AbortRequest(reason="wrong build"))
        with pytest.raises(WorkflowFailureError):
            await aborted.result()
        assert second.total("deployflow_releases_total", outcome="rolled_back", **labels) == 1
        assert second.total("deployflow_rollbacks_total", strategy="blue-green", reason="abort") == 1
        assert second.total("deployflow_rollback_duration_seconds_count", strategy="blue-green") == 1
        assert not second.samples("deployflow_releases_in_flight", strategy="blue-green")
        assert second.sdk_metrics_url is not None
        assert "temporal_" in httpx.get(second.sdk_metrics_url, timeout=10).text


async def test_a_worker_that_evicts_constantly_counts_each_release_once(
    dev_env: WorkflowEnvironment, kubeconfig: str, namespace: str
) -> None:
    """With one cached run and three releases at once, every workflow task replays its run from the start."""
    client = dev_env.client
    queue = f"metrics-evict-{uuid.uuid4().hex[:8]}"
    apps = ["evict-a", "evict-b", "evict-c"]

    def counted(app: str) -> float:
        labels = {"strategy": "blue-green", "namespace": namespace, "app": app, "outcome": "succeeded"}
        return REGISTRY.get_sample_value("deployflow_releases_total", labels) or 0.0

    executor = ThreadPoolExecutor(max_workers=8)
    try:
        async with build_worker(client, queue, executor=executor, max_concurrent_activities=8, max_cached_workflows=1):
            handles = [
                await start(client, queue, bluegreen_request(
                    namespace, "1.0", standby="0s", target={"cluster": "sim", "namespace": namespace, "app": app}))
                for app in apps
            ]
            results = await asyncio.gather(*(h.result() for h in handles))
            assert all(r.phase == Phase.SUCCEEDED for r in results)
            for h in handles:  # a full replay of each closed run
                await h.query("status", result_type=DeploymentStatus)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    assert [counted(app) for app in apps] == [1.0, 1.0, 1.0]
