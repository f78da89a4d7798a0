"""What the simulated cluster holds, read from outside with the official client (straight from the simulator, not
through the fault proxy), and what it must hold once a release has ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from deployflow.demo import no_backend_requests, requests_by_version

VERSION_LABEL = "app.kubernetes.io/version"
ROUTE_KINDS = (("gateway.networking.k8s.io", "v1", "httproutes"), ("networking.istio.io", "v1", "virtualservices"))
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


@dataclass(frozen=True)
class Workload:
    replicas: int
    ready: int
    version: str
    image: str


@dataclass
class ClusterState:
    deployments: dict[str, Workload] = field(default_factory=dict)
    pods: dict[str, int] = field(default_factory=dict)  # live (not terminating) pods per version
    selectors: dict[str, dict[str, str]] = field(default_factory=dict)  # Service -> selector
    weights: dict[str, dict[str, int]] = field(default_factory=dict)  # route object -> backend -> weight
    jobs: list[str] = field(default_factory=list)

    def describe(self) -> str:
        deps = ", ".join(f"{n} {w.ready}/{w.replicas} v{w.version}" for n, w in sorted(self.deployments.items()))
        pods = ", ".join(f"{n}×v{v}" for v, n in sorted(self.pods.items()))
        weights = "; ".join(f"{r} {w}" for r, w in sorted(self.weights.items()))
        return f"deployments [{deps}] pods [{pods}]" + (f" weights [{weights}]" if weights else "")


def read_state(kubeconfig: Path, namespace: str) -> ClusterState:
    api = config.new_client_from_config(config_file=str(kubeconfig), context="sim")
    try:
        return _read(api, namespace)
    finally:
        api.close()


def _read(api: client.ApiClient, namespace: str) -> ClusterState:
    state = ClusterState()
    for dep in client.AppsV1Api(api).list_namespaced_deployment(namespace).items:
        template = dep.spec.template
        labels = template.metadata.labels or {}
        state.deployments[dep.metadata.name] = Workload(
            replicas=dep.spec.replicas or 0,
            ready=(dep.status.ready_replicas or 0) if dep.status else 0,
            version=labels.get(VERSION_LABEL, "?"),
            image=template.spec.containers[0].image,
        )
    for pod in client.CoreV1Api(api).list_namespaced_pod(namespace).items:
        if pod.metadata.deletion_timestamp or (pod.status and pod.status.phase in ("Succeeded", "Failed")):
            continue
        if (pod.metadata.labels or {}).get("job-name"):
            continue  # hook Jobs' pods are not the app
        version = (pod.metadata.labels or {}).get(VERSION_LABEL, "?")
        state.pods[version] = state.pods.get(version, 0) + 1
    for svc in client.CoreV1Api(api).list_namespaced_service(namespace).items:
        state.selectors[svc.metadata.name] = dict(svc.spec.selector or {})
    custom = client.CustomObjectsApi(api)
    for group, version, plural in ROUTE_KINDS:
        try:
            objects = custom.list_namespaced_custom_object(group, version, namespace, plural)["items"]
        except ApiException as err:
            if err.status == 404:
                continue
            raise
        for obj in objects:
            state.weights[f"{plural}/{obj['metadata']['name']}"] = _route_weights(plural, obj["spec"])
    for ing in client.NetworkingV1Api(api).list_namespaced_ingress(namespace).items:
        annotations = ing.metadata.annotations or {}
        if CANARY_WEIGHT in annotations:
            state.weights[f"ingresses/{ing.metadata.name}"] = {"canary-weight": int(annotations[CANARY_WEIGHT])}
    state.jobs = sorted(j.metadata.name for j in client.BatchV1Api(api).list_namespaced_job(namespace).items)
    return state


def _route_weights(plural: str, spec: dict[str, Any]) -> dict[str, int]:
    if plural == "httproutes":
        refs = spec["rules"][0].get("backendRefs") or []
        return {r["name"]: int(r.get("weight", 1)) for r in refs}
    routes = spec["http"][0].get("route") or []
    return {r["destination"]["host"].split(".")[0]: int(r.get("weight", 0)) for r in routes}


def no_backend(sim_url: str, namespace: str) -> int:
    """Requests in `namespace` that found no ready backend, from the simulator's own counter (its /metrics)."""
    count = no_backend_requests(sim_url, namespace)
    if count is None:
        raise AssertionError(f"the simulator at {sim_url} does not export sim_no_backend_requests_total")
    return count


def requests_served(sim_url: str, namespace: str) -> int:
    """Requests the apps in `namespace` answered, so a zero no-backend count is known to come with traffic."""
    return sum(n for n, _ in requests_by_version(sim_url, namespace).values())
