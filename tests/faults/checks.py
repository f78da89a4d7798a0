"""How a release must have ended, judged from outside: the run's result and `status`, the objects in the cluster,
and the simulator's count of requests that found no ready backend.

The expected cluster is derived from the release's inputs alone (its strategy, router, replicas, old and new
version), so an activity whose effect was repeated (a weight added twice, a second Job, a surplus of pods, a
Deployment left half-scaled) shows up as a difference.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployflow.status import Phase
from tests.faults.cluster import ClusterState, Workload, no_backend, read_state, requests_served
from tests.faults.releases import Release

ROUTE_OBJECTS = {"gateway-api": "httproutes", "istio": "virtualservices", "nginx": "ingresses"}


@dataclass
class TrafficMark:
    """The simulator's counters for one namespace at a moment: requests answered, and found without a backend."""

    served: int
    no_backend: int


async def traffic_mark(sim_url: str, namespace: str) -> TrafficMark:
    served = await asyncio.to_thread(requests_served, sim_url, namespace)
    return TrafficMark(served, await asyncio.to_thread(no_backend, sim_url, namespace))


def expected_cluster(release: Release, previous_version: str) -> ClusterState:
    """The only state the cluster may be in once `release` ended as it should."""
    app, spec = release.app, release.spec
    serving = release.version if release.expect == Phase.SUCCEEDED else previous_version
    if release.strategy == "rolling":
        return ClusterState(deployments={app: Workload(4, 4, serving, _image(spec["image"], serving))},
                            pods={serving: 4})
    replicas = int(spec["workload"]["replicas"])
    image = _image(spec["workload"]["image"], serving)
    if release.strategy == "blue-green":
        # The first release took blue; the new version went to green and blue scaled to zero after standby.
        old = _image(spec["workload"]["image"], previous_version)
        return ClusterState(deployments={f"{app}-green": Workload(replicas, replicas, release.version, image),
                                         f"{app}-blue": Workload(0, 0, previous_version, old)},
                            pods={release.version: replicas})
    router = spec["traffic"]["router"]
    weights: dict[str, dict[str, int]] = {}
    if router == "nginx":
        weights[f"ingresses/{app}-canary"] = {"canary-weight": 0}
    elif router in ROUTE_OBJECTS:
        weights[f"{ROUTE_OBJECTS[router]}/{app}"] = {f"{app}-stable": 100, f"{app}-canary": 0}
    canary_image = _image(spec["workload"]["image"], release.version)
    return ClusterState(
        deployments={f"{app}-stable": Workload(replicas, replicas, serving, image),
                     f"{app}-canary": Workload(0, 0, release.version, canary_image)},
        pods={serving: replicas},
        weights=weights,
    )


def _image(reference: str, version: str) -> str:
    return f"{reference.rsplit(':', 1)[0]}:{version}"


async def check_release(kubeconfig: Path, sim_url: str, release: Release, previous_version: str,
                        before: TrafficMark) -> list[str]:
    """Every way `release` did not end as its inputs dictate; empty when it did."""
    problems: list[str] = []
    status = release.status
    succeeded = release.expect == Phase.SUCCEEDED
    if status is None:
        return [f"{release.label}: no final status"]
    if status.phase != release.expect:
        problems.append(f"ended {status.phase} ({status.message}), expected {release.expect}")
    if succeeded and release.failure:
        problems.append(f"the run failed: {release.failure}")
    if not succeeded and not release.failure:
        problems.append("the run completed, but a rolled-back release must fail the workflow")
    actual = await asyncio.to_thread(read_state, kubeconfig, release.namespace)
    expected = expected_cluster(release, previous_version)
    for part in ("deployments", "pods", "weights"):
        want, got = getattr(expected, part), getattr(actual, part)
        if want != got:
            problems.append(f"cluster {part}: expected {want}, found {got}")
    problems += _status_matches_cluster(release, status.weights, status.details, actual)
    if release.strategy == "rolling" and len(actual.jobs) != 1:
        problems.append(f"the pre-deploy migration hook must run as exactly one Job, found {actual.jobs}")
    after = await traffic_mark(sim_url, release.namespace)
    lost = after.no_backend - before.no_backend
    if after.served <= before.served:
        problems.append("no request reached the app during the release: the no-backend count proves nothing")
    if succeeded and lost:
        problems.append(f"{lost} requests found no ready backend during the release")
    release.notes.append(f"{after.served - before.served} requests served, {lost} without a ready backend; "
                         f"cluster: {actual.describe()}")
    return [f"{release.label}: {p}" for p in problems]


def _status_matches_cluster(release: Release, weights: dict[str, int], details: dict[str, Any],
                            actual: ClusterState) -> list[str]:
    """The run's own account of where traffic ended must be what the cluster says."""
    app = release.app
    if release.strategy == "canary":
        if weights.get("canary") != 0 or weights.get("stable") != 100:
            return [f"status reports weights {weights}; the cluster sends everything to {app}-stable"]
    elif release.strategy == "blue-green":
        color = details.get("active_color")
        selected = actual.selectors.get(app, {}).get("deployflow.io/color")
        if color != selected:
            return [f"status reports active colour {color}, the Service {app} selects {selected}"]
    elif details.get("updated_replicas") != sum(actual.pods.values()):
        return [f"status reports {details.get('updated_replicas')} updated replicas; the cluster runs {actual.pods}"]
    return []
