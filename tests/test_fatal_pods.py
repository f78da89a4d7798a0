"""A release whose new pods cannot start fails at once, in every strategy, with the same error type and sentence.

Each strategy's waiting activity (blue-green's wait_healthy, the canary's deploy_track, rolling's move_pods) runs
against the simulator with a ten-minute health timeout. The simulator injects image pull failures itself (pod
annotation); it has no missing ConfigMaps or broken container configs, so those states are written into the pods'
status through the API, the way a kubelet reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.rolling import BeginInput, MoveInput, PrepareInput, begin_rolling, move_pods, prepare_rolling
from activities.traffic import TrackRequest, deploy_track
from activities.workloads import ApplyWorkloadInput, WaitHealthyInput, apply_workload, wait_healthy
from deployflow import kube
from deployflow.errors import ErrorType, fatal_waiting_message
from deployflow.sim.controllers.pods import IMAGE_PULL_ERROR, NEVER_READY
from deployflow.sim.server import Simulator
from deployflow.spec.common import Target, Workload
from tests.canary_support import Release
from tests.rolling_support import create_deployment, pods, request, wait_ready

TIMEOUT = timedelta(minutes=10)  # far longer than any test may run: an answer at all means it failed fast
MESSAGES = {
    ErrorType.CREATE_CONTAINER_CONFIG_ERROR: 'configmap "web-config" not found',
    ErrorType.CREATE_CONTAINER_ERROR: "failed to create containerd container: mount /data: no such directory",
    ErrorType.IMAGE_PULL_BACKOFF: 'Back-off pulling image "registry.example.com/web:2.0.0"',
}
STRATEGIES = ["blue-green", "canary", "rolling"]


@dataclass
class Kubelet:
    """Reports `reason` for every container of the namespace's never-ready pods once they run, through the pods'
    status subresource; the simulator leaves a status alone until its own view of the pod changes."""

    sim: Simulator
    namespace: str
    reason: str
    message: str
    reported: list[str] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            for pod in pods(self.sim, self.namespace):
                name = pod["metadata"]["name"]
                started = any(cs.get("started") for cs in (pod.get("status") or {}).get("containerStatuses") or [])
                if name in self.reported or NEVER_READY not in (pod["metadata"].get("annotations") or {}):
                    continue
                if started:
                    await asyncio.to_thread(self.report, pod)
                    self.reported.append(name)
            await asyncio.sleep(0.02)

    def report(self, pod: dict[str, Any]) -> None:
        statuses = [
            {"name": c["name"], "image": c["image"], "ready": False, "started": False, "restartCount": 0,
             "state": {"waiting": {"reason": self.reason, "message": self.message}}}
            for c in pod["spec"]["containers"]
        ]
        path = kube.core_path(self.namespace, "pods", pod["metadata"]["name"]) + "/status"
        kube.merge_patch("sim", path, {"status": {"containerStatuses": statuses}})


@contextlib.asynccontextmanager
async def kubelet(sim: Simulator, namespace: str, reason: str) -> AsyncIterator[Kubelet]:
    reporter = Kubelet(sim, namespace, reason, MESSAGES[reason])
    task = asyncio.create_task(reporter.run())
    try:
        yield reporter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def roll_out(strategy: str, namespace: str, annotations: dict[str, str]) -> None:
    """Starts version 2.0.0 with one pod carrying `annotations` and waits for it as the strategy does."""
    env = ActivityEnvironment()
    target = Target(cluster="sim", namespace=namespace, app="web")
    image = "registry.example.com/web:2.0.0"
    workload = Workload(image=image, replicas=1, pod_annotations=annotations, health_timeout=TIMEOUT)
    if strategy == "blue-green":
        selector = {"app": "web", "deployflow.io/color": "green"}
        env.run(apply_workload, ApplyWorkloadInput(target=target, name="web-green", workload=workload, replicas=1,
                                                   selector=selector))
        await env.run(wait_healthy, WaitHealthyInput(target=target, name="web-green", replicas=1, image=image,
                                                     pod_selector=selector, timeout=TIMEOUT))
    elif strategy == "canary":
        await env.run(deploy_track, TrackRequest(target=target, track="canary", workload=workload, replicas=1,
                                                 timeout_seconds=TIMEOUT.total_seconds()))
    else:
        prep = await env.run(prepare_rolling, PrepareInput(request=request(namespace, pod_annotations=annotations)))
        await env.run(begin_rolling, BeginInput(workload=prep.workload, template=prep.template, replicas=1,
                                                recorded=prep.recorded))
        await env.run(move_pods, MoveInput(workload=prep.workload, count=1, replicas=1, surge=1, unavailable=0,
                                           timeout_seconds=TIMEOUT.total_seconds(), label="batch 1/1"))
    raise AssertionError(f"{strategy}: the release became healthy")


async def prepared(sim: Simulator, namespace: str, strategy: str) -> None:
    if strategy == "rolling":  # a rolling release updates a running Deployment
        create_deployment(namespace, replicas=1)
        await wait_ready(sim, namespace, 1)


@pytest.mark.parametrize("reason", sorted(MESSAGES))
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_pods_that_cannot_start_fail_the_release_at_once_with_one_sentence(
    sim: Simulator, namespace: str, strategy: str, reason: str
) -> None:
    await prepared(sim, namespace, strategy)
    async with kubelet(sim, namespace, reason) as reporter:
        with pytest.raises(ApplicationError) as failed:
            await roll_out(strategy, namespace, {NEVER_READY: "true"})
    error = failed.value
    assert error.type == reason and error.non_retryable, (error.type, error.message)
    assert len(reporter.reported) == 1
    assert fatal_waiting_message(reporter.reported[0], reason, MESSAGES[reason]) in error.message


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_an_image_that_cannot_be_pulled_fails_the_release_at_once(
    sim: Simulator, namespace: str, strategy: str
) -> None:
    await prepared(sim, namespace, strategy)
    with pytest.raises(ApplicationError) as failed:
        await roll_out(strategy, namespace, {IMAGE_PULL_ERROR: "true"})
    error = failed.value
    # The kubelet reports ErrImagePull first, then backs off (ImagePullBackOff): whichever the wait sees first.
    assert error.type in (ErrorType.ERR_IMAGE_PULL, ErrorType.IMAGE_PULL_BACKOFF) and error.non_retryable
    failing = [p["metadata"]["name"] for p in pods(sim, namespace) if IMAGE_PULL_ERROR in p["metadata"]["annotations"]]
    assert len(failing) == 1
    assert f"{fatal_waiting_message(failing[0], str(error.type))} (" in error.message


async def test_a_canary_missing_its_configmap_rolls_back_without_waiting_for_its_timeout(
    release: Release, sim: Simulator, namespace: str
) -> None:
    reason = ErrorType.CREATE_CONTAINER_CONFIG_ERROR
    workload = {"image": "registry.example.com/web:v2", "replicas": 4, "pod_annotations": {NEVER_READY: "true"},
                "health_timeout": "10m"}
    async with kubelet(sim, namespace, reason) as reporter:
        failed = await release.fails(release.spec("v2", workload=workload))
    assert any(fatal_waiting_message(pod, reason, MESSAGES[reason]) in failed.message for pod in reporter.reported), (
        failed.message
    )
    release.assert_serving("v1")
