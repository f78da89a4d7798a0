"""The simulator's API beyond CRUD, through the official client: watch (from a resourceVersion, bookmarks, selector
transitions, 410 Gone), discovery, injected faults, and the Service proxy into simulated traffic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from deployflow.sim.config import SimConfig
from deployflow.sim.server import Simulator
from tests.sim_support import cm, deployment

# ---- watch -----------------------------------------------------------------------------------------------


def test_watch_from_a_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    start = core.create_namespaced_config_map(namespace, cm("w", data={"v": "0"})).metadata.resource_version
    for i in range(1, 3):
        core.patch_namespaced_config_map("w", namespace, {"data": {"v": str(i)}})
    core.create_namespaced_config_map(namespace, cm("other", {"skip": "me"}))
    core.delete_namespaced_config_map("w", namespace)
    events = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=start,
                                      label_selector="!skip", timeout_seconds=1):
        events.append((event["type"], event["object"].metadata.name, (event["object"].data or {}).get("v")))
        if event["type"] == "DELETED":
            break
    assert events == [("MODIFIED", "w", "1"), ("MODIFIED", "w", "2"), ("DELETED", "w", "2")]


def test_watch_without_resource_version_starts_with_the_current_state(core: client.CoreV1Api,
                                                                      namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("present"))
    stream = watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=1)
    first = next(stream)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "present")
    stream.close()


@pytest.fixture
def small_history_sim(tmp_path: Any) -> Iterator[Simulator]:
    simulator = Simulator(SimConfig())
    simulator.store.history_size = 5
    simulator.start_in_thread()
    yield simulator
    simulator.stop()


def test_watch_from_a_too_old_resource_version_is_gone(small_history_sim: Simulator, tmp_path: Any) -> None:
    from kubernetes import config

    kc = small_history_sim.write_kubeconfig(str(tmp_path / "config"))
    core = client.CoreV1Api(config.new_client_from_config(config_file=kc, context="sim"))
    old = core.create_namespaced_config_map("default", cm("old")).metadata.resource_version
    for i in range(10):
        core.patch_namespaced_config_map("old", "default", {"data": {"i": str(i)}})
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=old,
                                      timeout_seconds=1):
            pass
    assert err.value.status == 410


def test_watch_sends_bookmarks(sim: Simulator, namespace: str) -> None:
    url = f"{sim.url}/api/v1/namespaces/{namespace}/configmaps"
    rv = httpx.get(url).json()["metadata"]["resourceVersion"]
    with httpx.stream("GET", url, params={"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                                          "timeoutSeconds": "7"}, timeout=10) as resp:
        first = json.loads(next(resp.iter_lines()))
    assert first["type"] == "BOOKMARK" and first["object"]["metadata"]["resourceVersion"] == rv


# ---- discovery, faults ------------------------------------------------------------------------------


def test_discovery_lists_resources_with_short_names(sim: Simulator) -> None:
    core_list = httpx.get(f"{sim.url}/api/v1").json()
    assert core_list["kind"] == "APIResourceList" and core_list["apiVersion"] == "v1"
    pods = next(r for r in core_list["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and "watch" in pods["verbs"] and pods["singularName"] == "pod"
    apps_list = httpx.get(f"{sim.url}/apis/apps/v1").json()
    assert {"deployments", "deployments/scale", "deployments/status"} <= {r["name"] for r in apps_list["resources"]}
    doc = httpx.get(f"{sim.url}/openapi/v3/apis/apps/v1").json()
    gvk = {"group": "apps", "version": "v1", "kind": "Deployment"}
    schemas = doc["components"]["schemas"]
    deploy = next(s for s in schemas.values() if gvk in s.get("x-kubernetes-group-version-kind", []))
    assert deploy["properties"]["spec"]
    pod_spec = next(s for n, s in doc["components"]["schemas"].items() if n.endswith(".PodSpec"))
    assert pod_spec["properties"]["containers"]["x-kubernetes-patch-merge-key"] == "name"


def test_faults_hit_resources_not_discovery_and_clear(sim: Simulator, core: client.CoreV1Api,
                                                      namespace: str) -> None:
    try:
        # 500: 429 and 503 carry Retry-After, which urllib3 under the client honours by waiting and retrying.
        sim.faults.set(error_rate=1.0, codes=(500,))
        with pytest.raises(ApiException) as err:
            core.list_namespaced_config_map(namespace)
        assert err.value.status == 500
        assert httpx.get(f"{sim.url}/api/v1").status_code == 200
        sim.faults.set(conflict_rate=1.0)
        assert core.list_namespaced_config_map(namespace).items == []  # reads never conflict
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map(namespace, cm("x"))
        assert err.value.status == 409
    finally:
        sim.faults.clear()
    core.create_namespaced_config_map(namespace, cm("x"))


def test_faults_are_seeded(sim: Simulator, namespace: str) -> None:
    url = f"{sim.url}/api/v1/namespaces/{namespace}/configmaps"

    def run() -> list[int]:
        sim.faults.set(error_rate=0.5, codes=(500, 429), seed=7)
        try:
            return [httpx.get(url).status_code for _ in range(20)]
        finally:
            sim.faults.clear()

    first = run()
    assert set(first) == {200, 500, 429} and run() == first


def test_watch_with_a_selector_reports_objects_leaving_and_entering_it(core: client.CoreV1Api,
                                                                       namespace: str) -> None:
    start = core.create_namespaced_config_map(namespace, cm("s", {"track": "canary"})).metadata.resource_version
    core.patch_namespaced_config_map("s", namespace, {"metadata": {"labels": {"track": "stable"}}})
    core.patch_namespaced_config_map("s", namespace, {"metadata": {"labels": {"track": "canary"}}})
    core.patch_namespaced_config_map("s", namespace, {"data": {"k": "2"}})
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=start,
                                      label_selector="track=canary", timeout_seconds=1):
        seen.append(event["type"])
        if len(seen) == 3:
            break
    assert seen == ["DELETED", "ADDED", "MODIFIED"]


# ---- traffic through the API server --------------------------------------------------------------------


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)
    return result


def test_service_proxy_reaches_a_ready_pod_and_metrics_count_it(sim: Simulator, apps: client.AppsV1Api,
                                                                core: client.CoreV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("shop", image="shop:1"))
    core.create_namespaced_service(namespace, {"metadata": {"name": "shop"}, "spec": {
        "selector": {"app": "shop"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    proxy = f"{sim.url}/api/v1/namespaces/{namespace}/services/shop:80/proxy/ping"
    resp = wait_for(lambda: (r := httpx.get(proxy)).status_code == 200 and r, "a ready backend")
    assert resp.json()["path"] == "/ping" and resp.json()["pod"].startswith("shop-")
    metrics = httpx.get(f"{sim.url}/metrics").text
    assert f'http_requests_total{{namespace="{namespace}",service="shop"' in metrics


def test_service_proxy_without_backends_is_503_and_counted(sim: Simulator, core: client.CoreV1Api,
                                                           namespace: str) -> None:
    core.create_namespaced_service(namespace, {"metadata": {"name": "empty"}, "spec": {
        "selector": {"app": "nothing"}, "ports": [{"port": 80}]}})
    before = sim.no_backend_requests(namespace=namespace, service="empty")
    assert httpx.get(f"{sim.url}/api/v1/namespaces/{namespace}/services/empty/proxy/").status_code == 503
    assert sim.no_backend_requests(namespace=namespace, service="empty") > before  # synthetic traffic adds more
    missing = httpx.get(f"{sim.url}/api/v1/namespaces/{namespace}/services/nope/proxy/")
    assert missing.status_code == 404
