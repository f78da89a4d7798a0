"""Kubernetes work the activities delegate to: build Deployments and Services, apply them idempotently, scale,
switch selectors, read live state and watch a rollout become healthy.

Plain synchronous functions over `kubernetes.client.ApiClient`, working on manifests as dicts (what the API server
speaks), so they run the same against a real cluster and the simulator.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployflow import kube
from deployflow.spec.common import Target, Workload

APP_LABEL = "app"
COLOR_LABEL = "deployflow.io/color"
VERSION_LABEL = "app.kubernetes.io/version"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "deployflow"

# Waiting reasons no amount of waiting fixes: the release is broken, not slow.
FATAL_WAITING_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"}
)

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
    except ApiException as err:
        if err.status == 403:
            return None
        raise


def read_deployment(api: client.ApiClient, namespace: str, name: str) -> Obj | None:
    return kube.get_or_none(api, _deployments(namespace, name))


def read_service(api: client.ApiClient, namespace: str, name: str) -> Obj | None:
    return kube.get_or_none(api, _services(namespace, name))


def list_pods(api: client.ApiClient, namespace: str, selector: dict[str, str]) -> list[Obj]:
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    path = f"/api/v1/namespaces/{namespace}/pods"
    data = kube.request_json(api, "GET", path, query={"labelSelector": label_selector})
    items: list[Obj] = data.get("items") or []
    return items


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
        except ApiException as err:
            if err.status == 409:  # someone wrote in between (or created it): read again and restate
                continue
            if err.status in (400, 422):
                message = f"Deployment {namespace}/{name} rejected: {_reason(err)}"
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
    except ApiException as err:
        if err.status == 404:
            return False
        raise


def delete_deployment(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        kube.request_json(api, "DELETE", _deployments(namespace, name), query={"propagationPolicy": "Background"})
        return True
    except ApiException as err:
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
        except ApiException as err:
            if err.status == 409:
                continue
            raise
    raise WorkloadError("Conflict", f"Service {namespace}/{name} kept changing under us; gave up after {attempts}")


def _reason(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "").get("message") or err.reason)
    except (TypeError, ValueError, AttributeError):
        return str(err.body or err.reason)


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
    """Judges a rollout from the Deployment's status and its new pods' states.

    Ready means: the controller has seen the current spec, every replica runs the new template, no old pod is
    left, and `replicas` new pods are Ready. Ready pods are counted from the pods themselves as well as from the
    status, because pod readiness is what puts a pod behind a Service, and status counts can lag it.
    """
    meta, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status") or {}
    observed = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    want = int(spec.get("replicas", replicas))
    live_pods = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    new_ready = sum(1 for p in live_pods if _runs(p, image) and _pod_ready(p))
    ready_replicas = max(int(status.get("readyReplicas") or 0), new_ready)
    health = Health(
        ready=observed and updated >= want and ready_replicas >= want and total <= want and len(live_pods) <= want,
        replicas=want,
        updated=updated,
        ready_replicas=ready_replicas,
        available=available,
    )
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            health.failure_reason = "ProgressDeadlineExceeded"
            detail = condition.get("message") or "the rollout exceeded its progress deadline"
            health.failure_message = f"ProgressDeadlineExceeded ({detail.rstrip('.')})"
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if image is not None and cs.get("image") not in (image, None, ""):
                continue  # a pod of an older template, going away
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if not reason:
                continue
            pod_name = pod["metadata"]["name"]
            detail = f"pod {pod_name}: {reason}" + (f" ({waiting['message']})" if waiting.get("message") else "")
            health.pod_problems.append(detail)
            if reason in FATAL_WAITING_REASONS and health.failure_reason is None:
                restarts = cs.get("restartCount", 0)
                health.failure_reason = reason
                health.failure_message = detail + (f", {restarts} restarts" if restarts else "")
    return health


def _pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _runs(pod: Obj, image: str | None) -> bool:
    if image is None:
        return True
    containers = (pod.get("spec") or {}).get("containers") or []
    return any(c.get("image") == image for c in containers)


def wait_healthy(
    api: client.ApiClient,
    namespace: str,
    name: str,
    *,
    replicas: int,
    image: str | None,
    pod_selector: dict[str, str],
    timeout: float,
    progress: Callable[[Health], None],
    recheck_seconds: float = 1.0,
) -> Health:
    """Watches the Deployment until all `replicas` new pods are ready.

    Raises WorkloadError on a fatal pod state (crash loop, image pull failure), ProgressDeadlineExceeded, or when
    `timeout` seconds pass. Between changes it sleeps on a watch, re-checking pods at least every
    `recheck_seconds` because a crash loop changes pods, not the Deployment.
    """
    deadline = time.monotonic() + timeout
    while True:
        deployment = read_deployment(api, namespace, name)
        if deployment is None:
            raise WorkloadError("NotFound", f"Deployment {namespace}/{name} does not exist")
        health = assess(deployment, list_pods(api, namespace, pod_selector), replicas=replicas, image=image)
        progress(health)
        if health.failure_reason is not None:
            raise WorkloadError(
                health.failure_reason,
                f"{namespace}/{name}: {health.failure_message}; {health.ready_replicas}/{health.replicas} ready",
            )
        if health.ready:
            return health
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkloadError(
                "HealthTimeout", f"{namespace}/{name} not healthy after {timeout:.0f}s: {health.summary()}"
            )
        wait = max(1, int(min(recheck_seconds, remaining) + 0.999))
        try:
            for _event in kube.watch_events(
                api,
                _deployments(namespace),
                query={
                    "fieldSelector": f"metadata.name={name}",
                    "resourceVersion": deployment["metadata"].get("resourceVersion"),
                },
                timeout_seconds=wait,
            ):
                break  # something changed: look again
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            # An expired resourceVersion (410) or a dropped stream is not a failure: re-read and watch again.
            if isinstance(err, ApiException) and err.status not in (410, 500, 503, 504):
                raise
            time.sleep(min(recheck_seconds, max(0.0, deadline - time.monotonic())))
