"""Kubernetes work the activities delegate to: build Deployments and Services, apply them idempotently, scale,
switch selectors, read live state and watch a rollout become healthy.

Plain synchronous functions over `kubernetes.client.ApiClient` (the wait is async, on watches), working on
manifests as dicts (what the API server speaks), so they run the same against a real cluster and the simulator.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from deployflow import kube
from deployflow.kube import health, wait
from deployflow.spec.common import Target, Workload

APP_LABEL = "app"
COLOR_LABEL = "deployflow.io/color"
VERSION_LABEL = "app.kubernetes.io/version"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "deployflow"

Obj = dict[str, Any]


class WorkloadError(Exception):
    """A failure with a reason a machine can act on (the activity maps it to a non-retryable error type)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- manifests ----------------------------------------------------------------------------------------------------


def deployment_manifest(
    target: Target,
    name: str,
    workload: Workload,
    *,
    replicas: int,
    selector: dict[str, str],
    extra_labels: dict[str, str] | None = None,
) -> Obj:
    """The desired Deployment: the workload's image (or manifest) under our name, selector and labels."""
    version = workload.resolved_version(target.container_name) or ""
    labels = {**selector, VERSION_LABEL: version, **(extra_labels or {})}
    if workload.manifest is not None:
        manifest = copy.deepcopy(workload.manifest)
    else:
        container: Obj = {
            "name": target.container_name,
            "image": workload.image,
            "ports": [{"name": "http", "containerPort": workload.port, "protocol": "TCP"}],
        }
        if workload.env:
            container["env"] = [env.manifest() for env in workload.env]
        if workload.readiness_probe is not None:
            container["readinessProbe"] = workload.readiness_probe.manifest(workload.port)
        if workload.liveness_probe is not None:
            container["livenessProbe"] = workload.liveness_probe.manifest(workload.port)
        manifest = {"spec": {"template": {"spec": {"containers": [container]}}}}

    manifest["apiVersion"] = "apps/v1"
    manifest["kind"] = "Deployment"
    metadata = manifest.setdefault("metadata", {})
    metadata["name"] = name
    metadata["namespace"] = target.namespace
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels, MANAGED_BY_LABEL: MANAGED_BY}
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        metadata.pop(key, None)
    manifest.pop("status", None)

    spec = manifest.setdefault("spec", {})
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": dict(selector)}
    spec["progressDeadlineSeconds"] = max(1, int(workload.health_timeout.total_seconds()))
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **workload.pod_labels, **labels}
    if workload.pod_annotations:
        template_meta["annotations"] = {**(template_meta.get("annotations") or {}), **workload.pod_annotations}
    return manifest


def service_manifest(target: Target, name: str, selector: dict[str, str], port: int, target_port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": {APP_LABEL: target.app, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}],
        },
    }


# --- reading ------------------------------------------------------------------------------------------------------


def _deployments(namespace: str, name: str = "") -> str:
    return kube.apps_path(namespace, "deployments", name)


def _services(namespace: str, name: str = "") -> str:
    return kube.core_path(namespace, "services", name)


def namespace_exists(api: client.ApiClient, namespace: str) -> bool | None:
    """Whether the namespace exists; None when the worker may not read namespaces (a namespace-scoped Role),
    in which case writes into it report a missing namespace instead."""
    try:
        return kube.get_or_none(api, f"/api/v1/namespaces/{namespace}") is not None
    except kube.KubeError as err:
        if err.status == 403:
            return None
        raise


def read_deployment(api: client.ApiClient, namespace: str, name: str) -> Obj | None:
    return kube.get_or_none(api, _deployments(namespace, name))


def read_service(api: client.ApiClient, namespace: str, name: str) -> Obj | None:
    return kube.get_or_none(api, _services(namespace, name))


def container_image(deployment: Obj, container: str) -> str | None:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    for c in containers:
        if c.get("name") == container:
            return str(c.get("image"))
    return str(containers[0].get("image")) if containers else None


# --- writing (idempotent: each call states the desired end, never a delta) ----------------------------------------


