"""Releases survive their workers: a worker stopped the way SIGTERM stops it hands its runs over without a rollback,
and a worker that evicts runs from its cache all the time still finishes every release.

Both shut-down and eviction tear a run's coroutines down inside the worker (see TEMPORAL-NOTES, "Eviction and
shutdown"): a strategy that mistook that teardown for a failure would roll back a healthy release.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from deployflow.sim.server import Simulator
from deployflow.spec import CanaryRequest, RollingRequest
from deployflow.status import DeploymentStatus, Phase
from tests import rolling_support as rolling
from tests.bluegreen_support import bluegreen_request, cluster_view, start, wait_for
from worker import build_worker, run_worker
from workflows.canary import CanaryDeployment
from workflows.rolling import RollingDeployment

QUEUE = "durability"
# Long enough to stop one worker and start the next while a run waits on it, short enough for a test: the dev
# server's timers are real.
TIMER = "8s"
NEVER_WRITTEN = (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED)


@asynccontextmanager
async def worker_process(client: Client, queue: str, identity: str) -> AsyncIterator[None]:
    """`worker.py`'s own loop (run_worker with a stop event); leaving the block is what SIGTERM does to it. The
    identity shows in the history which worker completed each task."""
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_worker(client, queue, stop, shutdown_timeout=timedelta(seconds=5), identity=identity)
    )
    try:
        yield
    finally:
        stop.set()
        await running


@contextmanager
def no_cleanup_started_by_teardown() -> Iterator[None]:
    """A strategy that took the teardown of an evicted run for a failure would start its rollback (or another
    cleanup) in a run that no longer exists: the SDK discards its commands, and Python reports the coroutine that
    was never awaited when it collects it. Nothing of the kind may happen."""
    reported: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        reported.append(f"{unraisable.exc_type.__name__}: {unraisable.exc_value}")
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
    finally:
        sys.unraisablehook = previous
    reported += [str(w.message) for w in caught]
    assert [r for r in reported if "never awaited" in r] == []


def canary(namespace: str, app: str, version: str, **fields: Any) -> CanaryRequest:
    return CanaryRequest.model_validate(
        {
            "target": {"cluster": "sim", "namespace": namespace, "app": app},
            "workload": {"image": f"registry.example.com/{app}:{version}", "replicas": 2},
            **fields,
        }
    )


async def start_canary(client: Client, queue: str, request: CanaryRequest) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        CanaryDeployment.run, request, id=request.target.workflow_id(), task_queue=queue
    )


async def start_rolling(client: Client, queue: str, request: RollingRequest) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        RollingDeployment.run, request, id=request.target.workflow_id(), task_queue=queue
    )


async def completed_by(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The identity of the worker that completed each workflow task, in order."""
    history = await handle.fetch_history()
    return [
        e.workflow_task_completed_event_attributes.identity
        for e in history.events
        if e.HasField("workflow_task_completed_event_attributes")
    ]


def assert_no_rollback(status: DeploymentStatus) -> None:
    assert status.phase == Phase.SUCCEEDED, status
    entered = [e.message for e in status.events if e.message.startswith(tuple(p.value for p in NEVER_WRITTEN))]
    assert entered == [], entered


def once(status: DeploymentStatus, text: str) -> None:
    """`text` happened exactly once: a step done before the hand-over was neither lost nor done again."""
    matching = [e.message for e in status.events if text in e.message]
    assert len(matching) == 1, (text, [e.message for e in status.events])


@dataclass
class Release:
    start: Callable[[Client, str], Any]
    parked: Callable[[DeploymentStatus], bool]  # waiting on a durable timer, the moment to stop the worker
    check: Callable[[DeploymentStatus], None]


async def bluegreen_release(client: Client, queue: str, namespace: str, sim: Simulator) -> Release:
    await (await start(client, queue, bluegreen_request(namespace, "1.0"))).result()

    def check(status: DeploymentStatus) -> None:
        once(status, "traffic switched to green")
        view = cluster_view(namespace)
        assert view.color_of("web") == "green" and view.replicas["blue"] == 0, view

    return Release(
        lambda c, q: start(c, q, bluegreen_request(namespace, "2.0", standby=TIMER)),
        lambda s: s.phase == Phase.STANDBY,
        check,
    )


