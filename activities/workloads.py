"""Workload activities: read live state, apply a Deployment, wait until it is healthy, scale it, delete it.

Each is idempotent: it states the desired end (replicas = N, spec = X), so a retry or a replay repeats no harm.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import api_for, as_activity_errors, require_namespace
from deployflow import workloads
from deployflow.kube import wait
from deployflow.spec.common import Target, Workload


class DeploymentState(BaseModel):
    name: str
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    image: str | None = None
    version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class ServiceState(BaseModel):
    name: str
    selector: dict[str, str] = Field(default_factory=dict)


class ReadWorkloadsInput(BaseModel):
    target: Target
    deployments: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)


class WorkloadsSnapshot(BaseModel):
    """What exists now; a missing object maps to None."""

    deployments: dict[str, DeploymentState | None] = Field(default_factory=dict)
    services: dict[str, ServiceState | None] = Field(default_factory=dict)


class ApplyWorkloadInput(BaseModel):
    target: Target
    name: str
    workload: Workload
    replicas: int = Field(ge=0)
    selector: dict[str, str]
    labels: dict[str, str] = Field(default_factory=dict)


class AppliedWorkload(BaseModel):
    name: str
    generation: int
    image: str | None
    version: str


class WaitHealthyInput(BaseModel):
    target: Target
    name: str
    replicas: int
    image: str | None
    pod_selector: dict[str, str]
    timeout: timedelta


class HealthReport(BaseModel):
    name: str
    ready_replicas: int
    replicas: int
    summary: str


class ScaleInput(BaseModel):
    target: Target
    name: str
    replicas: int = Field(ge=0)


class DeleteInput(BaseModel):
    target: Target
    name: str


@activity.defn(name="read_workloads")
def read_workloads(request: ReadWorkloadsInput) -> WorkloadsSnapshot:
    api = api_for(request.target)
    ns = request.target.namespace
    # The snapshot comes before any change, so a wrong namespace fails the run with nothing touched.
    require_namespace(api, request.target)
    snapshot = WorkloadsSnapshot()
    with as_activity_errors("read live state", request.target):
        for name in request.deployments:
            live = workloads.read_deployment(api, ns, name)
            if live is None:
                snapshot.deployments[name] = None
                continue
            labels = live.get("metadata", {}).get("labels") or {}
            status = live.get("status") or {}
            snapshot.deployments[name] = DeploymentState(
                name=name,
                replicas=int(live.get("spec", {}).get("replicas", 0)),
                ready_replicas=int(status.get("readyReplicas") or 0),
                updated_replicas=int(status.get("updatedReplicas") or 0),
                image=workloads.container_image(live, request.target.container_name),
                version=labels.get(workloads.VERSION_LABEL),
                labels=labels,
            )
        for name in request.services:
            service = workloads.read_service(api, ns, name)
            snapshot.services[name] = (
                None
                if service is None
                else ServiceState(name=name, selector=dict(service.get("spec", {}).get("selector") or {}))
            )
    return snapshot


@activity.defn(name="apply_workload")
def apply_workload(request: ApplyWorkloadInput) -> AppliedWorkload:
    api = api_for(request.target)
    manifest = workloads.deployment_manifest(
        request.target,
        request.name,
        request.workload,
        replicas=request.replicas,
        selector=request.selector,
        extra_labels=request.labels,
    )
    with as_activity_errors(f"apply Deployment {request.name}", request.target):
        applied = workloads.apply_deployment(api, manifest)
    return AppliedWorkload(
        name=request.name,
        generation=int(applied.get("metadata", {}).get("generation") or 0),
        image=workloads.container_image(applied, request.target.container_name),
        version=request.workload.resolved_version(request.target.container_name) or "",
    )


@activity.defn(name="wait_healthy")
async def wait_healthy(request: WaitHealthyInput) -> HealthReport:
    """Follows the Deployment and its pods on watches until every new pod is ready; heartbeats progress, fails
    fast on a broken release. Async: a waiting release holds no thread, and a cancellation stops it at once."""
    api = await wait.blocking(api_for, request.target)
    with as_activity_errors(f"wait for Deployment {request.name}", request.target):
        health = await workloads.wait_healthy(
            api,
            request.target.namespace,
            request.name,
            replicas=request.replicas,
            image=request.image,
            pod_selector=request.pod_selector,
            timeout=request.timeout.total_seconds(),
        )
    return HealthReport(
        name=request.name, ready_replicas=health.ready_replicas, replicas=health.replicas, summary=health.summary()
    )


@activity.defn(name="scale_workload")
def scale_workload(request: ScaleInput) -> bool:
    api = api_for(request.target)
    with as_activity_errors(f"scale Deployment {request.name}", request.target):
        return workloads.scale_deployment(api, request.target.namespace, request.name, request.replicas)


@activity.defn(name="delete_workload")
def delete_workload(request: DeleteInput) -> bool:
    api = api_for(request.target)
    with as_activity_errors(f"delete Deployment {request.name}", request.target):
        return workloads.delete_deployment(api, request.target.namespace, request.name)
