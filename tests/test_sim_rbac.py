"""ServiceAccounts and the RBAC kinds in the simulator: stored objects (never enforced) with discovery, the OpenAPI
document kubectl reads, CRUD, list and watch, namespaced or cluster-scoped as in Kubernetes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from deployflow.sim.server import Simulator

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def rbac(api: client.ApiClient) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(api)


def rules(*verbs: str) -> list[dict[str, Any]]:
    return [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": list(verbs)}]


def binding(name: str, role_kind: str, subject_namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": "deployer"},
        "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": subject_namespace}],
    }


def test_discovery_serves_the_rbac_group_and_service_accounts(sim: Simulator) -> None:
    groups = httpx.get(f"{sim.url}/apis").json()["groups"]
    assert any(g["name"] == RBAC and g["preferredVersion"]["version"] == "v1" for g in groups)
    listed = {r["name"]: r for r in httpx.get(f"{sim.url}/apis/{RBAC}/v1").json()["resources"]}
    assert {name: r["namespaced"] for name, r in listed.items()} == {
        "roles": True, "rolebindings": True, "clusterroles": False, "clusterrolebindings": False,
    }
    assert {"create", "get", "list", "watch", "patch", "update", "delete"} <= set(listed["roles"]["verbs"])
    core = {r["name"]: r for r in httpx.get(f"{sim.url}/api/v1").json()["resources"]}
    assert core["serviceaccounts"]["namespaced"] and core["serviceaccounts"]["shortNames"] == ["sa"]

    doc = httpx.get(f"{sim.url}/openapi/v3/apis/{RBAC}/v1").json()
    schemas = doc["components"]["schemas"]
    role = next(s for s in schemas.values() if {"group": RBAC, "version": "v1", "kind": "Role"}
                in s.get("x-kubernetes-group-version-kind", []))
    assert {"metadata", "rules"} <= set(role["properties"])
    binding_schema = schemas["io.k8s.api.rbac.v1.RoleBinding"]
    assert {"roleRef", "subjects"} <= set(binding_schema["properties"])
    assert f"/apis/{RBAC}/v1/clusterroles/{{name}}" in doc["paths"]  # cluster-scoped: no namespace in the path
    assert f"/apis/{RBAC}/v1/namespaces/{{namespace}}/roles/{{name}}" in doc["paths"]


def test_namespaced_rbac_and_service_accounts_round_trip(rbac: client.RbacAuthorizationV1Api, core: client.CoreV1Api,
                                                         namespace: str) -> None:
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "deployer"}, "rules": rules("get")})
    rbac.create_namespaced_role_binding(namespace, binding("deployer", "Role", namespace))
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})

    role = rbac.read_namespaced_role("deployer", namespace)
    role.rules[0].verbs = ["get", "patch"]
    rbac.replace_namespaced_role("deployer", namespace, role)
    assert rbac.read_namespaced_role("deployer", namespace).rules[0].verbs == ["get", "patch"]
    bound = rbac.list_namespaced_role_binding(namespace).items
    assert [(b.role_ref.kind, b.subjects[0].name) for b in bound] == [("Role", "worker")]
    assert [sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items] == ["worker"]

    with pytest.raises(ApiException) as twice:
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "deployer"}, "rules": []})
    assert twice.value.status == 409
    rbac.delete_namespaced_role("deployer", namespace)
    with pytest.raises(ApiException) as gone:
        rbac.read_namespaced_role("deployer", namespace)
    assert gone.value.status == 404


def test_deleting_a_namespace_removes_its_roles_bindings_and_service_accounts(
    rbac: client.RbacAuthorizationV1Api, core: client.CoreV1Api, sim: Simulator,
) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    sim.create_namespace(name)
    rbac.create_namespaced_role(name, {"metadata": {"name": "deployer"}, "rules": rules("get")})
    rbac.create_namespaced_role_binding(name, binding("deployer", "Role", name))
    core.create_namespaced_service_account(name, {"metadata": {"name": "worker"}})
    core.delete_namespace(name)
    assert not rbac.list_namespaced_role(name).items
    assert not rbac.list_namespaced_role_binding(name).items
    assert not core.list_namespaced_service_account(name).items


def test_cluster_roles_and_bindings_are_cluster_scoped_and_watched(rbac: client.RbacAuthorizationV1Api) -> None:
    name = f"deployer-{uuid.uuid4().hex[:6]}"
    start = rbac.list_cluster_role_binding().metadata.resource_version
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules("get", "list")})
    rbac.create_cluster_role_binding(binding(name, "ClusterRole", "deployflow-system"))
    rbac.patch_cluster_role_binding(name, {"metadata": {"labels": {"team": "platform"}}})
    rbac.delete_cluster_role_binding(name)
    try:
        assert rbac.read_cluster_role(name).metadata.namespace is None
        assert name in {r.metadata.name for r in rbac.list_cluster_role().items}
        events = []
        for event in watch.Watch().stream(rbac.list_cluster_role_binding, resource_version=start,
                                          timeout_seconds=1):
            obj = event["object"]
            events.append((event["type"], obj.metadata.name, (obj.metadata.labels or {}).get("team")))
            if event["type"] == "DELETED":
                break
        assert events == [("ADDED", name, None), ("MODIFIED", name, "platform"), ("DELETED", name, "platform")]
    finally:
        rbac.delete_cluster_role(name)
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(name)
    assert gone.value.status == 404
