"""A release by the plain kubectl procedure against the same release as a workflow, on the same simulated cluster.

Blue-green, by hand: apply the idle colour's Deployment, `kubectl rollout status`, point the preview Service at it,
smoke-test through the preview Service (`kubectl get --raw` on the service proxy), patch the active Service's
selector, scale the old colour down; against `BlueGreenDeployment` (standby 0s, promotion auto, one smoke test).
Rolling, by hand: `kubectl set image` + `kubectl rollout status`; against `RollingDeployment` in `native` mode and
in batches of one pod. The simulator (its own process, every pod Ready `--pod-start` real seconds after creation),
the worker (its own process, the project's worker.build_worker) and kubectl all run on loopback; the same app, the
same replicas, each procedure in a namespace of its own, the runs interleaved so load changes hit both alike.

Each procedure's wall time beyond the pods' own start time is what the tooling adds: the physical limit is one pod
start for blue-green (every new pod starts at once) and replicas / maxSurge pod starts for a rolling update (one
surge pod at a time).

    .venv/bin/python bench/kubectl_vs_workflow.py [--runs 3] [--replicas 3] [--pod-start 1.0] [--seed 0]

Prints one JSON object and one line for the README's *Measured* table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    SimProcess,
    emit,
    log,
    machine,
    run_main,
    scratch_dir,
    sim_process,
    spread,
    temporal_dev_server,
    workers,
)
from temporalio.client import Client  # noqa: E402

from deployflow.demo import deep_merge  # noqa: E402
from deployflow.spec import BlueGreenRequest, RollingRequest  # noqa: E402
from deployflow.workloads import COLOR_LABEL, VERSION_LABEL  # noqa: E402

QUEUE = "bench-kubectl"
APP = "shop"
ROLLING_APP = "catalog"
SURGE = 1


class Kubectl:
    """kubectl against the simulator, with a discovery cache of its own, warmed once (as on an operator's laptop)."""

    def __init__(self, sim: SimProcess, cache: Path) -> None:
        self.kubeconfig, self.cache = sim.kubeconfig, str(cache)

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        return kubectl(self.kubeconfig, "--cache-dir", self.cache, *args, stdin=stdin)


def catalog_manifests(namespace: str, replicas: int, surge: int = 1) -> str:
    """examples/manifests/catalog.yaml (the app the rolling examples roll) in `namespace`, with a RollingUpdate
    strategy of `surge` extra pods and none unavailable."""
    docs = list(yaml.safe_load_all((ROOT / "examples" / "manifests" / "catalog.yaml").read_text()))
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "Deployment":
            doc["spec"]["replicas"] = replicas
            doc["spec"]["strategy"] = {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": surge, "maxUnavailable": 0}}
    return yaml.safe_dump_all(docs)


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    """kubectl against the simulator (context `sim`); raises with kubectl's message when it fails."""
    done = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "--context", "sim", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


# --- blue-green ---------------------------------------------------------------------------------------------------


def bluegreen_spec(namespace: str, version: str, replicas: int) -> BlueGreenRequest:
    base = yaml.safe_load((ROOT / "examples" / "bluegreen.yaml").read_text())
    return BlueGreenRequest.model_validate(deep_merge(base, {
        "target": {"namespace": namespace, "app": APP},
        "workload": {"image": f"registry.example.com/shop/web:{version}", "replicas": replicas},
        "smoke_tests": [{"name": "home page answers", "path": "/", "expected_status": 200}],
        "promotion": {"mode": "auto"},
        "standby": "0s",
    }))


def idle_colour_manifest(kubectl: Kubectl, namespace: str, version: str) -> tuple[str, str, str]:
    """The operator's manifest for the idle colour: the live colour's Deployment with the new colour, version and
    image; and the two colours. Prepared before the clock starts, as a file in a repository would be."""
    service = json.loads(kubectl("-n", namespace, "get", "service", APP, "-o", "json"))
    old = service["spec"]["selector"][COLOR_LABEL]
    new = "green" if old == "blue" else "blue"
    live = json.loads(kubectl("-n", namespace, "get", "deployment", f"{APP}-{old}", "-o", "json"))
    spec = copy.deepcopy(live["spec"])
    spec["selector"]["matchLabels"][COLOR_LABEL] = new
    labels = spec["template"]["metadata"]["labels"]
    labels.update({COLOR_LABEL: new, VERSION_LABEL: version})
    for container in spec["template"]["spec"]["containers"]:
        container["image"] = f"registry.example.com/shop/web:{version}"
    meta_labels = {**live["metadata"].get("labels", {}), COLOR_LABEL: new}
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": spec,
                "metadata": {"name": f"{APP}-{new}", "namespace": namespace, "labels": meta_labels}}
    return json.dumps(manifest), old, new


def kubectl_bluegreen(kubectl: Kubectl, namespace: str, version: str) -> float:
    manifest, old, new = idle_colour_manifest(kubectl, namespace, version)
    selector = json.dumps({"spec": {"selector": {"app": APP, COLOR_LABEL: new}}})
    began = time.monotonic()
    kubectl("-n", namespace, "apply", "-f", "-", stdin=manifest)
    kubectl("-n", namespace, "rollout", "status", f"deployment/{APP}-{new}", "--timeout=300s")
    kubectl("-n", namespace, "patch", "service", f"{APP}-preview", "-p", selector)
    kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/services/{APP}-preview:80/proxy/")
    kubectl("-n", namespace, "patch", "service", APP, "-p", selector)
    kubectl("-n", namespace, "scale", f"deployment/{APP}-{old}", "--replicas=0")
    return time.monotonic() - began


# --- rolling ------------------------------------------------------------------------------------------------------


def rolling_spec(namespace: str, version: str, mode: str) -> RollingRequest:
    return RollingRequest.model_validate({
        "target": {"cluster": "sim", "namespace": namespace, "app": ROLLING_APP},
        "image": f"registry.example.com/shop/catalog:{version}",
        "mode": mode, "batch_size": 1, "max_surge": SURGE, "max_unavailable": 0, "bake": "0s",
    })


def kubectl_rolling(kubectl: Kubectl, namespace: str, version: str) -> float:
    began = time.monotonic()
    kubectl("-n", namespace, "set", "image", f"deployment/{ROLLING_APP}",
            f"{ROLLING_APP}=registry.example.com/shop/catalog:{version}")
    kubectl("-n", namespace, "rollout", "status", f"deployment/{ROLLING_APP}", "--timeout=300s")
    return time.monotonic() - began


# --- the comparison -----------------------------------------------------------------------------------------------


async def workflow_release(client: Client, workflow_type: str, request: Any) -> float:
    began = time.monotonic()
    await client.execute_workflow(workflow_type, request, id=request.target.workflow_id(), task_queue=QUEUE)
    return time.monotonic() - began


def summary(walls: list[float], limit: float, requests: list[int]) -> dict[str, Any]:
    return {"wall_s": spread(walls), "beyond_pod_start_s": spread([w - limit for w in walls]),
            "api_requests": spread([float(r) for r in requests], digits=0)}


async def compare(sim: SimProcess, client: Client, kubectl: Kubectl, args: argparse.Namespace) -> dict[str, Any]:
    for namespace in ("bg-kubectl", "bg-workflow", "roll-kubectl", "roll-native", "roll-batches"):
        kubectl("create", "namespace", namespace)
    log("setting up: v1 of the blue-green app (by the workflow, in both namespaces) and of the rolling app")
    for namespace in ("bg-kubectl", "bg-workflow"):
        await workflow_release(client, "BlueGreenDeployment", bluegreen_spec(namespace, "v1", args.replicas))
    for namespace in ("roll-kubectl", "roll-native", "roll-batches"):
        kubectl("apply", "-f", "-", stdin=catalog_manifests(namespace, args.replicas, SURGE))
        kubectl("-n", namespace, "rollout", "status", f"deployment/{ROLLING_APP}", "--timeout=300s")

    procedures = {
        "bluegreen_kubectl": lambda v: asyncio.to_thread(kubectl_bluegreen, kubectl, "bg-kubectl", v),
        "bluegreen_workflow": lambda v: workflow_release(client, "BlueGreenDeployment",
                                                         bluegreen_spec("bg-workflow", v, args.replicas)),
        "rolling_kubectl": lambda v: asyncio.to_thread(kubectl_rolling, kubectl, "roll-kubectl", v),
        "rolling_workflow_native": lambda v: workflow_release(client, "RollingDeployment",
                                                              rolling_spec("roll-native", v, "native")),
        "rolling_workflow_batches": lambda v: workflow_release(client, "RollingDeployment",
                                                               rolling_spec("roll-batches", v, "batches")),
    }
    walls: dict[str, list[float]] = {name: [] for name in procedures}
    requests: dict[str, list[int]] = {name: [] for name in procedures}
    rng = random.Random(args.seed)
    for run in range(args.runs):
        order = list(procedures)
        rng.shuffle(order)
        for name in order:
            sim.requests(reset=True)
            walls[name].append(await procedures[name](f"v{run + 2}"))
            requests[name].append(int(sim.requests()["total"]))
        log(f"run {run + 1}/{args.runs}: " + ", ".join(f"{n} {walls[n][-1]:.2f}s" for n in procedures))

    waves = -(-args.replicas // SURGE)
    limits = {"bluegreen": args.pod_start, "rolling": waves * args.pod_start}
    result: dict[str, Any] = {
        "bench": "kubectl_vs_workflow", "runs": args.runs, "replicas": args.replicas, "seed": args.seed,
        "pod_start_s": args.pod_start, "physical_limit_s": limits, "machine": machine(),
        "procedures": {name: summary(walls[name], limits[name.split("_")[0]], requests[name]) for name in procedures},
    }
    ratios = {}
    for name in procedures:
        if "workflow" in name:
            base = name.split("_")[0] + "_kubectl"
            ratios[name] = round(statistics.median(walls[name]) / statistics.median(walls[base]), 3)
    result["ratio_workflow_to_kubectl"] = ratios
    result["target_ratio"] = 1.05
    return result


def table_line(result: dict[str, Any]) -> tuple[str, str]:
    p, r = result["procedures"], result["ratio_workflow_to_kubectl"]

    def fig(name: str) -> str:
        w, b = p[name]["wall_s"], p[name]["beyond_pod_start_s"]
        return f"{w['median']:.2f} s ({w['min']:.2f}–{w['max']:.2f}), +{b['median']:.2f} s"

    what = (f"kubectl vs workflow (`bench/kubectl_vs_workflow.py`: {result['replicas']} replicas, pods Ready "
            f"{result['pod_start_s']:g} s after creation, {result['runs']} runs, median (min–max), + beyond the "
            "pods' own start time)")
    figure = (f"blue-green: kubectl {fig('bluegreen_kubectl')}; workflow {fig('bluegreen_workflow')}; ratio "
              f"{r['bluegreen_workflow']:.2f}. Rolling: kubectl {fig('rolling_kubectl')}; native "
              f"{fig('rolling_workflow_native')} (ratio {r['rolling_workflow_native']:.2f}); batches of 1 "
              f"{fig('rolling_workflow_batches')} (ratio {r['rolling_workflow_batches']:.2f}); target ≤ 1.05")
    return what, figure


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--pod-start", type=float, default=1.0, help="real seconds from pod creation to Ready")
    parser.add_argument("--seed", type=int, default=0, help="seeds the simulator and the order of the runs")
    args = parser.parse_args()

    workdir = scratch_dir()
    env = await temporal_dev_server()
    try:
        with sim_process(workdir, args.pod_start, seed=args.seed) as sim:
            kubectl = Kubectl(sim, workdir / "kube-cache")
            kubectl("get", "namespaces")
            async with workers(env.client, workdir, 1, QUEUE, sim.kubeconfig):
                result = await compare(sim, env.client, kubectl, args)
    finally:
        await env.shutdown()
    emit(result, *table_line(result))


if __name__ == "__main__":
    run_main(main())
