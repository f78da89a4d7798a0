"""What the canary tests share: the activities a canary worker runs, scripted error rates, and `Release`, one app
in one namespace that starts canary runs and reads the cluster back. (Their fixtures are in fixtures_canary.)"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.analysis import measure
from activities.notify import send_notification
from activities.traffic import deploy_track, inspect_release, prepare_routing, rollback_traffic, scale_track, set_weight
from deployflow.kube import api_client
from deployflow.sim.server import Simulator
from deployflow.spec.canary import CanaryRequest
from deployflow.status import DeploymentStatus
from deployflow.traffic.tracks import Tracks
from workflows.canary import CanaryDeployment

# What a canary calls, notifications included, as the project's worker registers them.
ACTIVITIES: list[Callable[..., Any]] = [
    measure, inspect_release, prepare_routing, deploy_track, set_weight, rollback_traffic, scale_track,
    send_notification,
]
REPLICAS = 4


class Rates:
    """What the metric endpoint answers: `script(version, n)` gives the n-th (0-based) answer for a version."""

    def __init__(self) -> None:
        self.script: Callable[[str, int], float | None] = lambda version, n: 0.001
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def next(self, version: str) -> float | None:
        with self.lock:
            n = self.calls.get(version, 0)
            self.calls[version] = n + 1
        return self.script(version, n)


class Release:
    """One app in one namespace: starts canary runs and reads the cluster back."""

    def __init__(self, env: WorkflowEnvironment, sim: Simulator, namespace: str, base: str, rates: Rates,
                 key: str, task_queue: str) -> None:
        self.env, self.sim, self.namespace, self.rates = env, sim, namespace, rates
        self.metrics_url = f"{base}/{key}/{{{{ args.version }}}}"
        self.task_queue = task_queue
        self.started: list[WorkflowHandle[Any, DeploymentStatus]] = []

    def spec(self, version: str, **fields: Any) -> CanaryRequest:
        body: dict[str, Any] = {
            "target": {"cluster": "sim", "namespace": self.namespace, "app": "web"},
            "workload": {"image": f"registry.example.com/web:{version}", "replicas": REPLICAS},
            "error_rate": {
                "provider": {"kind": "web", "url": self.metrics_url, "json_path": "$.data.error_rate"},
                "interval": "30s",
            },
        }
        body.update(fields)
        return CanaryRequest.model_validate(body)

    async def start(self, request: CanaryRequest) -> WorkflowHandle[Any, DeploymentStatus]:
        handle = await self.env.client.start_workflow(
            CanaryDeployment.run, request, id=request.target.workflow_id() + "/" + uuid.uuid4().hex[:6],
            task_queue=self.task_queue, execution_timeout=timedelta(days=3),
        )
        self.started.append(handle)
        return handle

    async def still_running(self) -> list[str]:
        """Runs a test left open; they are terminated, since their timers would move the shared test server's
        clock for every later test."""
        running = []
        for handle in self.started:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                running.append(handle.id)
                await handle.terminate("left running by a test")
        return running

    async def deploy(self, request: CanaryRequest) -> DeploymentStatus:
        handle = await self.start(request)
        result: DeploymentStatus = await handle.result()
        return result

    async def fails(self, request: CanaryRequest | WorkflowHandle[Any, DeploymentStatus]) -> ApplicationError:
        handle = await self.start(request) if isinstance(request, CanaryRequest) else request
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
        cause = err.value.cause
        assert isinstance(cause, ApplicationError), cause
        return cause

    def tracks(self) -> Tracks:
        return Tracks(api_client("sim"), self.spec("v1").target)

    def assert_serving(self, version: str) -> None:
        """The cluster's final state: stable runs `version` on every pod, the canary has none, and the users'
        entry point reaches `version` only."""
        tracks = self.tracks()
        stable, canary = tracks.read("stable"), tracks.read("canary")
        assert stable.version == version and stable.image == f"registry.example.com/web:{version}"
        assert stable.replicas == REPLICAS and stable.ready == REPLICAS, stable
        assert not canary.exists or (canary.replicas == 0 and not tracks._pods("canary")), canary
        assert self.sim.send_requests(self.namespace, "service/web", 400) == {version: 400}

    async def wait_for(
        self, handle: WorkflowHandle[Any, DeploymentStatus], predicate: Callable[[DeploymentStatus], bool]
    ) -> DeploymentStatus:
        for _ in range(600):
            status: DeploymentStatus = await handle.query("status", result_type=DeploymentStatus)
            if predicate(status):
                return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"the workflow never got there; last status: {status.phase} {status.step} "
                             f"{status.message}")


async def replays(handle: WorkflowHandle[Any, DeploymentStatus]) -> None:
    """The recorded history replays against today's code: the workflow is deterministic."""
    history = await handle.fetch_history()
    await Replayer(workflows=[CanaryDeployment], data_converter=pydantic_data_converter).replay_workflow(history)


def analysis_step(release: Release, **metric: Any) -> dict[str, Any]:
    return {"analysis": {"metrics": [{
        "name": "error_rate",
        "provider": {"kind": "web", "url": release.metrics_url, "json_path": "$.data.error_rate"},
        "success_condition": "result < 0.01", "failure_condition": "result > 0.05", **metric,
    }]}}
