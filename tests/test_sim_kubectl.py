"""The real kubectl (1.32) against the simulator: what works with kubectl is what we trust."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployflow.sim import resources as R
from deployflow.sim.server import Simulator

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.kubectl


class Kubectl:
    def __init__(self, kubeconfig: str, namespace: str, cache_dir: Path, workdir: Path) -> None:
        self.base = [KUBECTL or "kubectl", "--kubeconfig", kubeconfig, "--cache-dir", str(cache_dir),
                     "-n", namespace]
        self.workdir = workdir

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, input=stdin, timeout=120,
                              env={**os.environ, "KUBECTL_INTERACTIVE_DELETE": "false"})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, docs: list[dict[str, Any]], *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        path = self.workdir / "manifest.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return self.run("apply", "-f", str(path), *flags, check=check)


@pytest.fixture(scope="session")
def kubectl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubectl-cache")


@pytest.fixture
def kubectl(kubeconfig: str, namespace: str, kubectl_cache: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(kubeconfig, namespace, kubectl_cache, tmp_path)


def manifests(image: str = "web:1.0", replicas: int = 2, name: str = "web") -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}],
                                             "env": [{"name": "MODE", "value": "prod"}]}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]


def eventually(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Polls the simulator until `check()` is truthy: controllers converge asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def image_of(kubectl: Kubectl, name: str = "web") -> list[str]:
    dep = kubectl.json("get", "deploy", name)
    return [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]


def test_apply_client_side_then_server_side_twice(kubectl: Kubectl) -> None:
    out = kubectl.apply(manifests("web:1.0")).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    dep = kubectl.json("get", "deploy", "web")
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    assert kubectl.apply(manifests("web:1.1")).stdout.count("configured") == 1  # the Service is unchanged
    assert image_of(kubectl) == ["web:1.1"]

    assert "serverside-applied" in kubectl.apply(manifests("web:1.1"), "--server-side").stdout
    kubectl.apply(manifests("web:1.2"), "--server-side")
    dep = kubectl.json("get", "deploy", "web", "--show-managed-fields")
    generation = dep["metadata"]["generation"]
    assert image_of(kubectl) == ["web:1.2"]
    appliers = {(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in appliers
    kubectl.apply(manifests("web:1.2"), "--server-side")
    assert kubectl.json("get", "deploy", "web")["metadata"]["generation"] == generation


def test_server_side_apply_conflict_needs_force(kubectl: Kubectl) -> None:
    kubectl.apply(manifests("web:1.0"), "--server-side")
    kubectl.apply(manifests("web:2.0"), "--server-side", "--field-manager", "other-team", check=False)
    proc = kubectl.apply(manifests("web:2.0"), "--server-side", "--field-manager", "other-team", check=False)
    assert proc.returncode != 0 and "conflict" in proc.stderr.lower()
    assert image_of(kubectl) == ["web:1.0"]
    kubectl.apply(manifests("web:2.0"), "--server-side", "--field-manager", "other-team", "--force-conflicts")
    assert image_of(kubectl) == ["web:2.0"]


def test_apply_validates_against_the_openapi_schema(kubectl: Kubectl) -> None:
    docs = manifests()
    docs[0]["spec"]["replicaz"] = 3
    proc = kubectl.apply(docs, check=False)
    assert proc.returncode != 0 and 'unknown field "spec.replicaz"' in proc.stderr
    assert kubectl.run("get", "deploy", "web", check=False).returncode != 0  # nothing was created


def test_dry_run_server_creates_nothing(kubectl: Kubectl) -> None:
    assert "(server dry run)" in kubectl.apply(manifests(), "--dry-run=server").stdout
    assert kubectl.json("get", "deploy")["items"] == []


def test_get_wide_lists_what_the_controllers_made(kubectl: Kubectl, sim: Simulator, namespace: str) -> None:
    kubectl.apply(manifests())
    if sim.controllers is not None:
        eventually(lambda: len(sim.store.list(R.PODS, namespace)) == 2, "two pods")
    out = kubectl.run("get", "deploy,rs,pods,svc", "-o", "wide").stdout
    assert "CONTAINERS" in out and "IMAGES" in out and "SELECTOR" in out
    assert "deployment.apps/web" in out and "service/web" in out and "80/TCP" in out
    if sim.controllers is not None:
        assert "replicaset.apps/web-" in out and out.count("pod/web-") == 2
    plain = kubectl.run("get", "deploy", "web").stdout.splitlines()
    assert plain[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]


def test_set_image_and_scale(kubectl: Kubectl) -> None:
    kubectl.apply(manifests())
    kubectl.run("set", "image", "deploy/web", "app=web:9.9")
    assert image_of(kubectl) == ["web:9.9"]
    kubectl.run("scale", "deploy/web", "--replicas=5")
    assert kubectl.json("get", "deploy", "web")["spec"]["replicas"] == 5


def test_patch_types(kubectl: Kubectl) -> None:
    kubectl.apply(manifests())
    kubectl.run("patch", "deploy", "web", "--type", "merge", "-p", '{"metadata":{"labels":{"tier":"frontend"}}}')
    kubectl.run("patch", "deploy", "web", "--type", "json", "-p",
                '[{"op":"replace","path":"/spec/template/spec/containers/0/env/0/value","value":"canary"}]')
    kubectl.run("patch", "deploy", "web", "--type", "strategic", "-p",
                '{"spec":{"template":{"spec":{"containers":[{"name":"proxy","image":"envoy:1"},'
                '{"name":"app","env":[{"name":"EXTRA","value":"1"}]}]}}}}')
    dep = kubectl.json("get", "deploy", "web")
    assert dep["metadata"]["labels"] == {"app": "web", "tier": "frontend"}
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"app", "proxy"}
    assert containers["app"]["image"] == "web:1.0" and containers["app"]["ports"] == [
        {"containerPort": 8080, "protocol": "TCP"}]
    assert containers["app"]["env"] == [{"name": "MODE", "value": "canary"}, {"name": "EXTRA", "value": "1"}]
    proc = kubectl.run("patch", "deploy", "web", "--type", "json", "-p",
                       '[{"op":"test","path":"/spec/replicas","value":7}]', check=False)
    assert proc.returncode != 0


def test_delete_cascades(kubectl: Kubectl, sim: Simulator, namespace: str) -> None:
    kubectl.apply(manifests())
    eventually(lambda: len(sim.store.list(R.PODS, namespace)) == 2, "two pods")
    assert sim.store.list(R.REPLICASETS, namespace)
    kubectl.run("delete", "deploy", "web")
    assert sim.store.list(R.REPLICASETS, namespace) == []
    # Background propagation: the pods outlive their owners, terminating over their grace period.
    assert all(p["metadata"].get("deletionTimestamp") for p in sim.store.list(R.PODS, namespace))
    eventually(lambda: sim.store.list(R.PODS, namespace) == [], "the pods gone")
    assert "service/web" in kubectl.run("get", "svc", "-o", "name").stdout


def test_foreground_cascade_waits_for_the_pods(kubectl: Kubectl, sim: Simulator, namespace: str) -> None:
    kubectl.apply(manifests())
    eventually(lambda: len(sim.store.list(R.PODS, namespace)) == 2, "two pods")
    kubectl.run("delete", "deploy", "web", "--cascade=foreground")  # kubectl waits until the owner is gone
    assert sim.store.list(R.PODS, namespace) == [] and sim.store.list(R.DEPLOYMENTS, namespace) == []


def test_a_deleted_pod_shows_terminating_and_force_removes_it(kubectl: Kubectl, sim: Simulator,
                                                              namespace: str) -> None:
    kubectl.apply(manifests(replicas=1))
    kubectl.run("rollout", "status", "deploy/web", "--timeout=30s")  # a running pod: it has something to stop
    pod = sim.store.list(R.PODS, namespace)[0]["metadata"]["name"]
    kubectl.run("delete", "pod", pod, "--wait=false", "--grace-period=600")  # long enough to look at
    assert "Terminating" in kubectl.run("get", "pod", pod).stdout
    eventually(lambda: any(e["targetRef"]["name"] == pod and e["conditions"]["terminating"]
                           for s in kubectl.json("get", "endpointslices")["items"] for e in s.get("endpoints") or []),
               "the pod as a terminating endpoint of its Service's EndpointSlice")
    kubectl.run("delete", "pod", pod, "--grace-period=0", "--force")
    assert sim.store.get(R.PODS, namespace, pod) is None


def test_logs_of_a_pod(kubectl: Kubectl, sim: Simulator, namespace: str) -> None:
    kubectl.apply(manifests())
    pod = eventually(lambda: sim.store.list(R.PODS, namespace), "a pod")[0]["metadata"]["name"]
    assert kubectl.run("logs", pod).stdout.strip()


def test_rollout_status_undo_and_wait(kubectl: Kubectl) -> None:
    kubectl.apply(manifests("web:1.0"))
    kubectl.run("rollout", "status", "deploy/web", "--timeout=30s")
    kubectl.run("set", "image", "deploy/web", "app=web:2.0")
    assert "successfully rolled out" in kubectl.run("rollout", "status", "deploy/web", "--timeout=30s").stdout
    kubectl.run("rollout", "undo", "deploy/web")
    kubectl.run("rollout", "status", "deploy/web", "--timeout=30s")
    assert image_of(kubectl) == ["web:1.0"]
    kubectl.run("wait", "--for=condition=Available", "deploy/web", "--timeout=30s")


def test_create_generators_send_protobuf_and_work(kubectl: Kubectl, sim: Simulator, namespace: str) -> None:
    kubectl.run("create", "configmap", "settings", "--from-literal=mode=fast")
    kubectl.run("create", "secret", "generic", "token", "--from-literal=key=s3cret")
    kubectl.run("create", "deployment", "api", "--image=api:1", "--replicas=0", "--port=8080")
    kubectl.run("create", "service", "clusterip", "api", "--tcp=80:8080")
    assert kubectl.json("get", "cm", "settings")["data"] == {"mode": "fast"}
    secret = kubectl.json("get", "secret", "token")
    assert secret["data"] == {"key": "czNjcmV0"} and secret["type"] == "Opaque"
    dep = kubectl.json("get", "deploy", "api")
    assert dep["spec"]["replicas"] == 0 and dep["spec"]["selector"] == {"matchLabels": {"app": "api"}}
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    svc = kubectl.json("get", "svc", "api")["spec"]
    assert svc["ports"][0]["port"] == 80 and svc["ports"][0]["targetPort"] == 8080 and svc["clusterIP"]
    name = f"{namespace}-extra"
    kubectl.run("create", "namespace", name)
    assert sim.store.get(R.NAMESPACES, None, name) is not None
    kubectl.run("delete", "namespace", name)
    assert sim.store.get(R.NAMESPACES, None, name) is None


def test_default_namespace_cannot_be_deleted(kubectl: Kubectl) -> None:
    proc = kubectl.run("delete", "namespace", "default", check=False)
    assert proc.returncode != 0 and "may not be deleted" in proc.stderr


def test_rollout_status_fails_on_a_bad_version_after_its_progress_deadline(kubectl: Kubectl, sim: Simulator,
                                                                            namespace: str) -> None:
    docs = manifests("web:1.0")
    docs[0]["spec"]["progressDeadlineSeconds"] = 20  # simulated seconds: one real second at the fixture's speed
    kubectl.apply(docs)
    kubectl.run("rollout", "status", "deploy/web", "--timeout=30s")
    kubectl.run("patch", "deploy/web", "--type", "merge", "-p", json.dumps({"spec": {"template": {
        "metadata": {"annotations": {"sim.deployflow.io/crash-loop": "true"}},
        "spec": {"containers": [{"name": "app", "image": "web:2.0"}]}}}}))
    proc = kubectl.run("rollout", "status", "deploy/web", "--timeout=60s", check=False)
    assert proc.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in proc.stderr
    progressing = {c["type"]: c for c in kubectl.json("get", "deploy", "web")["status"]["conditions"]}["Progressing"]
    assert progressing["status"] == "False" and progressing["reason"] == "ProgressDeadlineExceeded"
    # The bad version never took over: the old pods still serve.
    old = [rs for rs in kubectl.json("get", "rs", "-l", "app=web")["items"]
           if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1.0"]
    assert len(old) == 1 and old[0]["status"].get("readyReplicas") == 2
    served = sim.send_requests(namespace, "web", 200)
    assert served == {old[0]["metadata"]["labels"]["pod-template-hash"]: 200}
