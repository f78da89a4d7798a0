"""The two tracks of a canary release: `<app>-stable` and `<app>-canary` Deployments and their Services.

Pods carry `app=<app>`, `deployflow.io/track=stable|canary` and `app.kubernetes.io/version`. The Service `<app>`
selects both tracks (so without a mesh the replica ratio is the traffic split); `<app>-stable` and `<app>-canary`
select one track each, for routers that weigh traffic between Services.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployflow.spec.common import Target, Workload

APP_LABEL = "app"
TRACK_LABEL = "deployflow.io/track"
VERSION_LABEL = "app.kubernetes.io/version"
STABLE = "stable"
CANARY = "canary"
TRACKS = (STABLE, CANARY)

# Waiting reasons a retry cannot fix: the release has to be rolled back.
FATAL_WAITING_REASONS = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName"}


class TrackError(Exception):
    """Something about the tracks that no retry fixes (bad pods, an object we do not own)."""

    def __init__(self, message: str, kind: str = "TrackError") -> None:
        super().__init__(message)
        self.kind = kind


def deployment_name(app: str, track: str) -> str:
    return f"{app}-{track}"


def service_name(app: str, track: str | None = None) -> str:
    return f"{app}-{track}" if track else app


def track_selector(app: str, track: str) -> dict[str, str]:
    return {APP_LABEL: app, TRACK_LABEL: track}


@dataclass(frozen=True)
class TrackState:
    track: str
    exists: bool
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    pods: int = 0  # live pods of any version: more than `replicas` while an update or scale-down finishes
    version: str | None = None
    image: str | None = None
    template: dict[str, Any] | None = None  # the pod template, to restore a previous version on rollback

    @property
    def settled(self) -> bool:
        return self.exists and self.ready >= self.replicas and self.updated >= self.replicas


def pod_template(target: Target, workload: Workload, track: str) -> dict[str, Any]:
    """The pod template of a track running `workload`'s version."""
    version = workload.resolved_version(target.container_name) or ""
    container_name = target.container_name
    if workload.manifest is not None:
        template = copy.deepcopy(workload.manifest.get("spec", {}).get("template", {}))
    else:
        container: dict[str, Any] = {
            "name": container_name,
            "image": workload.image,
            "ports": [{"name": "http", "containerPort": workload.port}],
        }
        if workload.env:
            container["env"] = [e.manifest() for e in workload.env]
        if workload.readiness_probe:
            container["readinessProbe"] = workload.readiness_probe.manifest(workload.port)
        if workload.liveness_probe:
            container["livenessProbe"] = workload.liveness_probe.manifest(workload.port)
        template = {"spec": {"containers": [container]}}
    metadata = template.setdefault("metadata", {})
    labels = metadata.setdefault("labels", {})
    labels.update(workload.pod_labels)
    labels.update({APP_LABEL: target.app, TRACK_LABEL: track, VERSION_LABEL: version})
    if workload.pod_annotations:
        metadata.setdefault("annotations", {}).update(workload.pod_annotations)
    return template


def retarget_template(template: dict[str, Any], track: str) -> dict[str, Any]:
    """The same pod template on another track (promotion copies the canary's template to stable)."""
    moved = copy.deepcopy(template)
    moved.setdefault("metadata", {}).setdefault("labels", {})[TRACK_LABEL] = track
    return moved


def deployment_manifest(target: Target, track: str, template: dict[str, Any], replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(target.app, track),
            "namespace": target.namespace,
            "labels": {APP_LABEL: target.app, TRACK_LABEL: track, "app.kubernetes.io/managed-by": "deployflow"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": track_selector(target.app, track)},
            "template": template,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        },
    }


