"""The simulator counts the Kubernetes API requests it serves, by verb, resource, client and label."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client, config, watch

from deployflow.sim.api.accounting import LABEL_HEADER
from deployflow.sim.config import SimConfig
from deployflow.sim.server import Simulator


@pytest.fixture
def own_sim() -> Iterator[Simulator]:
    """A simulator of its own, for tests that reset every count."""
    simulator = Simulator(SimConfig())
    simulator.start_in_thread()
    yield simulator
    simulator.stop()


def labelled(sim: Simulator, label: str, agent: str = "count-test/1.0") -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers={LABEL_HEADER: label, "User-Agent": agent}, timeout=10)


def test_every_verb_is_counted_under_the_label_and_client_that_sent_it(sim: Simulator, namespace: str) -> None:
    label = f"verbs-{uuid.uuid4().hex[:6]}"
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    with labelled(sim, label) as http:
        assert http.get(path).status_code == 200  # LIST
        assert http.post(path, json=body).status_code == 201  # POST
        assert http.get(f"{path}/c").status_code == 200  # GET
        current = http.get(f"{path}/c").json()  # GET
        assert http.put(f"{path}/c", json=current).status_code == 200  # PUT
        assert http.patch(f"{path}/c", content=json.dumps({"data": {"k": "2"}}),
                          headers={"Content-Type": "application/merge-patch+json"}).status_code == 200  # PATCH
        assert http.patch(f"{path}/c", params={"fieldManager": "tester", "force": "true"}, content=json.dumps(body),
                          headers={"Content-Type": "application/apply-patch+yaml"}).status_code == 200  # APPLY
        assert http.get(f"{path}/missing").status_code == 404  # GET, counted with its code
        with http.stream("GET", path, params={"watch": "1", "timeoutSeconds": "1"}) as stream:  # WATCH
            stream.read()
        assert http.delete(f"{path}/c").status_code == 200  # DELETE
        assert http.delete(path).status_code == 200  # DELETECOLLECTION
        assert http.get("/api/v1").status_code == 200  # discovery: GET of no resource

    counts = sim.api_requests(label=label)
    assert counts["by_verb"] == {"LIST": 1, "POST": 1, "GET": 4, "PUT": 1, "PATCH": 1, "APPLY": 1, "WATCH": 1,
                                 "DELETE": 1, "DELETECOLLECTION": 1}
    assert counts["total"] == 12 and counts["by_client"] == {"count-test/1.0": 12}
    series = {(s["verb"], s["resource"], s["code"]): s["count"] for s in counts["series"]}
    assert series[("GET", "configmaps", 404)] == 1 and series[("GET", "configmaps", 200)] == 2
    assert series[("GET", "", 200)] == 1


def test_without_a_label_header_the_field_manager_is_the_label(sim: Simulator, namespace: str) -> None:
    manager = f"mgr-{uuid.uuid4().hex[:6]}"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"k": "v"}}
    httpx.patch(f"{sim.url}/api/v1/namespaces/{namespace}/configmaps/m", params={"fieldManager": manager},
                content=json.dumps(cm), headers={"Content-Type": "application/apply-patch+yaml"}).raise_for_status()
    assert sim.api_requests(label=manager)["by_verb"] == {"APPLY": 1}


def test_subresources_are_counted_apart_from_their_resource(sim: Simulator, namespace: str) -> None:
    label = f"sub-{uuid.uuid4().hex[:6]}"
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    with labelled(sim, label) as http:
        http.post(path, json=deploy).raise_for_status()
        http.get(f"{path}/d/scale").raise_for_status()
    resources = {s["resource"] for s in sim.api_requests(label=label)["series"]}
    assert resources == {"deployments", "deployments/scale"}


def test_the_official_client_is_counted_by_its_user_agent(sim: Simulator, kubeconfig: str, namespace: str) -> None:
    api = config.new_client_from_config(config_file=kubeconfig, context="sim")
    agent = f"bench-{uuid.uuid4().hex[:6]}/0.1"
    api.user_agent = agent
    core = client.CoreV1Api(api)
    core.list_namespaced_pod(namespace)
    for _ in watch.Watch().stream(core.list_namespaced_pod, namespace, timeout_seconds=1):
        pass
    assert sim.api_requests(client=agent)["by_verb"] == {"LIST": 1, "WATCH": 1}


def test_counts_are_on_the_metrics_endpoint_and_the_debug_endpoint(sim: Simulator, namespace: str) -> None:
    label = f"exp-{uuid.uuid4().hex[:6]}"
    with labelled(sim, label) as http:
        for _ in range(3):
            http.get(f"/api/v1/namespaces/{namespace}/pods").raise_for_status()
        metrics = http.get("/metrics").text
        debug = http.get("/debug/requests", params={"label": label}).json()
    line = next(x for x in metrics.splitlines() if f'label="{label}"' in x)
    assert line.startswith("sim_api_requests_total{") and 'verb="LIST"' in line and 'resource="pods"' in line
    assert line.endswith(" 3")
    assert debug["total"] == 3 and debug["by_verb"] == {"LIST": 3}  # /metrics and /debug are not API requests


def test_delete_answers_the_counts_and_starts_again(own_sim: Simulator) -> None:
    with labelled(own_sim, "reset") as http:
        http.get("/api/v1/namespaces/default/configmaps").raise_for_status()
        http.get("/api/v1/namespaces").raise_for_status()
        cleared: dict[str, Any] = http.delete("/debug/requests").json()
        http.get("/api/v1/namespaces").raise_for_status()
    assert cleared["total"] == 2
    assert own_sim.api_requests() == {"total": 1, "by_verb": {"LIST": 1}, "by_client": {"count-test/1.0": 1},
                                      "by_label": {"reset": 1}, "series": [
                                          {"verb": "LIST", "resource": "namespaces", "client": "count-test/1.0",
                                           "label": "reset", "code": 200, "count": 1}]}
    assert own_sim.api.requests == 1
