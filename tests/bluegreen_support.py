"""Shared pieces of the blue-green tests: requests, a worker, waiting on status, reading the cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from deployflow import kube, workloads
from deployflow.spec import BlueGreenRequest
from deployflow.status import DeploymentStatus
from worker import build_worker
from workflows.bluegreen import BlueGreenDeployment

# Pod annotations the simulator reads as faults to inject (never-ready, crash-loop...).
FAULT = "sim.deployflow.io/"

# How long a test waits for a workflow to reach a state before giving up (a hang guard, not a timing assert).
STATE_WAIT_SECONDS = 60.0


def bluegreen_request(namespace: str, version: str = "1.0", **fields: Any) -> BlueGreenRequest:
    workload = {"image": f"registry.example.com/shop/web:{version}", "replicas": 2}
    workload.update(fields.pop("workload", {}))
    return BlueGreenRequest.model_validate(
        {
            "strategy": "blue-green",
            "target": {"cluster": "sim", "namespace": namespace, "app": "web"},
            "workload": workload,
            "smoke_tests": [{"path": "/health", "attempts": 2, "interval": "0.1s"}],
            **fields,
        }
    )


@asynccontextmanager
async def running_worker(client: Client) -> AsyncIterator[str]:
    """The production worker (same workflows, activities and settings) on a task queue of its own."""
    task_queue = f"bluegreen-{uuid.uuid4().hex[:8]}"
    executor = ThreadPoolExecutor(max_workers=16)
    try:
        async with build_worker(client, task_queue, executor=executor, max_concurrent_activities=16):
            yield task_queue
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


async def start(client: Client, task_queue: str, request: BlueGreenRequest, **kwargs: Any) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        BlueGreenDeployment.run,
        request,
        id=request.target.workflow_id(),
        task_queue=task_queue,
        **kwargs,
    )


async def wait_for(
    handle: WorkflowHandle[Any, Any], predicate: Callable[[DeploymentStatus], bool], what: str
) -> DeploymentStatus:
    """Polls the status query until `predicate` holds (fails the test if it never does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STATE_WAIT_SECONDS
    status: DeploymentStatus | None = None
    while loop.time() < deadline:
        status = await handle.query("status", result_type=DeploymentStatus)
        if predicate(status):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: {what}; last status: {status}")


@dataclass
class ClusterView:
    """The facts the tests judge a deployment by."""

    selectors: dict[str, dict[str, str] | None]
    replicas: dict[str, int | None]
    versions: dict[str, str | None]

    def color_of(self, service: str) -> str | None:
        selector = self.selectors.get(service)
        return None if selector is None else selector.get(workloads.COLOR_LABEL)


def cluster_view(namespace: str, app: str = "web") -> ClusterView:
    api = kube.api_client("sim")
    selectors: dict[str, dict[str, str] | None] = {}
    for service in (app, f"{app}-preview"):
        live = workloads.read_service(api, namespace, service)
        selectors[service] = None if live is None else dict(live["spec"].get("selector") or {})
    replicas: dict[str, int | None] = {}
    versions: dict[str, str | None] = {}
    for color in ("blue", "green"):
        name = f"{app}-{color}"
        live = workloads.read_deployment(api, namespace, name)
        replicas[color] = None if live is None else int(live["spec"].get("replicas", 0))
        versions[color] = None if live is None else (live["metadata"].get("labels") or {}).get(workloads.VERSION_LABEL)
    return ClusterView(selectors, replicas, versions)


async def deploy(env: tuple[Client, str], namespace: str, version: str, **fields: Any) -> DeploymentStatus:
    client, queue = env
    handle = await start(client, queue, bluegreen_request(namespace, version, **fields))
    result: DeploymentStatus = await handle.result()
    return result


async def expect_rollback(handle: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "RolledBack", cause
    return cause


def assert_blue_serves_v1(namespace: str) -> None:
    view = cluster_view(namespace)
    assert view.color_of("web") == "blue"
    assert view.replicas["blue"] == 2 and view.versions["blue"] == "1.0"
    assert view.replicas["green"] == 0


async def rolled_back_release(
    env: tuple[Client, str], namespace: str, fault: str, **workload: Any
) -> tuple[WorkflowHandle[Any, Any], ApplicationError]:
    """1.0 serves on blue; 2.0, whose pods carry the simulator's `fault`, is released, rolled back, and blue serves
    1.0 again. The run and its failure, for the test to judge."""
    await deploy(env, namespace, "1.0")
    client, queue = env
    request = bluegreen_request(namespace, "2.0", workload={"pod_annotations": {FAULT + fault: "true"}, **workload})
    handle = await start(client, queue, request)
    cause = await expect_rollback(handle)
    assert_blue_serves_v1(namespace)
    return handle, cause
