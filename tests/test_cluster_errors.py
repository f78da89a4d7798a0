"""Canary and rolling runs against a target that cannot exist fail at once, naming what is missing, with nothing
changed in the cluster: like blue-green (tests/test_bluegreen_cluster_errors.py), not after minutes of retries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.rolling import ROLLOUT_ANNOTATION
from deployflow.sim.resources import ALL, NAMESPACES
from deployflow.sim.server import Simulator
from deployflow.spec.canary import CanaryRequest
from deployflow.status import DeploymentStatus, Phase
from tests.canary_support import ACTIVITIES as CANARY_ACTIVITIES
from tests.rolling_support import ACTIVITIES as ROLLING_ACTIVITIES
from tests.rolling_support import create_deployment, request, workload
from workflows.canary import CanaryDeployment
from workflows.rolling import RollingDeployment

pytestmark = pytest.mark.usefixtures("kubeconfig")


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str]]:
    queue = f"cluster-errors-{uuid.uuid4().hex[:8]}"
    async with Worker(time_skipping_env.client, task_queue=queue, workflows=[CanaryDeployment, RollingDeployment],
                      activities=[*CANARY_ACTIVITIES, *(a for a in ROLLING_ACTIVITIES if a not in CANARY_ACTIVITIES)]):
        yield time_skipping_env.client, queue


def canary_request(namespace: str, cluster: str = "sim") -> CanaryRequest:
    return CanaryRequest.model_validate({
        "target": {"cluster": cluster, "namespace": namespace, "app": "web"},
        "workload": {"image": "registry.example.com/web:v2", "replicas": 2},
        "error_rate": {"provider": {"kind": "web", "url": "http://127.0.0.1:9/rate", "json_path": "$.rate"},
                       "interval": "30s"},
    })


async def start(client: Client, queue: str, workflow: Any, req: Any) -> WorkflowHandle[Any, DeploymentStatus]:
    return await client.start_workflow(
        workflow, req, id=f"{req.target.workflow_id()}/{uuid.uuid4().hex[:6]}", task_queue=queue,
        execution_timeout=timedelta(hours=1),
    )


async def fails(handle: WorkflowHandle[Any, DeploymentStatus]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.non_retryable
    assert cause.message.endswith("nothing in the cluster was changed"), cause.message
    status = await handle.query("status", result_type=DeploymentStatus)
    assert status.phase == Phase.FAILED and status.message == cause.message, status
    return cause


async def activity_attempts(handle: WorkflowHandle[Any, DeploymentStatus]) -> list[int]:
    """The attempt number of every activity the run started: [1] when one ran, once, and nothing after it."""
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


def written_in(sim: Simulator, namespace: str) -> list[str]:
    return [r.plural for r in ALL if r.namespaced and sim.store.list(r, namespace)]


STRATEGIES = {"canary": (CanaryDeployment.run, canary_request), "rolling": (RollingDeployment.run, request)}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
async def test_missing_namespace_fails_at_once_naming_it(
    env: tuple[Client, str], sim: Simulator, strategy: str
) -> None:
    missing = f"t-missing-{uuid.uuid4().hex[:6]}"
    workflow, build = STRATEGIES[strategy]
    handle = await start(*env, workflow, build(missing))

    cause = await fails(handle)

    assert cause.type == "NamespaceNotFound", cause
    assert f"namespace {missing!r} does not exist in cluster 'sim'" in cause.message, cause.message
    assert await activity_attempts(handle) == [1]
    assert sim.store.get(NAMESPACES, None, missing) is None
    assert written_in(sim, missing) == []


async def test_canary_unknown_cluster_fails_at_once_listing_the_contexts(
    env: tuple[Client, str], sim: Simulator, namespace: str
) -> None:
    handle = await start(*env, CanaryDeployment.run, canary_request(namespace, cluster="prod-eu"))

    cause = await fails(handle)

    assert cause.type == "ClusterNotFound", cause
    assert "cluster 'prod-eu'" in cause.message and "(available: sim)" in cause.message, cause.message
    assert await activity_attempts(handle) == [1]
    assert written_in(sim, namespace) == []


async def test_rolling_unknown_cluster_fails_at_once_leaving_the_workload_alone(
    env: tuple[Client, str], namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    before = workload(namespace)
    req = request(namespace).model_copy(
        update={"target": request(namespace).target.model_copy(update={"cluster": "prod-eu"})}
    )
    handle = await start(*env, RollingDeployment.run, req)

    cause = await fails(handle)

    assert cause.type == "ClusterNotFound", cause
    assert "cluster 'prod-eu'" in cause.message and "(available: sim)" in cause.message, cause.message
    assert await activity_attempts(handle) == [1]
    after = workload(namespace)
    assert after["spec"] == before["spec"]
    assert ROLLOUT_ANNOTATION not in (after["metadata"].get("annotations") or {})  # no rollout was recorded
