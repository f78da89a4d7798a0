"""deploy/kubernetes/ as an operator uses it: every kustomization renders with `kubectl kustomize`, the many-namespaces
overlay binds the worker once per namespace, and the whole rendered output of each goes to the simulator with
server-side apply (ServiceAccount and RBAC kinds included: the simulator stores them like an apiserver, without
enforcing them).
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

from deployflow.sim.server import Simulator

KUBERNETES = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
MANY = KUBERNETES / "overlays" / "many-namespaces"
CREDENTIALS = KUBERNETES / "overlays" / "credentials"
KUSTOMIZATIONS = [KUBERNETES, KUBERNETES / "base", CREDENTIALS, MANY]
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


def live(kind: str, name: str, namespace: str | None, kubeconfig: str) -> Doc:
    scope = ["-n", namespace] if namespace else []
    return json.loads(kubectl(*scope, "get", kind, name, "-o", "json", kubeconfig=kubeconfig).stdout)


def resource_of(doc: Doc) -> str:
    """`kind.group` as kubectl names a resource, so a kind that exists in two groups is never ambiguous."""
    return f"{doc['kind'].lower()}.{group(doc)}" if group(doc) else doc["kind"].lower()


@pytest.mark.parametrize("path", [KUBERNETES, CREDENTIALS, MANY], ids=["kubernetes", "credentials", "many-namespaces"])
def test_the_whole_rendered_output_applies_server_side_to_the_simulator(path: Path, sim: Simulator, kubeconfig: str,
                                                                        tmp_path: Path) -> None:
    docs = render(path)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    # The RoleBindings' namespaces belong to the apps, not to these manifests: they exist before the worker is bound.
    existing = set(kubectl("get", "namespaces", "-o", "name", kubeconfig=kubeconfig).stdout.split())
    app_namespaces = sorted({d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding"}
                            - {n.removeprefix("namespace/") for n in existing})
    for name in app_namespaces:
        kubectl("create", "namespace", name, kubeconfig=kubeconfig)
    try:
        out = kubectl("apply", "--server-side", "--field-manager", "deployflow-deploy", "-f", str(manifest),
                      kubeconfig=kubeconfig).stdout
        assert out.count("serverside-applied") == len(docs), out
        # Applying the same manifests again changes nothing and conflicts with nothing.
        again = kubectl("apply", "--server-side", "--field-manager", "deployflow-deploy", "-f", str(manifest),
                        kubeconfig=kubeconfig)
        assert again.returncode == 0

        for doc in docs:  # every object is stored as rendered
            meta = doc["metadata"]
            got = live(resource_of(doc), meta["name"], meta.get("namespace"), kubeconfig)
            for field in ("rules", "roleRef", "subjects", "data"):
                assert got.get(field) == doc.get(field), (key(doc), field)
            assert got["metadata"].get("labels") == meta.get("labels"), key(doc)

        worker = live("deployment", WORKER, SYSTEM, kubeconfig)
        assert worker["spec"]["replicas"] == 2
        assert worker["spec"]["template"]["spec"]["serviceAccountName"] == WORKER
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
        assert live("serviceaccount", WORKER, SYSTEM, kubeconfig)["metadata"]["name"] == WORKER
        config = live("configmap", "deployflow-temporal", SYSTEM, kubeconfig)
        assert config["data"]["DEPLOYFLOW_TASK_QUEUE"] == "deployments"
        bound = json.loads(kubectl("get", "rolebindings.rbac.authorization.k8s.io", "-A", "-o", "json",
                                   kubeconfig=kubeconfig).stdout)["items"]
        assert sorted(b["metadata"]["namespace"] for b in bound if b["metadata"]["name"] == "deployflow-deployer") \
            == sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding")
        kubectl("-n", SYSTEM, "rollout", "status", f"deployment/{WORKER}", "--timeout=90s", kubeconfig=kubeconfig)
    finally:
        for doc in docs:
            if "namespace" not in doc["metadata"] and doc["kind"] != "Namespace":  # cluster-scoped: no namespace
                kubectl("delete", resource_of(doc), doc["metadata"]["name"], "--ignore-not-found",
                        kubeconfig=kubeconfig, check=False)
        for name in [SYSTEM, *app_namespaces]:
            kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false", kubeconfig=kubeconfig,
                    check=False)
