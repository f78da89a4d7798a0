"""The two tracks of a canary release: `<app>-stable` and `<app>-canary` Deployments and their Services.

Pods carry `app=<app>`, `deployflow.io/track=stable|canary` and `app.kubernetes.io/version`. The Service `<app>`
selects both tracks (so without a mesh the replica ratio is the traffic split); `<app>-stable` and `<app>-canary`
select one track each, for routers that weigh traffic between Services.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from deployflow import kube
from deployflow.errors import ErrorType
from deployflow.kube import health, wait
from deployflow.spec.common import Target, Workload

APP_LABEL = "app"
TRACK_LABEL = "deployflow.io/track"
VERSION_LABEL = "app.kubernetes.io/version"
STABLE = "stable"
CANARY = "canary"
TRACKS = (STABLE, CANARY)

Obj = dict[str, Any]


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


def track_state(track: str, deployment: Obj | None, pods: list[Obj], container: str) -> TrackState:
    """A track as its Deployment and live pods show it. Readiness is counted from the pods themselves: a pod counts
    when it runs the current version and image and is Ready, whether or not the Deployment's status caught up."""
    if deployment is None:
        return TrackState(track, exists=False)
    template = deployment["spec"]["template"]
    containers = template.get("spec", {}).get("containers", [])
    image = next((c["image"] for c in containers if c["name"] == container), None)
    if image is None and containers:
        image = containers[0].get("image")
    version = (template.get("metadata", {}).get("labels", {}) or {}).get(VERSION_LABEL)
    current = current_pods(health.live(pods), version, image)
    return TrackState(
        track,
        exists=True,
        replicas=deployment["spec"].get("replicas", 1),
        ready=sum(1 for pod in current if health.pod_ready(pod)),
        updated=len(current),
        pods=len(health.live(pods)),
        version=version,
        image=image,
        template=template,
    )


def current_pods(pods: list[Obj], version: str | None, image: str | None) -> list[Obj]:
    """The pods of the track's current template (version label and image)."""
    return [
        pod for pod in pods
        if (pod.get("metadata", {}).get("labels") or {}).get(VERSION_LABEL) == version and health.runs(pod, image)
    ]


class Tracks:
    """Reads, applies and scales the two Deployments of one app. Every call is idempotent."""

    def __init__(self, api: client.ApiClient, target: Target) -> None:
        self.api = api
        self.target = target

    def _deployment_path(self, track: str | None = None) -> str:
        return kube.apps_path(self.target.namespace, "deployments", deployment_name(self.target.app, track) if track
                              else None)

    def read(self, track: str) -> TrackState:
        deployment = kube.get_or_none(self.api, self._deployment_path(track))
        pods = [] if deployment is None else self._pods(track)
        return track_state(track, deployment, pods, self.target.container_name)

    def _pods(self, track: str) -> list[Obj]:
        selector = kube.label_selector(track_selector(self.target.app, track))
        pods = kube.request_json(
            self.api, "GET", kube.core_path(self.target.namespace, "pods"), query={"labelSelector": selector}
        )
        return health.live(pods.get("items") or [])

    def apply(self, track: str, template: dict[str, Any], replicas: int) -> None:
        """Creates the track's Deployment, or sets its template and replicas (a rolling update when changed)."""
        manifest = deployment_manifest(self.target, track, template, replicas)
        for _ in range(5):
            current = kube.get_or_none(self.api, self._deployment_path(track))
            try:
                if current is None:
                    kube.request_json(self.api, "POST", self._deployment_path(), body=manifest)
                    return
                manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                kube.request_json(self.api, "PUT", self._deployment_path(track), body=manifest)
                return
            except kube.KubeError as err:
                if err.status != 409:
                    raise
        raise TrackError(f"Deployment {manifest['metadata']['name']} kept changing under us; giving up this attempt",
                         ErrorType.CONFLICT)

    def scale(self, track: str, replicas: int) -> None:
        kube.merge_patch(self.api, self._deployment_path(track) + "/scale", {"spec": {"replicas": replicas}})

    def _pod_watch(self, track: str) -> wait.Watch:
        labels = track_selector(self.target.app, track)
        return kube.watch_events(self.api, kube.core_path(self.target.namespace, "pods"), labels=labels)

    async def wait_ready(self, track: str, replicas: int, timeout: float) -> TrackState:
        """Until `replicas` pods of the track's current template are ready and the pods of the template before it
        are gone; fails at once on a pod that cannot start (`kube.health`), after `timeout` seconds otherwise."""
        states: list[TrackState] = []

        def check(snapshot: wait.Snapshot) -> tuple[bool, str]:
            deployments = snapshot["deployment"]
            if not deployments:
                name = deployment_name(self.target.app, track)
                raise TrackError(f"Deployment {name} does not exist", ErrorType.NOT_FOUND)
            state = track_state(track, deployments[0], snapshot["pods"], self.target.container_name)
            states[:] = [state]
            failure = health.fatal_problem(current_pods(health.live(snapshot["pods"]), state.version, state.image))
            if failure is not None:
                raise TrackError(f"{track} version {state.version} cannot become ready: {failure.message}",
                                 str(failure.reason))
            settled = state.ready >= replicas and state.updated >= replicas and state.pods <= max(
                replicas, state.replicas)
            return settled, f"{track}: {state.ready}/{replicas} ready"

        def timed_out(detail: str) -> TrackError:
            return TrackError(f"{detail} after {timeout:.0f}s", ErrorType.HEALTH_TIMEOUT)

        name = deployment_name(self.target.app, track)
        deployment = kube.watch_events(self.api, kube.apps_path(self.target.namespace, "deployments"), name=name)
        watches = {"deployment": deployment, "pods": self._pod_watch(track)}
        await wait.wait_until(watches, check, timeout=timeout, on_timeout=timed_out)
        return states[0]

    async def wait_scaled_down(self, track: str, replicas: int, timeout: float) -> None:
        """Until no more than `replicas` pods of the track are left (those being deleted no longer count)."""

        def check(snapshot: wait.Snapshot) -> tuple[bool, str]:
            left = len(health.live(snapshot["pods"]))
            return left <= replicas, f"{track}: {left} pods, scaling down to {replicas}"

        def timed_out(detail: str) -> TrackError:
            return TrackError(f"{detail}: still more after {timeout:.0f}s", ErrorType.HEALTH_TIMEOUT)

        await wait.wait_until({"pods": self._pod_watch(track)}, check, timeout=timeout, on_timeout=timed_out)

    def ensure_service(self, name: str, selector: dict[str, str], port: int, target_port: int) -> None:
        """Creates the Service if missing; an existing one must select this app's pods or we refuse to touch it."""
        ns = self.target.namespace
        svc = kube.get_or_none(self.api, kube.core_path(ns, "services", name))
        if svc is None:
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": {APP_LABEL: self.target.app, "app.kubernetes.io/managed-by": "deployflow"},
                },
                "spec": {
                    "selector": selector,
                    "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}],
                },
            }
            kube.create(self.api, kube.core_path(ns, "services"), body)
            return
        current = (svc.get("spec") or {}).get("selector") or {}
        if current != selector:
            if current.get(APP_LABEL) != self.target.app:
                raise TrackError(
                    f"Service {name} selects {current}, not the pods of app {self.target.app}; "
                    "refusing to change a Service deployflow does not manage",
                    ErrorType.FOREIGN_SERVICE,
                )
            kube.merge_patch(self.api, kube.core_path(ns, "services", name), {"spec": {"selector": selector}})
