"""Deletion as a real cluster plays it: graceful pod termination (Terminating, out of Endpoints first, preStop
hooks, removal when the grace period ends), finalizers, and Foreground / Background / Orphan propagation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from deployflow.sim.controllers.endpointslices import slice_name
from deployflow.sim.controllers.pods import IMAGE_PULL_ERROR, is_ready
from deployflow.sim.controllers.termination import PRESTOP_SECONDS, prestop_seconds
from deployflow.sim.resources import CONFIGMAPS, DEPLOYMENTS, ENDPOINTS, ENDPOINTSLICES, PODS, REPLICASETS, SERVICES
from deployflow.sim.server import Simulator
from deployflow.sim.store import Obj
from deployflow.sim.traffic import NO_BACKEND
from tests.sim_support import NS, SimCluster, container_status, deployment


def endpoint_names(cluster: SimCluster, service: str = "web") -> set[str]:
    ep = cluster.store.get(ENDPOINTS, NS, service) or {}
    return {a["targetRef"]["name"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def running(cluster: SimCluster, replicas: int = 2, annotations: dict[str, str] | None = None) -> list[Obj]:
    cluster.deploy(replicas=replicas, annotations=annotations)
    cluster.service("web", {"app": "web"})
    cluster.run_until(lambda: cluster.complete() and len(endpoint_names(cluster)) == replicas)
    return cluster.pods()


def pod(cluster: SimCluster, name: str) -> Obj | None:
    return cluster.store.get(PODS, NS, name)


def test_a_deleted_pod_is_terminating_out_of_endpoints_and_gone_when_its_grace_period_ends(
        cluster: SimCluster) -> None:
    victim = running(cluster)[0]["metadata"]["name"]
    deleted = cluster.store.delete(PODS, NS, victim)
    assert deleted["metadata"]["deletionTimestamp"] and deleted["metadata"]["deletionGracePeriodSeconds"] == 30
    start = cluster.clock.t
    cluster.step(0.5)
    left = pod(cluster, victim)
    assert left is not None and not is_ready(left)
    assert victim not in endpoint_names(cluster)
    cluster.run_until(lambda: pod(cluster, victim) is None, seconds=60)
    assert 30 <= cluster.clock.t - start <= 31
    assert len(cluster.ready_pods()) == 2  # replaced while it terminated


def slice_conditions(cluster: SimCluster) -> dict[str, dict[str, bool]]:
    eps = cluster.store.get(ENDPOINTSLICES, NS, slice_name("web")) or {}
    return {e["targetRef"]["name"]: e["conditions"] for e in eps.get("endpoints") or []}


def test_the_endpointslice_keeps_a_terminating_pod_as_terminating_until_it_is_gone(cluster: SimCluster) -> None:
    victim = running(cluster)[0]["metadata"]["name"]
    assert slice_conditions(cluster)[victim] == {"ready": True, "serving": True, "terminating": False}
    cluster.store.delete(PODS, NS, victim)
    cluster.step(0.5)
    assert victim not in endpoint_names(cluster)
    assert slice_conditions(cluster)[victim] == {"ready": False, "serving": True, "terminating": True}
    cluster.run_until(lambda: pod(cluster, victim) is None, seconds=60)
    cluster.step(0.5)
    assert victim not in slice_conditions(cluster)
    cluster.store.delete(SERVICES, NS, "web")  # the slice is the Service's: it goes with it
    assert cluster.store.get(ENDPOINTSLICES, NS, slice_name("web")) is None


def test_grace_period_zero_removes_at_once_and_a_shorter_one_cuts_a_running_termination(
        cluster: SimCluster) -> None:
    first, second = (p["metadata"]["name"] for p in running(cluster))
    cluster.store.delete(PODS, NS, first, grace_seconds=0)
    assert pod(cluster, first) is None
    cluster.store.delete(PODS, NS, second)
    assert pod(cluster, second) is not None
    cluster.store.delete(PODS, NS, second, grace_seconds=0)  # `kubectl delete --grace-period=0 --force`
    assert pod(cluster, second) is None


def test_a_pod_with_nothing_running_goes_at_the_kubelets_next_look(cluster: SimCluster) -> None:
    cluster.deploy(replicas=1, annotations={IMAGE_PULL_ERROR: "true"})
    cluster.run_until(lambda: bool(cluster.pods()) and "waiting" in container_status(cluster.pods()[0])["state"])
    victim = cluster.pods()[0]["metadata"]["name"]
    cluster.store.delete(PODS, NS, victim)
    assert pod(cluster, victim) is not None  # the apiserver only marks it
    cluster.step(0.5)
    assert pod(cluster, victim) is None


def test_the_pods_own_termination_grace_period_is_the_default(cluster: SimCluster) -> None:
    victim = running(cluster, replicas=1)[0]
    cluster.store.mutate(PODS, NS, victim["metadata"]["name"],
                         lambda p: p["spec"].update(terminationGracePeriodSeconds=4))
    deleted = cluster.store.delete(PODS, NS, victim["metadata"]["name"])
    assert deleted["metadata"]["deletionGracePeriodSeconds"] == 4
    cluster.run_until(lambda: pod(cluster, victim["metadata"]["name"]) is None, seconds=5)


@pytest.mark.parametrize("hook, seconds", [
    ({"sleep": {"seconds": 7}}, 7.0),
    ({"exec": {"command": ["/bin/sh", "-c", "sleep 5 && nginx -s quit"]}}, 5.0),
    ({"httpGet": {"path": "/drain", "port": 8080}}, 0.0),
])
def test_prestop_durations_come_from_the_hook(hook: dict[str, Any], seconds: float) -> None:
    assert prestop_seconds({"spec": {"containers": [{"name": "a", "lifecycle": {"preStop": hook}}]}}) == seconds
    annotated = {"metadata": {"annotations": {PRESTOP_SECONDS: "3"}},
                 "spec": {"containers": [{"lifecycle": {"preStop": hook}}]}}
    assert prestop_seconds(annotated) == 3.0


def test_containers_run_through_the_prestop_hook_then_stop(cluster: SimCluster) -> None:
    victim = running(cluster, replicas=1, annotations={PRESTOP_SECONDS: "10"})[0]["metadata"]["name"]
    cluster.store.delete(PODS, NS, victim)
    start = cluster.clock.t
    cluster.step(0.5)
    left = pod(cluster, victim)
    assert left is not None and "running" in container_status(left)["state"] and not is_ready(left)
    cluster.run_until(lambda: "terminated" in container_status(pod(cluster, victim) or {})["state"], seconds=11)
    assert 10 <= cluster.clock.t - start <= 10.5
    assert pod(cluster, victim) is not None  # the object stays until the grace period ends


def test_traffic_reaches_a_terminating_pod_only_while_its_endpoint_is_listed(cluster: SimCluster) -> None:
    pods = running(cluster)
    victim = pods[0]["metadata"]["name"]
    cluster.store.delete(PODS, NS, victim)
    # Before the endpoints controller's next pass the endpoint is still listed: requests reach the pod, and it
    # serves them.
    served = cluster.traffic.send(NS, "web", 400)
    assert NO_BACKEND not in served and cluster.traffic.to_terminating(NS, "web") > 0
    assert cluster.traffic.counts(NS)["web"]["v1"].get("500", 0) == 0
    cluster.step(0.5)
    assert victim not in endpoint_names(cluster)
    before = cluster.traffic.to_terminating(NS, "web")
    for _ in range(10):
        served = cluster.traffic.send(NS, "web", 50)
        cluster.traffic.tick(cluster.clock.t)
        cluster.step(0.5)
        assert NO_BACKEND not in served
    assert cluster.traffic.to_terminating(NS, "web") == before
    assert "sim_requests_to_terminating_total" in cluster.traffic.metrics_text()


def configmap(finalizers: list[str]) -> Obj:
    return {"metadata": {"name": "held", "namespace": NS, "finalizers": finalizers}, "data": {"a": "1"}}


def test_finalizers_hold_an_object_until_a_write_removes_the_last(cluster: SimCluster) -> None:
    cluster.store.create(CONFIGMAPS, configmap(["example.com/a", "example.com/b"]))
    held = cluster.store.delete(CONFIGMAPS, NS, "held")
    assert held["metadata"]["deletionTimestamp"]
    current = cluster.store.get(CONFIGMAPS, NS, "held")
    assert current is not None
    current["metadata"]["finalizers"] = ["example.com/b"]
    cluster.store.update(CONFIGMAPS, current)
    current = cluster.store.get(CONFIGMAPS, NS, "held")
    assert current is not None and current["metadata"]["deletionTimestamp"]
    current["metadata"]["finalizers"] = []
    cluster.store.update(CONFIGMAPS, current)
    assert cluster.store.get(CONFIGMAPS, NS, "held") is None


def test_foreground_deletion_keeps_the_owner_until_its_dependents_are_gone(cluster: SimCluster) -> None:
    running(cluster)
    cluster.store.delete(DEPLOYMENTS, NS, "web", propagation="Foreground")
    owner = cluster.deployment()
    assert "foregroundDeletion" in owner["metadata"]["finalizers"] and owner["metadata"]["deletionTimestamp"]
    assert cluster.replicasets()  # held by its terminating pods
    cluster.run_until(lambda: cluster.store.get(DEPLOYMENTS, NS, "web") is None, seconds=40)
    assert cluster.replicasets() == [] and cluster.pods() == []


def test_background_deletion_removes_the_owner_first_and_orphan_keeps_dependents(cluster: SimCluster) -> None:
    running(cluster)
    rs_name = cluster.replicasets()[0]["metadata"]["name"]
    cluster.store.delete(DEPLOYMENTS, NS, "web", propagation="Orphan")
    assert cluster.store.get(DEPLOYMENTS, NS, "web") is None
    orphan = cluster.store.get(REPLICASETS, NS, rs_name)
    assert orphan is not None and not orphan["metadata"].get("ownerReferences")
    assert len(cluster.pods()) == 2
    cluster.store.delete(REPLICASETS, NS, rs_name)  # Background: gone now, its pods terminate after it
    assert cluster.store.get(REPLICASETS, NS, rs_name) is None
    assert all(p["metadata"].get("deletionTimestamp") for p in cluster.pods())
    cluster.run_until(lambda: not cluster.pods(), seconds=40)


def test_the_owner_index_follows_owner_references_as_they_change(cluster: SimCluster) -> None:
    running(cluster)
    rs = cluster.replicasets()[0]
    uid = rs["metadata"]["uid"]
    with cluster.store.lock:
        assert sorted(o["metadata"]["name"] for _, o in cluster.store.dependents(uid)) == sorted(
            p["metadata"]["name"] for p in cluster.pods())
    name = cluster.pods()[0]["metadata"]["name"]
    cluster.store.mutate(PODS, NS, name, lambda p: p["metadata"].pop("ownerReferences"))
    with cluster.store.lock:
        assert name not in {o["metadata"]["name"] for _, o in cluster.store.dependents(uid)}


# ---- through the API, as the official client sends it -------------------------------------------------------


def wait(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout  # a hang guard, not a timing assertion
    while not (result := check()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)
    return result


def test_delete_options_through_the_api(sim: Simulator, namespace: str, core: client.CoreV1Api,
                                        apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=1))
    name = wait(lambda: core.list_namespaced_pod(namespace).items, "a pod")[0].metadata.name
    marked = core.delete_namespaced_pod(name, namespace, grace_period_seconds=600)
    assert marked.metadata.deletion_timestamp and marked.metadata.deletion_grace_period_seconds == 600
    assert core.read_namespaced_pod(name, namespace).metadata.deletion_timestamp
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    assert name not in {p.metadata.name for p in core.list_namespaced_pod(namespace).items}
    # The apiserver answers with the object it keeps (the client would read it as a Status): read the JSON.
    held = json.loads(apps.delete_namespaced_deployment("web", namespace, propagation_policy="Foreground",
                                                        _preload_content=False).data)
    assert "foregroundDeletion" in held["metadata"]["finalizers"]
    wait(lambda: not apps.list_namespaced_deployment(namespace).items, "the Deployment gone after its pods")
    assert sim.requests_to_terminating(namespace) == 0  # no Service: no request reached anything
    assert "# TYPE sim_requests_to_terminating_total counter" in sim.traffic.metrics_text()
