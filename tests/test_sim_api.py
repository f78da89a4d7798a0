"""The simulator's API through the official `kubernetes` client, as activities use it: CRUD, selectors and pages,
the patch types, subresources, deletion."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from deployflow.sim.server import Simulator
from tests.sim_support import cm, deployment, status_of

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


def test_a_selector_with_an_unknown_operator_is_invalid(apps: client.AppsV1Api, namespace: str) -> None:
    bad = deployment("bad")
    bad["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["bad"]}]}
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(namespace, bad)
    causes = status_of(err.value)["details"]["causes"]
    assert err.value.status == 422 and [(c["field"], "Near" in c["message"]) for c in causes] == [
        ("spec.selector", True)]


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