class Tracks:
    """Reads, applies and scales the two Deployments of one app. Every call is idempotent."""

    def __init__(self, api: client.ApiClient, target: Target) -> None:
        self.api = api
        self.target = target
        # The client's models are typed but we speak in plain manifests (dicts), as kubectl does.
        self.apps: Any = client.AppsV1Api(api)
        self.core: Any = client.CoreV1Api(api)

    def read(self, track: str) -> TrackState:
        try:
            dep = self.apps.read_namespaced_deployment(deployment_name(self.target.app, track), self.target.namespace)
        except ApiException as err:
            if err.status == 404:
                return TrackState(track, exists=False)
            raise
        raw = self.api.sanitize_for_serialization(dep)
        template = raw["spec"]["template"]
        containers = template.get("spec", {}).get("containers", [])
        image = next((c["image"] for c in containers if c["name"] == self.target.container_name), None)
        if image is None and containers:
            image = containers[0].get("image")
        version = (template.get("metadata", {}).get("labels", {}) or {}).get(VERSION_LABEL)
        # Readiness is counted from the pods themselves: a pod counts when it runs the current version and image
        # and is Ready, which holds whether or not the Deployment's status has caught up yet.
        updated = ready = 0
        pods = self._pods(track)
        for pod in pods:
            labels = pod.get("metadata", {}).get("labels") or {}
            images = [c.get("image") for c in pod.get("spec", {}).get("containers", [])]
            if labels.get(VERSION_LABEL) != version or (image is not None and image not in images):
                continue
            updated += 1
            conditions = pod.get("status", {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                ready += 1
        return TrackState(
            track,
            exists=True,
            replicas=raw["spec"].get("replicas", 1),
            ready=ready,
            updated=updated,
            pods=len(pods),
            version=version,
            image=image,
            template=template,
        )

    def _pods(self, track: str) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in track_selector(self.target.app, track).items())
        pods = self.core.list_namespaced_pod(self.target.namespace, label_selector=selector)
        raw: list[dict[str, Any]] = self.api.sanitize_for_serialization(pods).get("items", [])
        return [p for p in raw if not p.get("metadata", {}).get("deletionTimestamp")]

    def apply(self, track: str, template: dict[str, Any], replicas: int) -> None:
        """Creates the track's Deployment, or sets its template and replicas (a rolling update when changed)."""
        manifest = deployment_manifest(self.target, track, template, replicas)
        name = manifest["metadata"]["name"]
        for _ in range(5):
            try:
                current = self.apps.read_namespaced_deployment(name, self.target.namespace)
            except ApiException as err:
                if err.status != 404:
                    raise
                try:
                    self.apps.create_namespaced_deployment(self.target.namespace, manifest)
                    return
                except ApiException as create_err:
                    if create_err.status == 409:
                        continue
                    raise
            manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
            try:
                self.apps.replace_namespaced_deployment(name, self.target.namespace, manifest)
                return
            except ApiException as err:
                if err.status != 409:
                    raise
        raise TrackError(f"Deployment {name} kept changing under us; giving up this attempt", "Conflict")

    def scale(self, track: str, replicas: int) -> None:
        name = deployment_name(self.target.app, track)
        self.apps.patch_namespaced_deployment_scale(name, self.target.namespace, {"spec": {"replicas": replicas}})

    def fatal_pod_problem(self, track: str) -> str | None:
        """Why the track's pods will never become ready (crash loop, image pull), if that is the case."""
        selector = ",".join(f"{k}={v}" for k, v in track_selector(self.target.app, track).items())
        pods = self.core.list_namespaced_pod(self.target.namespace, label_selector=selector)
        for pod in pods.items:
            for status in pod.status.container_statuses or []:
                waiting = status.state.waiting if status.state else None
                if waiting and waiting.reason in FATAL_WAITING_REASONS:
                    return f"pod {pod.metadata.name}: {waiting.reason}" + (
                        f" ({waiting.message})" if waiting.message else ""
                    )
        return None

    def wait_ready(
        self,
        track: str,
        replicas: int,
        timeout: float,
        heartbeat: Callable[[str], None] = lambda _: None,
        poll: float = 0.1,
    ) -> TrackState:
        """Until `replicas` pods of the track's current template are ready; fails fast on crash loops and pulls."""
        deadline = time.monotonic() + timeout
        checks = 0
        while True:
            state = self.read(track)
            if not state.exists:
                raise TrackError(f"Deployment {deployment_name(self.target.app, track)} does not exist", "NotFound")
            # Settled: enough ready pods of this template, and the pods of the one before it are gone.
            if state.ready >= replicas and state.updated >= replicas and state.pods <= max(replicas, state.replicas):
                return state
            heartbeat(f"{track}: {state.ready}/{replicas} ready")
            checks += 1
            if checks % 5 == 0:
                problem = self.fatal_pod_problem(track)
                if problem:
                    raise TrackError(f"{track} version {state.version} cannot become ready: {problem}", "Unhealthy")
            if time.monotonic() > deadline:
                raise TrackError(
                    f"{track}: only {state.ready} of {replicas} pods ready after {timeout:.0f}s", "HealthTimeout"
                )
            time.sleep(poll)

    def wait_scaled_down(
        self, track: str, replicas: int, timeout: float, heartbeat: Callable[[str], None] = lambda _: None
    ) -> None:
        """Until no more than `replicas` pods of the track are left (those being deleted no longer count)."""
        deadline = time.monotonic() + timeout
        while True:
            left = len(self._pods(track))
            if left <= replicas:
                return
            heartbeat(f"{track}: {left} pods, scaling down to {replicas}")
            if time.monotonic() > deadline:
                raise TrackError(f"{track}: still {left} pods after {timeout:.0f}s, wanted {replicas}", "HealthTimeout")
            time.sleep(0.1)

    def ensure_service(self, name: str, selector: dict[str, str], port: int, target_port: int) -> None:
        """Creates the Service if missing; an existing one must select this app's pods or we refuse to touch it."""
        try:
            svc = self.core.read_namespaced_service(name, self.target.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": self.target.namespace,
                    "labels": {APP_LABEL: self.target.app, "app.kubernetes.io/managed-by": "deployflow"},
                },
                "spec": {
                    "selector": selector,
                    "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}],
                },
            }
            try:
                self.core.create_namespaced_service(self.target.namespace, body)
            except ApiException as create_err:
                if create_err.status != 409:
                    raise
            return
        current = svc.spec.selector or {}
        if current != selector:
            if current.get(APP_LABEL) != self.target.app:
                raise TrackError(
                    f"Service {name} selects {current}, not the pods of app {self.target.app}; "
                    "refusing to change a Service deployflow does not manage",
                    "ForeignService",
                )
            self.core.patch_namespaced_service(name, self.target.namespace, {"spec": {"selector": selector}})
