"""deploy/kubernetes/ as an operator uses it: every kustomization renders with `kubectl kustomize`, the many-namespaces
overlay binds the worker once per namespace, and the rendered manifests go to the simulator with server-side apply.

The simulator serves Namespaces, ConfigMaps and Deployments but no ServiceAccounts or RBAC kinds, so those are
checked against the official client's typed models (required fields, types) instead of applied; the split follows
what the simulator serves, so a kind it learns is applied from then on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from deployflow.sim.resources import ALL
from deployflow.sim.server import Simulator

KUBERNETES = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
MANY = KUBERNETES / "overlays" / "many-namespaces"
KUSTOMIZATIONS = [KUBERNETES, KUBERNETES / "base", KUBERNETES / "overlays" / "credentials", MANY]
SERVED = {(r.group, r.kind) for r in ALL}
SYSTEM = "deployflow-system"
WORKER = "deployflow-worker"

pytestmark = pytest.mark.kubectl

Doc = dict[str, Any]


def kubectl(*args: str, kubeconfig: str | None = None, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [shutil.which("kubectl") or "kubectl", *(["--kubeconfig", kubeconfig] if kubeconfig else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, input=stdin, timeout=120,
                          env={**os.environ, "KUBECTL_INTERACTIVE_DELETE": "false"})
    if check:
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
    return proc


def render(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(kubectl("kustomize", str(path)).stdout) if d]


def group(doc: Doc) -> str:
    api_version = str(doc["apiVersion"])
    return api_version.split("/")[0] if "/" in api_version else ""


def key(doc: Doc) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def typed(doc: Doc) -> Any:
    """The document as the official client's model (V1RoleBinding, ...), which refuses missing required fields."""
    model = f"V1{doc['kind']}"
    assert hasattr(client, model), f"the client has no model {model} for {key(doc)}"
    return client.ApiClient().deserialize(json.dumps(doc), model, "application/json")


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(KUBERNETES.parent)))
def test_every_kustomization_renders_into_valid_objects(path: Path) -> None:
    docs = render(path)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "RoleBinding", "ConfigMap", "Deployment"} <= kinds, kinds
    assert len({key(d) for d in docs}) == len(docs), "an object is rendered twice"
    for doc in docs:
        obj = typed(doc)
        assert obj.metadata.name == doc["metadata"]["name"]
    worker = typed(next(d for d in docs if d["kind"] == "Deployment"))
    assert worker.spec.template.spec.service_account_name == WORKER


def test_many_namespaces_binds_the_worker_once_in_each_namespace() -> None:
    base = render(KUBERNETES / "base")
    many = render(MANY)
    listed = [d["metadata"]["namespace"] for d in yaml.safe_load_all((MANY / "rolebindings.yaml").read_text()) if d]
    base_bindings = [d["metadata"]["namespace"] for d in base if d["kind"] == "RoleBinding"]
    bindings = [typed(d) for d in many if d["kind"] == "RoleBinding"]

    namespaces = [b.metadata.namespace for b in bindings]
    assert sorted(namespaces) == sorted({*base_bindings, *listed}), "one RoleBinding per namespace, no repeats"
    assert len(namespaces) > len(base_bindings)
    for binding in bindings:
        assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", "deployflow-deployer")
        assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", WORKER, SYSTEM)]
    # Nothing else changes: the overlay only adds bindings, never a cluster-wide one.
    assert [d for d in many if d["kind"] != "RoleBinding"] == [d for d in base if d["kind"] != "RoleBinding"]
    assert not [d for d in many if d["kind"] == "ClusterRoleBinding"]


@pytest.mark.parametrize("path", [KUBERNETES, MANY], ids=["kubernetes", "many-namespaces"])
def test_the_rendered_worker_applies_server_side_to_the_simulator(path: Path, sim: Simulator, kubeconfig: str,
                                                                   tmp_path: Path) -> None:
    docs = render(path)
    served = [d for d in docs if (group(d), d["kind"]) in SERVED]
    assert {d["kind"] for d in served} >= {"Namespace", "ConfigMap", "Deployment"}
    manifest = tmp_path / "served.yaml"
    manifest.write_text(yaml.safe_dump_all(served))
    try:
        out = kubectl("apply", "--server-side", "--field-manager", "deployflow-deploy", "-f", str(manifest),
                      kubeconfig=kubeconfig).stdout
        for doc in served:
            assert f"{doc['metadata']['name']} serverside-applied" in out, out
        # Applying the same manifests again changes nothing and conflicts with nothing.
        again = kubectl("apply", "--server-side", "--field-manager", "deployflow-deploy", "-f", str(manifest),
                        kubeconfig=kubeconfig)
        assert again.returncode == 0

        live = json.loads(kubectl("-n", SYSTEM, "get", "deployment", WORKER, "-o", "json",
                                  kubeconfig=kubeconfig).stdout)
        assert live["spec"]["replicas"] == 2
        assert live["spec"]["template"]["spec"]["serviceAccountName"] == WORKER
        assert live["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
        config = json.loads(kubectl("-n", SYSTEM, "get", "configmap", "deployflow-temporal", "-o", "json",
                                    kubeconfig=kubeconfig).stdout)
        assert config["data"]["DEPLOYFLOW_TASK_QUEUE"] == "deployments"
        kubectl("-n", SYSTEM, "rollout", "status", f"deployment/{WORKER}", "--timeout=90s", kubeconfig=kubeconfig)
    finally:
        kubectl("delete", "namespace", SYSTEM, "--ignore-not-found", "--wait=false", kubeconfig=kubeconfig,
                check=False)
