"""RollingDeployment on the time-skipping server with the real activities against the simulator."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from deployflow.sim.controllers.pods import CRASH_LOOP, is_ready
from deployflow.sim.server import Simulator
from deployflow.status import Phase
from tests.rolling_support import (
    create_deployment,
    create_statefulset,
    failure_message,
    pods,
    ready_versions,
    request,
    rolling_worker,
    start,
    status_of,
    versions,
    wait_for,
    wait_phase,
    wait_ready,
    wait_step,
    workload,
)
from workflows.rolling import RollingDeployment


class Sampler:
    """Watches the simulated cluster from a thread while a rollout runs: the fewest ready pods ever seen."""

    def __init__(self, sim: Simulator, namespace: str) -> None:
        self.sim, self.namespace = sim, namespace
        self.min_ready = 10**6
        self.max_pods = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.sim.store.lock:
                current = pods(self.sim, self.namespace)
            self.min_ready = min(self.min_ready, sum(1 for p in current if is_ready(p)))
            self.max_pods = max(self.max_pods, len(current))
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---- tests ------------------------------------------------------------------------------------------------------


async def test_batches_replace_every_pod_without_losing_capacity(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    no_backend_before = sim.no_backend_requests(namespace=namespace, service="web")
    async with rolling_worker(time_skipping_env) as queue:
        req = request(namespace, batch_size=1, max_surge=1, max_unavailable=0)
        with Sampler(sim, namespace) as sampler:
            handle = await start(time_skipping_env, queue, req)
            status = await handle.result()
    assert status.phase == Phase.SUCCEEDED
    assert sorted(versions(sim, namespace).values()) == ["2.0.0"] * 4
    assert ready_versions(sim, namespace) == ["2.0.0"] * 4
    # Zero downtime: never fewer ready pods than replicas - maxUnavailable, never more than replicas + maxSurge.
    assert sampler.samples > 10
    assert sampler.min_ready >= 4
    assert sampler.max_pods <= 5
    assert sim.no_backend_requests(namespace=namespace, service="web") == no_backend_before
    served = sim.request_counts(namespace)["web"]
    assert sum(served["1.0.0"].values()) > 0 and sum(served["2.0.0"].values()) > 0  # users were served throughout
    deploy = workload(namespace)
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/web:2.0.0"
    assert not deploy["spec"].get("paused")
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"  # handed back with the original strategy
    assert "deployflow.io/rollout" not in (deploy["metadata"].get("annotations") or {})
    healthy = [e.message for e in status.events if "healthy" in e.message]
    assert healthy == [f"batch {i}/4 healthy: {i}/4 pods run 2.0.0, all ready" for i in range(1, 5)]
    assert status.previous_version == "1.0.0" and status.version == "2.0.0"
    await replay(handle)


async def replay(handle: WorkflowHandle[Any, Any]) -> None:
    """The recorded history replays against the current code: the workflow is deterministic."""
    replayer = Replayer(workflows=[RollingDeployment], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_pause_holds_between_batches_and_resume_continues(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1))
        await wait_step(handle, "batch 1/4")
        await handle.signal("pause")
        status = await wait_phase(handle, Phase.PAUSED)
        done = status.details.get("updated_replicas", 0)
        assert 1 <= done < 4
        # Held between two batches: the finished batches' pods are ready, nothing else is moving.
        first = versions(sim, namespace)
        assert sorted(first.values()) == ["1.0.0"] * (4 - done) + ["2.0.0"] * done
        assert ready_versions(sim, namespace) == sorted(first.values())
        await asyncio.sleep(0.5)  # 10 simulated seconds
        assert versions(sim, namespace) == first
        assert (await status_of(handle)).phase == Phase.PAUSED
        await handle.signal("resume")
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    assert sorted(versions(sim, namespace).values()) == ["2.0.0"] * 4


async def test_abort_mid_rollout_restores_the_recorded_revision(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    before = workload(namespace)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1))
        await wait_step(handle, "batch 1/4")
        await handle.signal("pause")
        await wait_phase(handle, Phase.PAUSED)
        assert "2.0.0" in versions(sim, namespace).values()
        await handle.execute_update("abort", {"reason": "wrong build"})
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        final = await status_of(handle)
    assert "aborted: wrong build" in failure_message(failed.value)
    assert final.phase == Phase.ROLLED_BACK, [e.message for e in final.events][-4:]
    await wait_ready(sim, namespace, 4)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0"] * 4
    await replay(handle)
    after = workload(namespace)
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["spec"]["strategy"] == before["spec"]["strategy"]
    assert not after["spec"].get("paused")


async def test_crash_looping_batch_stops_the_rollout_and_rolls_back(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    async with rolling_worker(time_skipping_env) as queue:
        req = request(namespace, batch_size=2, pod_annotations={CRASH_LOOP: "true"})
        with Sampler(sim, namespace) as sampler:
            handle = await start(time_skipping_env, queue, req)
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
        final = await status_of(handle)
    message = failure_message(failed.value)
    assert "batch 1/2" in message and "CrashLoopBackOff" in message
    assert final.phase == Phase.ROLLED_BACK
    assert sampler.min_ready >= 4  # maxUnavailable 0: the crash loop never cost a serving pod
    await wait_ready(sim, namespace, 4)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0"] * 4
    assert all(CRASH_LOOP not in (p["metadata"].get("annotations") or {}) for p in pods(sim, namespace))


async def test_rollback_batch_by_batch_after_a_failed_later_batch(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1, rollback="batches"))
        await wait_step(handle, "batch 2/4")
        await handle.signal("pause")
        await wait_phase(handle, Phase.PAUSED)
        await handle.signal("abort")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        final = await status_of(handle)
    steps = [e.message for e in final.events if "rollback " in e.message and "pods back to" in e.message]
    assert steps, [e.message for e in final.events]
    assert final.phase == Phase.ROLLED_BACK
    await wait_ready(sim, namespace, 4)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0"] * 4


async def test_batch_rollback_of_crash_looping_pods_keeps_every_old_pod_serving(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    req = request(namespace, batch_size="50%", rollback="batches", pod_annotations={CRASH_LOOP: "true"})
    async with rolling_worker(time_skipping_env) as queue:
        with Sampler(sim, namespace) as sampler:
            handle = await start(time_skipping_env, queue, req)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
        final = await status_of(handle)
    assert final.phase == Phase.ROLLED_BACK
    # The old pods were never scaled down (maxUnavailable 0 and the new pod never became available), so the
    # rollback only removes the crash-looping pods: no serving pod is touched on the way back.
    assert sampler.min_ready >= 4
    await wait_ready(sim, namespace, 4)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0"] * 4


async def test_cancel_from_the_ui_rolls_back_too(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=3)
    await wait_ready(sim, namespace, 3)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1))
        await wait_step(handle, "batch 2/3")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        final = await status_of(handle)
        description = await handle.describe()
    assert "cancel" in failure_message(failed.value).lower()
    assert description.status == WorkflowExecutionStatus.CANCELED
    assert final.phase == Phase.ROLLED_BACK
    await wait_ready(sim, namespace, 3)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0"] * 3
    assert not workload(namespace)["spec"].get("paused")


async def test_analysis_between_batches_decides(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    healthy = {
        "metrics": [
            {"name": "ready", "provider": {"kind": "kubernetes", "measure": "ready-ratio"},
             "success_condition": "result >= 1", "count": 2, "interval": "30s"}
        ]
    }
    failing = {
        "metrics": [
            {"name": "restarts", "provider": {"kind": "kubernetes", "measure": "restarts"},
             "failure_condition": "result >= 0"}
        ]
    }
    async with rolling_worker(time_skipping_env) as queue:
        first = await start(time_skipping_env, queue, request(namespace, batch_size=1, analysis=healthy))
        final = await first.result()
        assert final.phase == Phase.SUCCEEDED
        assert [m.verdict for m in final.measurements] == ["Successful"] * 4  # two measurements after each batch
        handle = await start(time_skipping_env, queue, request(namespace, version="3.0.0", analysis=failing))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "analysis failed" in failure_message(failed.value) and "restarts" in failure_message(failed.value)
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["2.0.0", "2.0.0"]


async def test_statefulset_partitions_move_highest_ordinals_first(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_statefulset(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    async with rolling_worker(time_skipping_env) as queue:
        req = request(namespace, app="db", kind="StatefulSet", batch_size=2, max_unavailable=1)
        handle = await start(time_skipping_env, queue, req)
        order: list[str] = []
        while (await status_of(handle)).phase not in (Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK):
            for name, version in sorted(versions(sim, namespace).items()):
                if version == "2.0.0" and name not in order:
                    order.append(name)
            await asyncio.sleep(0.01)
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    assert order[:2] == ["db-3", "db-2"] and sorted(order) == ["db-0", "db-1", "db-2", "db-3"]
    assert versions(sim, namespace) == {f"db-{i}": "2.0.0" for i in range(4)}
    sts = workload(namespace, "statefulsets", "db")
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 0
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]


async def test_statefulset_pause_holds_at_a_partition_and_abort_rolls_back(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_statefulset(namespace, replicas=4)
    await wait_ready(sim, namespace, 4)
    async with rolling_worker(time_skipping_env) as queue:
        req = request(namespace, app="db", kind="StatefulSet", batch_size=2, approval={"after_batch": 1})
        handle = await start(time_skipping_env, queue, req)
        await wait_phase(handle, Phase.WAITING_PROMOTION)
        assert versions(sim, namespace) == {"db-0": "1.0.0", "db-1": "1.0.0", "db-2": "2.0.0", "db-3": "2.0.0"}
        sts = workload(namespace, "statefulsets", "db")
        assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2
        await handle.execute_update("abort", {"reason": "stop"})
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    await wait_ready(sim, namespace, 4)
    assert versions(sim, namespace) == {f"db-{i}": "1.0.0" for i in range(4)}


async def test_native_mode_drives_kubernetes_rolling_update(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=3)
    await wait_ready(sim, namespace, 3)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, mode="native", max_surge=1))
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    await wait_ready(sim, namespace, 3)
    assert sorted(versions(sim, namespace).values()) == ["2.0.0"] * 3
    deploy = workload(namespace)
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}


async def test_native_mode_pause_pauses_the_deployment_mid_rollout(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=3)
    await wait_ready(sim, namespace, 3)
    slow = {"sim.deployflow.io/ready-delay-seconds": "20"}  # one simulated second per 50 ms: 1 s per new pod
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(
            time_skipping_env, queue, request(namespace, mode="native", max_surge=1, pod_annotations=slow)
        )
        await wait_for(lambda: "2.0.0" in versions(sim, namespace).values(), "the first new pod")
        await handle.signal("pause")
        await wait_phase(handle, Phase.PAUSED)
        assert workload(namespace)["spec"]["paused"] is True
        held = versions(sim, namespace)
        assert sorted(held.values()).count("1.0.0") >= 2  # stopped part-way
        await asyncio.sleep(2.0)  # long enough for a pod or two to have been replaced had it not been paused
        assert versions(sim, namespace) == held
        await handle.signal("resume")
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    await wait_ready(sim, namespace, 3)
    assert sorted(versions(sim, namespace).values()) == ["2.0.0"] * 3
    assert not workload(namespace)["spec"].get("paused")


async def test_missing_workload_fails_before_anything_changes(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, app="nope"))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "Deployment" in failure_message(failed.value) and "does not exist" in failure_message(failed.value)


def test_spec_rejects_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="max_surge"):
        request("ns", max_surge=0, max_unavailable=0)
    with pytest.raises(ValueError, match="batch_size"):
        request("ns", batch_size="150%")
    with pytest.raises(ValueError, match="mode"):
        request("ns", kind="StatefulSet", mode="native")
    assert request("ns", batch_size="25%").batch_plan(10) == [3, 6, 9, 10]
    assert request("ns", batch_size=4).batch_plan(4) == [4]