def apply_deployment(api: client.ApiClient, manifest: Obj, *, attempts: int = 5) -> Obj:
    """Creates the Deployment, or replaces its spec and labels with the desired ones (retrying write conflicts)."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    for _ in range(attempts):
        live = read_deployment(api, namespace, name)
        try:
            if live is None:
                return kube.request_json(api, "POST", _deployments(namespace), body=manifest)
            if live.get("spec", {}).get("selector") != manifest["spec"]["selector"]:
                raise WorkloadError(
                    "SelectorMismatch",
                    f"Deployment {namespace}/{name} exists with selector {live['spec'].get('selector')}, which "
                    f"deployflow does not manage (expected {manifest['spec']['selector']}); delete or rename it",
                )
            desired = copy.deepcopy(manifest)
            desired["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            live_annotations = live["metadata"].get("annotations") or {}
            desired["metadata"]["annotations"] = {**live_annotations, **(manifest["metadata"].get("annotations") or {})}
            return kube.request_json(api, "PUT", _deployments(namespace, name), body=desired)
        except kube.KubeError as err:
            if err.status == 409:  # someone wrote in between (or created it): read again and restate
                continue
            if err.status in (400, 422):
                message = f"Deployment {namespace}/{name} rejected: {err.message}"
                raise WorkloadError("InvalidManifest", message) from err
            raise
    raise WorkloadError("Conflict", f"Deployment {namespace}/{name} kept changing under us; gave up after {attempts}")


def scale_deployment(api: client.ApiClient, namespace: str, name: str, replicas: int) -> bool:
    """Sets spec.replicas. False when the Deployment does not exist (nothing to scale is a fine end state)."""
    try:
        kube.request_json(
            api,
            "PATCH",
            _deployments(namespace, name),
            body={"spec": {"replicas": replicas}},
            content_type=kube.MERGE_PATCH,
        )
        return True
    except kube.KubeError as err:
        if err.status == 404:
            return False
        raise


def delete_deployment(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        kube.request_json(api, "DELETE", _deployments(namespace, name), query={"propagationPolicy": "Background"})
        return True
    except kube.KubeError as err:
        if err.status == 404:
            return False
        raise


def set_service_selector(
    api: client.ApiClient,
    namespace: str,
    name: str,
    selector: dict[str, str],
    *,
    create: Obj | None = None,
    attempts: int = 5,
) -> dict[str, str] | None:
    """Points a Service at exactly `selector` (a replace, so stale keys go). Creates it from `create` if missing.

    Returns the previous selector (None when the Service was created).
    """
    for _ in range(attempts):
        live = read_service(api, namespace, name)
        try:
            if live is None:
                if create is None:
                    raise WorkloadError("ServiceMissing", f"Service {namespace}/{name} does not exist")
                kube.request_json(api, "POST", _services(namespace), body=create)
                return None
            previous = dict(live.get("spec", {}).get("selector") or {})
            if previous == selector:
                return previous
            live["spec"]["selector"] = dict(selector)
            kube.request_json(api, "PUT", _services(namespace, name), body=live)
            return previous
        except kube.KubeError as err:
            if err.status == 409:
                continue
            raise
    raise WorkloadError("Conflict", f"Service {namespace}/{name} kept changing under us; gave up after {attempts}")


# --- health -------------------------------------------------------------------------------------------------------


@dataclass
class Health:
    """How far a Deployment's rollout is, and whether it is broken for good."""

    ready: bool
    replicas: int
    updated: int
    ready_replicas: int
    available: int
    failure_reason: str | None = None
    failure_message: str = ""
    pod_problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.ready_replicas}/{self.replicas} ready, {self.updated} updated, {self.available} available"
        if self.pod_problems:
            text += "; " + "; ".join(self.pod_problems[:3])
        return text


def assess(deployment: Obj, pods: list[Obj], *, replicas: int, image: str | None) -> Health:
    """Judges a rollout from the Deployment's status and its new pods' states (see `kube.health.judge`)."""
    want = int((deployment.get("spec") or {}).get("replicas", replicas))
    verdict = health.judge(deployment, pods, replicas=want, image=image)
    return Health(
        ready=verdict.healthy,
        replicas=want,
        updated=verdict.updated,
        ready_replicas=verdict.ready,
        available=int((deployment.get("status") or {}).get("availableReplicas") or 0),
        failure_reason=verdict.reason,
        failure_message=verdict.message,
        pod_problems=list(verdict.problems),
    )


async def wait_healthy(
    api: client.ApiClient,
    namespace: str,
    name: str,
    *,
    replicas: int,
    image: str | None,
    pod_selector: dict[str, str],
    timeout: float,
    progress: Callable[[str], None] = wait.heartbeat,
) -> Health:
    """Follows the Deployment and its pods (watches) until all `replicas` new pods are ready.

    Raises WorkloadError on a fatal pod state (crash loop, image pull failure, missing ConfigMap), on
    ProgressDeadlineExceeded, or when `timeout` seconds pass; reason and message come from `kube.health`.
    """
    latest: list[Health] = []

    def check(snapshot: wait.Snapshot) -> tuple[bool, str]:
        deployments = snapshot["deployment"]
        if not deployments:
            raise WorkloadError("NotFound", f"Deployment {namespace}/{name} does not exist")
        judged = assess(deployments[0], snapshot["pods"], replicas=replicas, image=image)
        latest[:] = [judged]
        if judged.failure_reason is not None:
            raise WorkloadError(
                judged.failure_reason,
                f"{namespace}/{name}: {judged.failure_message}; {judged.ready_replicas}/{judged.replicas} ready",
            )
        return judged.ready, judged.summary()

    def timed_out(detail: str) -> WorkloadError:
        return WorkloadError("HealthTimeout", f"{namespace}/{name} not healthy after {timeout:.0f}s: {detail}")

    await wait.wait_until(
        {
            "deployment": kube.watch_events(api, kube.apps_path(namespace, "deployments"), name=name),
            "pods": kube.watch_events(api, kube.core_path(namespace, "pods"), labels=pod_selector),
        },
        check,
        timeout=timeout,
        on_timeout=timed_out,
        progress=progress,
    )
    return latest[0]
