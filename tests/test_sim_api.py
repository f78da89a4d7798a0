"""The simulator's API through the official `kubernetes` client, as activities use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from deployflow import kube
from deployflow.sim.config import SimConfig
from deployflow.sim.server import Simulator


@pytest.fixture
def api(kubeconfig: str) -> client.ApiClient:
    return kube.api_client("sim")


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def status_of(err: ApiException) -> dict[str, Any]:
    body = json.loads(err.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == err.status
    return body


def cm(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data or {"k": "v"}}


def deployment(name: str, image: str = "web:1", replicas: int = 1, **template_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image, **template_extra}]},
            },
        },
    }


# ---- CRUD and errors ---------------------------------------------------------------------------------


def test_crud_round_trip(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, cm("settings", data={"a": "1"}))
    assert created.metadata.uid and created.metadata.resource_version
    got = core.read_namespaced_config_map("settings", namespace)
    assert got.data == {"a": "1"}
    got.data = {"a": "2"}
    replaced = core.replace_namespaced_config_map("settings", namespace, got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["settings"]
    core.delete_namespaced_config_map("settings", namespace)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("settings", namespace)
    assert err.value.status == 404


def test_create_twice_is_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(namespace, cm("dup"))
    assert err.value.status == 409 and status_of(err.value)["reason"] == "AlreadyExists"


def test_stale_update_is_a_conflict_and_changes_nothing(core: client.CoreV1Api, namespace: str) -> None:
    first = core.create_namespaced_config_map(namespace, cm("c", data={"v": "1"}))
    fresh = core.read_namespaced_config_map("c", namespace)
    fresh.data = {"v": "2"}
    core.replace_namespaced_config_map("c", namespace, fresh)
    first.data = {"v": "stale"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("c", namespace, first)
    body = status_of(err.value)
    assert err.value.status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("c", namespace).data == {"v": "2"}


def test_not_found_is_a_status_body(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", namespace)
    body = status_of(err.value)
    assert body["reason"] == "NotFound" and body["details"]["name"] == "missing"
    assert body["message"] == 'configmaps "missing" not found'


def test_create_in_a_missing_namespace_is_not_found(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-namespace", cm("x"))
    assert err.value.status == 404
    assert status_of(err.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_invalid_deployment_is_422_naming_the_fields(apps: client.AppsV1Api, namespace: str) -> None:
    bad = deployment("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    del bad["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(namespace, bad)
    body = status_of(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid"
    fields = {c["field"] for c in body["details"]["causes"]}
    assert fields == {"spec.template.metadata.labels", "spec.template.spec.containers[0].image"}
    assert apps.list_namespaced_deployment(namespace).items == []  # nothing was stored


def test_wrong_type_is_a_bad_request(sim: Simulator, namespace: str) -> None:
    bad = deployment("typed")
    bad["spec"]["replicas"] = "three"  # the client's own models refuse this, so it goes over plain HTTP
    resp = httpx.post(f"{sim.url}/apis/apps/v1/namespaces/{namespace}/deployments", json=bad)
    assert resp.status_code == 400 and "spec.replicas" in resp.json()["message"]


def test_dry_run_stores_nothing(core: client.CoreV1Api, namespace: str) -> None:
    out = core.create_namespaced_config_map(namespace, cm("dry"), dry_run="All")
    assert out.metadata.name == "dry"
    assert core.list_namespaced_config_map(namespace).items == []


def test_service_gets_a_cluster_ip_that_survives_a_replace(core: client.CoreV1Api, namespace: str) -> None:
    svc = core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert svc.spec.cluster_ip and svc.spec.ports[0].target_port == 80 and svc.spec.ports[0].protocol == "TCP"
    body = {"metadata": {"name": "web", "resourceVersion": svc.metadata.resource_version},
            "spec": {"selector": {"app": "web2"}, "ports": [{"port": 80}]}}
    replaced = core.replace_namespaced_service("web", namespace, body)
    assert replaced.spec.cluster_ip == svc.spec.cluster_ip and replaced.spec.selector == {"app": "web2"}


# ---- selectors and paging -------------------------------------------------------------------------------


def test_label_and_field_selectors(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("a", {"app": "web", "track": "stable"}))
    core.create_namespaced_config_map(namespace, cm("b", {"app": "web", "track": "canary"}))
    core.create_namespaced_config_map(namespace, cm("c", {"app": "db"}))

    def names(**kw: str) -> list[str]:
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(namespace, **kw).items)

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app==web,track=canary") == ["b"]
    assert names(label_selector="track!=canary") == ["a", "c"]
    assert names(label_selector="track in (stable, canary)") == ["a", "b"]
    assert names(label_selector="app notin (web)") == ["c"]
    assert names(label_selector="track") == ["a", "b"]
    assert names(label_selector="!track") == ["c"]
    assert names(label_selector="app=web,track notin (canary)") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="app=web") == ["a"]
    with pytest.raises(ApiException) as err:
        names(label_selector="app in (web")
    assert err.value.status == 400


def test_list_pages_with_limit_and_continue(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(5):
        core.create_namespaced_config_map(namespace, cm(f"p{i}"))
    first = core.list_namespaced_config_map(namespace, limit=2)
    assert len(first.items) == 2 and first.metadata._continue and first.metadata.remaining_item_count == 3
    seen = [i.metadata.name for i in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(namespace, limit=2, _continue=token)
        seen += [i.metadata.name for i in page.items]
        token = page.metadata._continue
    assert seen == [f"p{i}" for i in range(5)]


# ---- patches -----------------------------------------------------------------------------------------


def test_merge_patch(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("m", {"keep": "1", "drop": "1"}, {"x": "1"}))
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"drop": None, "new": "2"}},
                                                      "data": {"y": "2"}}, _content_type="application/merge-patch+json")
    got = core.read_namespaced_config_map("m", namespace)
    assert got.metadata.labels == {"keep": "1", "new": "2"} and got.data == {"x": "1", "y": "2"}


def test_json_patch_and_a_failed_test_op(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("jp", env=[{"name": "A", "value": "1"}]))
    ops = [
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "web:1"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:2"},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "B", "value": "2"}},
    ]
    out = apps.patch_namespaced_deployment("jp", namespace, ops)
    container = out.spec.template.spec.containers[0]
    assert container.image == "web:2" and [e.name for e in container.env] == ["A", "B"]
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("jp", namespace, [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert err.value.status == 422
    assert apps.read_namespaced_deployment("jp", namespace).spec.template.spec.containers[0].image == "web:2"


def test_strategic_merge_merges_containers_by_name(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment(
        "sm", env=[{"name": "A", "value": "1"}], ports=[{"containerPort": 8080}]))
    # The client sends dict bodies of PATCH as strategic merge patches.
    apps.patch_namespaced_deployment("sm", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "web:2", "env": [{"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ]}}}})
    got = apps.read_namespaced_deployment("sm", namespace).spec.template.spec.containers
    assert [(c.name, c.image) for c in got] == [("app", "web:2"), ("sidecar", "proxy:1")]
    assert [e.name for e in got[0].env] == ["A", "B"] and got[0].ports[0].container_port == 8080
    apps.patch_namespaced_deployment("sm", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"},
        {"name": "app", "env": [{"name": "A", "$patch": "delete"}]},
    ]}}}})
    got = apps.read_namespaced_deployment("sm", namespace).spec.template.spec.containers
    assert [c.name for c in got] == ["app"] and [e.name for e in got[0].env] == ["B"]


def test_strategic_merge_directives(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("dir", args=["--a", "--b"]))
    sidecar = {"name": "sidecar", "image": "proxy:1"}
    apps.patch_namespaced_deployment("dir", namespace, {"spec": {
        # What `kubectl apply` sends when switching to Recreate: rollingUpdate must go.
        "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
        "template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [sidecar, {"name": "app", "args": ["--c"]}],
        }},
    }})
    got = apps.read_namespaced_deployment("dir", namespace).spec
    assert got.strategy.type == "Recreate" and got.strategy.rolling_update is None
    assert [c.name for c in got.template.spec.containers] == ["sidecar", "app"]
    assert got.template.spec.containers[1].args == ["--c"]  # args is atomic: replaced, not merged
    apps.patch_namespaced_deployment("dir", namespace, {"metadata": {"finalizers": ["a", "b"]}})
    apps.patch_namespaced_deployment("dir", namespace, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"],
                                                                     "finalizers": ["c"]}})
    assert apps.read_namespaced_deployment("dir", namespace).metadata.finalizers == ["b", "c"]


def apply(api: client.ApiClient, path: str, body: dict[str, Any], manager: str, force: bool = False) -> Any:
    """A server-side apply of a Deployment; `path` is '<namespace>/<name>'. Returns the object as JSON."""
    namespace, name = path.split("/")
    out = client.AppsV1Api(api).patch_namespaced_deployment(
        name, namespace, body, field_manager=manager, force=force or None,
        _content_type="application/apply-patch+yaml")
    return api.sanitize_for_serialization(out)


def test_server_side_apply_conflicts_and_force(api: client.ApiClient, apps: client.AppsV1Api,
                                               namespace: str) -> None:
    path = f"{namespace}/ssa"
    created = apply(api, path, deployment("ssa", replicas=2), "deployer")
    assert created["spec"]["replicas"] == 2
    assert [m["manager"] for m in created["metadata"]["managedFields"]] == ["deployer"]
    # Same value from another manager: shared ownership, no conflict.
    apply(api, path, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
                      "spec": {"replicas": 2}}, "autoscaler")
    with pytest.raises(ApiException) as err:
        apply(api, path, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
                          "spec": {"replicas": 5}}, "autoscaler-2")
    body = status_of(err.value)
    assert err.value.status == 409 and body["reason"] == "Conflict"
    causes = body["details"]["causes"]
    assert {(c["field"], c["message"]) for c in causes} == {
        (".spec.replicas", 'conflict with "deployer"'), (".spec.replicas", 'conflict with "autoscaler"')}
    assert apps.read_namespaced_deployment("ssa", namespace).spec.replicas == 2
    forced = apply(api, path, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
                               "spec": {"replicas": 5}}, "autoscaler-2", force=True)
    assert forced["spec"]["replicas"] == 5
    owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert "f:replicas" in owners["autoscaler-2"]["f:spec"]
    assert "f:replicas" not in owners["deployer"]["f:spec"] and "autoscaler" not in owners


def test_server_side_apply_removes_fields_a_manager_stops_applying(api: client.ApiClient, apps: client.AppsV1Api,
                                                                   namespace: str) -> None:
    path = f"{namespace}/prune"
    spec = deployment("prune", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    spec["metadata"]["labels"]["extra"] = "yes"
    apply(api, path, spec, "ci")
    apps.patch_namespaced_deployment("prune", namespace, {"metadata": {"labels": {"owner": "ops"}}})
    again = deployment("prune", env=[{"name": "A", "value": "1"}])
    apply(api, path, again, "ci")
    got = apps.read_namespaced_deployment("prune", namespace)
    assert got.metadata.labels == {"app": "prune", "owner": "ops"}  # ops' label is not ci's to remove
    assert [e.name for e in got.spec.template.spec.containers[0].env] == ["A"]
    generation = got.metadata.generation
    apply(api, path, again, "ci")  # the same apply twice is a no-op
    assert apps.read_namespaced_deployment("prune", namespace).metadata.generation == generation


def test_server_side_apply_requires_a_field_manager(apps: client.AppsV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("x", namespace, deployment("x"), _content_type="application/apply-patch+yaml")
    assert err.value.status == 422 and "fieldManager" in status_of(err.value)["message"]


# ---- subresources --------------------------------------------------------------------------------------


def test_status_subresource_is_separate_from_spec(api: client.ApiClient, namespace: str) -> None:
    net = client.NetworkingV1Api(api)
    ing = {"metadata": {"name": "edge"}, "spec": {"defaultBackend": {"service": {"name": "web", "port": {
        "number": 80}}}}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}
    created = net.create_namespaced_ingress(namespace, ing)
    assert created.status is None or created.status.load_balancer is None  # status is not set on create
    created.status = {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}
    created.spec.default_backend.service.name = "ignored"
    out = net.replace_namespaced_ingress_status("edge", namespace, created)
    assert out.status.load_balancer.ingress[0].ip == "10.0.0.1"
    assert out.spec.default_backend.service.name == "web"
    out.status = {"loadBalancer": {}}
    out.spec.default_backend.service.name = "web2"
    again = net.replace_namespaced_ingress("edge", namespace, out)
    assert again.spec.default_backend.service.name == "web2"
    assert again.status.load_balancer.ingress[0].ip == "10.0.0.1"


def test_scale_subresource(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("sc", replicas=1))
    scale = apps.read_namespaced_deployment_scale("sc", namespace)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=sc"
    apps.patch_namespaced_deployment_scale("sc", namespace, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("sc", namespace).spec.replicas == 4
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment_scale("sc", namespace, {"spec": {"replicas": -1}})
    assert err.value.status == 422 and status_of(err.value)["details"]["causes"][0]["field"] == "spec.replicas"


def test_pod_log_returns_lines(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, {"metadata": {"name": "job-pod"}, "spec": {
        "containers": [{"name": "main", "image": "check:1"}], "restartPolicy": "Never"}})
    text = core.read_namespaced_pod_log("job-pod", namespace)
    assert text.strip() and all(line for line in text.strip().splitlines())
    assert len(core.read_namespaced_pod_log("job-pod", namespace, tail_lines=1).strip().splitlines()) == 1


# ---- delete ----------------------------------------------------------------------------------------------


def owned(name: str, owner: Any) -> dict[str, Any]:
    body = cm(name)
    body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
                                            "uid": owner.metadata.uid}]
    return body


def test_delete_cascades_to_dependents(core: client.CoreV1Api, namespace: str) -> None:
    root = core.create_namespaced_config_map(namespace, cm("root"))
    child = core.create_namespaced_config_map(namespace, owned("child", root))
    core.create_namespaced_config_map(namespace, owned("grandchild", child))
    core.create_namespaced_config_map(namespace, cm("bystander"))
    core.delete_namespaced_config_map("root", namespace)
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["bystander"]


def test_orphan_delete_keeps_dependents(core: client.CoreV1Api, namespace: str) -> None:
    root = core.create_namespaced_config_map(namespace, cm("root"))
    core.create_namespaced_config_map(namespace, owned("child", root))
    core.delete_namespaced_config_map("root", namespace, propagation_policy="Orphan")
    left = core.list_namespaced_config_map(namespace).items
    assert [c.metadata.name for c in left] == ["child"] and not left[0].metadata.owner_references


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