async def canary_release(client: Client, queue: str, namespace: str, sim: Simulator) -> Release:
    await (await start_canary(client, queue, canary(namespace, "web", "v1"))).result()
    steps = [{"set_weight": 50}, {"pause": {"duration": TIMER}}, {"set_weight": 75}]

    def check(status: DeploymentStatus) -> None:
        once(status, "canary weight 50%")
        once(status, "canary weight 75%")
        once(status, "promoted: web-stable runs v2")

    return Release(
        lambda c, q: start_canary(c, q, canary(namespace, "web", "v2", steps=steps)),
        lambda s: s.step.startswith("2/3"),
        check,
    )


async def rolling_release(client: Client, queue: str, namespace: str, sim: Simulator) -> Release:
    rolling.create_deployment(namespace, replicas=4)
    await rolling.wait_ready(sim, namespace, 4)

    def check(status: DeploymentStatus) -> None:
        once(status, "batch 1/2 healthy")
        once(status, "batch 2/2 healthy")
        assert sorted(rolling.versions(sim, namespace).values()) == ["2.0.0"] * 4

    return Release(
        lambda c, q: start_rolling(c, q, rolling.request(namespace, batch_size=2, bake=TIMER)),
        lambda s: "baking" in s.message,
        check,
    )


@pytest.mark.parametrize("prepare", [bluegreen_release, canary_release, rolling_release], ids=lambda f: f.__name__)
async def test_a_worker_stopped_mid_release_hands_it_over_without_a_rollback(
    dev_env: WorkflowEnvironment, sim: Simulator, namespace: str, prepare: Any
) -> None:
    client = dev_env.client
    queue = f"{QUEUE}-{namespace}"
    with no_cleanup_started_by_teardown():
        async with worker_process(client, queue, "first"):
            release: Release = await prepare(client, queue, namespace, sim)
            handle = await release.start(client, queue)
            before = await wait_for(handle, release.parked, "a durable timer in the middle of the release")
        async with worker_process(client, queue, "second"):
            status: DeploymentStatus = await handle.result()
    assert_no_rollback(status)
    release.check(status)
    # Nothing recorded before the hand-over was lost: the events up to it are still there, in order.
    assert status.events[: len(before.events)] == before.events
    workers = await completed_by(handle)
    assert "first" in workers and workers[-1] == "second", workers


async def test_a_worker_that_evicts_all_the_time_finishes_every_release(
    dev_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    client = dev_env.client
    rolling.create_deployment(namespace, app="catalog", replicas=4)
    await rolling.wait_ready(sim, namespace, 4)
    executor = ThreadPoolExecutor(max_workers=16)
    queue = f"{QUEUE}-evict-{namespace}"
    shop = {"target": {"cluster": "sim", "namespace": namespace, "app": "shop"}}
    with no_cleanup_started_by_teardown():
        try:
            # One cached run for four concurrent releases: nearly every workflow task replays its run from the start.
            evicting = build_worker(client, queue, executor=executor, max_cached_workflows=1)
            async with evicting:
                firsts = [
                    await start_canary(client, queue, canary(namespace, "cart", "v1")),
                    await start_canary(client, queue, canary(namespace, "cart-api", "v1")),
                    await start(client, queue, bluegreen_request(namespace, "1.0", **shop)),
                ]
                await asyncio.gather(*(h.result() for h in firsts))
                steps = [{"set_weight": 25}, {"pause": {"duration": "2s"}}, {"set_weight": 50}]
                handles = [
                    await start_canary(client, queue, canary(namespace, "cart", "v2", steps=steps)),
                    await start_canary(client, queue, canary(namespace, "cart-api", "v2", steps=steps)),
                    await start(client, queue, bluegreen_request(namespace, "2.0", standby="2s", **shop)),
                    await start_rolling(client, queue, rolling.request(namespace, app="catalog", batch_size=1)),
                ]
                results = await asyncio.gather(*(h.result() for h in handles))
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
    for status in results:
        assert_no_rollback(status)
    assert [s.strategy for s in results] == ["canary", "canary", "blue-green", "rolling"]
    assert all(s.version in ("v2", "2.0", "2.0.0") for s in results), [s.version for s in results]
