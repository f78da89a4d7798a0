"""What the simulated cluster holds, read from outside with the official client (straight from the simulator, not
through the fault proxy), and what it must hold once a release has ended."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from deployflow import kube
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


def _items(api: client.ApiClient, path: str) -> list[dict[str, Any]]:
    """The items of a list, as the API serves them (plain JSON, through the official client)."""
    response = kube.send(api, "GET", path)
    if response.status == 404:  # a kind this cluster does not serve
        return []
    if response.status != 200:
        raise AssertionError(f"GET {path}: {response.status} {response.read()[:300]!r}")
    items: list[dict[str, Any]] = json.loads(response.read())["items"]
    return items


def _read(api: client.ApiClient, namespace: str) -> ClusterState:
    state = ClusterState()
    for dep in _items(api, f"/apis/apps/v1/namespaces/{namespace}/deployments"):
        template = dep["spec"]["template"]
        state.deployments[dep["metadata"]["name"]] = Workload(
            replicas=dep["spec"].get("replicas", 0),
            ready=(dep.get("status") or {}).get("readyReplicas", 0),
            version=(template["metadata"].get("labels") or {}).get(VERSION_LABEL, "?"),
            image=template["spec"]["containers"][0]["image"],
        )
    for pod in _items(api, f"/api/v1/namespaces/{namespace}/pods"):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        labels = meta.get("labels") or {}
        if labels.get("job-name"):
            continue  # hook Jobs' pods are not the app
        version = labels.get(VERSION_LABEL, "?")
        state.pods[version] = state.pods.get(version, 0) + 1
    for svc in _items(api, f"/api/v1/namespaces/{namespace}/services"):
        state.selectors[svc["metadata"]["name"]] = dict(svc["spec"].get("selector") or {})
    for group, version, plural in ROUTE_KINDS:
        for obj in _items(api, f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"):
            state.weights[f"{plural}/{obj['metadata']['name']}"] = _route_weights(plural, obj["spec"])
    for ing in _items(api, f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses"):
        annotations = ing["metadata"].get("annotations") or {}
        if CANARY_WEIGHT in annotations:
            state.weights[f"ingresses/{ing['metadata']['name']}"] = {"canary-weight": int(annotations[CANARY_WEIGHT])}
    state.jobs = sorted(j["metadata"]["name"] for j in _items(api, f"/apis/batch/v1/namespaces/{namespace}/jobs"))
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
