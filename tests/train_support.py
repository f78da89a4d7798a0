"""Shared pieces of the release-train tests: trains of small blue-green (or given) releases, starting them, reading
what each simulated cluster serves, and a cluster whose registry lacks a version."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from deployflow.sim.controllers.lifecycle import IMAGE_PULL_ERROR, READY_DELAY
from deployflow.sim.resources import DEPLOYMENTS, PODS, SERVICES
from deployflow.sim.server import Simulator
from deployflow.sim.store import StoreError
from deployflow.spec.train import TrainRequest
from deployflow.status import DeploymentStatus, Phase
from workflows.train import ReleaseTrain

WAVES = [("staging", ["staging"]), ("prod-1", ["prod-1"]), ("prod-2", ["prod-2"])]


def train(namespace: str, version: str, *, apps: list[dict[str, Any]] | None = None,
          waves: list[dict[str, Any]] | None = None, **fields: Any) -> TrainRequest:
    """A train of blue-green releases (or an app's own `release` template) of `web` (or `apps`), one wave per
    cluster unless `waves` says otherwise."""
    apps = apps or [{"name": "web"}]
    return TrainRequest.model_validate({
        "strategy": "train", "name": f"shop-{namespace}", "version": version,
        "apps": [{"name": a["name"], "depends_on": a.get("depends_on", []), "release": {
            **a.get("release", {"strategy": "blue-green", "standby": "0s"}),
            # Pods become ready a moment after they start, long enough for a registry to refuse them first.
            "workload": {"image": f"registry.example.com/shop/{a['name']}:{version}", "replicas": 1,
                         "pod_annotations": {READY_DELAY: "10"}},
        }} for a in apps],
        "waves": waves or [{"name": name, "targets": [{"cluster": c, "namespace": namespace} for c in targets]}
                           for name, targets in WAVES],
        **fields,
    })


async def start(client: Client, queue: str, request: TrainRequest) -> WorkflowHandle[Any, DeploymentStatus]:
    return await client.start_workflow(ReleaseTrain.run, request, id=request.workflow_id(), task_queue=queue)


def serving(sim: Simulator, namespace: str, app: str = "web") -> str | None:
    """The version the app's Service sends users to in one cluster (None: no release yet)."""
    service = sim.store.get(SERVICES, namespace, app)
    if service is None:
        return None
    color = service["spec"]["selector"].get("deployflow.io/color")
    deployment = sim.store.get(DEPLOYMENTS, namespace, f"{app}-{color}")
    assert deployment is not None
    return str(deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"])


def waves_of(status: DeploymentStatus) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in status.details["waves"]}



@contextlib.asynccontextmanager
async def registry_without(sim: Simulator, namespace: str, version: str) -> AsyncIterator[None]:
    """This cluster's registry lacks `version`: its pods fail to pull the image (as the kubelet would report)."""

    async def refuse() -> None:
        while True:
            for pod in sim.store.list(PODS, namespace):
                labels, annotations = pod["metadata"].get("labels") or {}, pod["metadata"].get("annotations") or {}
                if labels.get("app.kubernetes.io/version") == version and IMAGE_PULL_ERROR not in annotations:
                    pod["metadata"]["annotations"] = {**annotations, IMAGE_PULL_ERROR: "true"}
                    with contextlib.suppress(StoreError):
                        sim.store.update(PODS, pod, check_rv=False)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(refuse())
    try:
        yield
    finally:
        task.cancel()


async def release_everywhere(client: Client, queue: str, namespace: str, version: str) -> None:
    result = await (await start(client, queue, train(namespace, version))).result()
    assert result.phase == Phase.SUCCEEDED, result.message


async def started(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the server knows the workflow (a child starts a moment after its parent asked for it)."""
    for _ in range(600):
        with contextlib.suppress(RPCError):
            await handle.describe()
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never started")
