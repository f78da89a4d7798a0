"""Shared pieces of the rolling tests: a simulated Deployment or StatefulSet, requests, a worker with the real
activities, and waiting on pods and on the run's status."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.analysis import measure
from activities.hooks import HOOK_ACTIVITIES
from activities.notify import NOTIFY_ACTIVITIES
from activities.rolling import ROLLING_ACTIVITIES
from deployflow import kube
from deployflow.sim.controllers.pods import is_ready
from deployflow.sim.resources import PODS
from deployflow.sim.server import Simulator
from deployflow.spec.rolling import RollingRequest
from deployflow.status import DeploymentStatus, Phase
from workflows.rolling import RollingDeployment

CLUSTER = "sim"
ACTIVITIES: list[Callable[..., Any]] = [*ROLLING_ACTIVITIES, *HOOK_ACTIVITIES, *NOTIFY_ACTIVITIES, measure]


def pod_template(app: str, version: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {"app": app, "app.kubernetes.io/version": version},
            "annotations": annotations or {},
        },
        "spec": {"containers": [{"name": app, "image": f"registry.example.com/{app}:{version}"}]},
    }


def create_deployment(namespace: str, app: str = "web", replicas: int = 4, version: str = "1.0.0") -> None:
    rolling_update = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    create_workload(namespace, "Deployment", app, replicas, version, strategy=rolling_update)


def create_statefulset(namespace: str, app: str = "db", replicas: int = 4, version: str = "1.0.0") -> None:
    create_workload(namespace, "StatefulSet", app, replicas, version, serviceName=app)


def create_workload(namespace: str, kind: str, app: str, replicas: int, version: str, **spec: Any) -> None:
    """A Deployment or StatefulSet of `replicas` pods of `app` at `version`, and its Service."""
    kube.create(
        CLUSTER,
        kube.apps_path(namespace, kind.lower() + "s"),
        {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": app, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "template": pod_template(app, version),
                **spec,
            },
        },
    )
    create_service(namespace, app)


def create_service(namespace: str, app: str) -> None:
    kube.create(
        CLUSTER,
        kube.core_path(namespace, "services"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": app, "namespace": namespace},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )


def pods(sim: Simulator, namespace: str) -> list[dict[str, Any]]:
    return [p for p in sim.store.list(PODS, namespace) if not p["metadata"].get("deletionTimestamp")]


def versions(sim: Simulator, namespace: str) -> dict[str, str]:
    """Version of every app pod (hook Jobs' pods carry no version label)."""
    return {
        p["metadata"]["name"]: p["metadata"]["labels"]["app.kubernetes.io/version"]
        for p in pods(sim, namespace)
        if "app.kubernetes.io/version" in p["metadata"].get("labels", {})
    }


def ready_versions(sim: Simulator, namespace: str) -> list[str]:
    return sorted(p["metadata"]["labels"]["app.kubernetes.io/version"] for p in pods(sim, namespace) if is_ready(p))


async def wait_for(check: Callable[[], bool], what: str, attempts: int = 400) -> None:
    for _ in range(attempts):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def wait_ready(sim: Simulator, namespace: str, replicas: int) -> None:
    await wait_for(lambda: len(ready_versions(sim, namespace)) == replicas == len(pods(sim, namespace)), "pods ready")


def workload(namespace: str, plural: str = "deployments", name: str = "web") -> dict[str, Any]:
    obj = kube.get(CLUSTER, kube.apps_path(namespace, plural, name))
    assert obj is not None
    return obj


def request(namespace: str, app: str = "web", version: str = "2.0.0", **fields: Any) -> RollingRequest:
    return RollingRequest.model_validate(
        {
            "target": {"cluster": CLUSTER, "namespace": namespace, "app": app},
            "image": f"registry.example.com/{app}:{version}",
            **fields,
        }
    )


@asynccontextmanager
async def rolling_worker(env: WorkflowEnvironment) -> AsyncIterator[str]:
    queue = f"rolling-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client, task_queue=queue, workflows=[RollingDeployment], activities=ACTIVITIES,
        # As worker.py: heartbeats leave at least every second, so a cancel reaches a waiting activity quickly.
        max_heartbeat_throttle_interval=timedelta(seconds=1), default_heartbeat_throttle_interval=timedelta(seconds=1),
    ):
        yield queue


async def start(env: WorkflowEnvironment, queue: str, req: RollingRequest) -> WorkflowHandle[Any, DeploymentStatus]:
    return await env.client.start_workflow(
        RollingDeployment.run, req, id=f"{req.target.workflow_id()}/{uuid.uuid4().hex[:6]}", task_queue=queue
    )


async def status_of(handle: WorkflowHandle[Any, Any]) -> DeploymentStatus:
    return await handle.query("status", result_type=DeploymentStatus)


async def wait_step(handle: WorkflowHandle[Any, Any], step: str, attempts: int = 400) -> DeploymentStatus:
    return await wait_status(handle, lambda s: s.step == step, f"step {step}", attempts, interval=0.01)


async def wait_phase(handle: WorkflowHandle[Any, Any], phase: Phase, attempts: int = 400) -> DeploymentStatus:
    return await wait_status(handle, lambda s: s.phase == phase, str(phase), attempts, interval=0.05)


async def wait_status(
    handle: WorkflowHandle[Any, Any], reached: Callable[[DeploymentStatus], bool], what: str, attempts: int,
    interval: float,
) -> DeploymentStatus:
    """Polls the status query until `reached`; a hang guard, not a timing assert."""
    for _ in range(attempts):
        status = await status_of(handle)
        if reached(status):
            return status
        await asyncio.sleep(interval)
    raise AssertionError(f"never reached {what}; last: {status.phase} {status.step} {status.message}")


def failure_message(err: WorkflowFailureError) -> str:
    cause: BaseException | None = err.cause
    parts = []
    while cause is not None:
        parts.append(str(cause))
        cause = cause.__cause__ if cause.__cause__ is not cause else None
    return " | ".join(parts)
