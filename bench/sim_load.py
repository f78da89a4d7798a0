"""Loads the simulator with 200 Deployments (2,000 pods) through the real `kubernetes` client and prints figures.

Figures: API call latency percentiles (create, list, get, patch) and the CPU the controllers and the traffic
stream spend per simulated second, while idle-but-serving and while 20 Deployments roll out at once.
Prints only; speed is never asserted.

    .venv/bin/python bench/sim_load.py [--deployments 200] [--replicas 10] [--time-factor 10]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes import config as kube_config

from deployflow.sim.config import SimConfig
from deployflow.sim.server import Simulator

T = TypeVar("T")
NS = "bench"


class CpuMeter:
    """CPU seconds spent inside wrapped calls, measured on the thread that makes them."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> T:
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds += time.thread_time() - start
                    self.calls += 1

        return timed


class Latencies:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def call(self, kind: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.samples.setdefault(kind, []).append(time.perf_counter() - start)

    def report(self) -> None:
        print(f"{'API call':<28}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for kind, values in self.samples.items():
            v = sorted(values)

            def pct(p: float, v: list[float] = v) -> float:
                return 1000 * v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

            print(f"{kind:<28}{len(v):>6}{pct(50):>10.1f}{pct(95):>10.1f}{pct(99):>10.1f}{1000 * v[-1]:>10.1f}")


def deployment(name: str, replicas: int, version: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name, "app.kubernetes.io/version": version}},
                "spec": {"containers": [{"name": "app", "image": f"registry.local/{name}:{version}"}]},
            },
        },
    }


def wait(what: str, done: Callable[[], bool], timeout: float = 600) -> float:
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.25)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--time-factor", type=float, default=10.0)
    parser.add_argument("--steady-seconds", type=float, default=10.0, help="real seconds of the idle phase")
    parser.add_argument("--rollouts", type=int, default=20)
    args = parser.parse_args()

    sim = Simulator(SimConfig(time_factor=args.time_factor, ready_delay_seconds=2.0, traffic_rps=20.0))
    controllers, traffic = CpuMeter(), CpuMeter()
    sim.controllers.reconcile_due = controllers.wrap(sim.controllers.reconcile_due)
    sim.traffic.tick = traffic.wrap(sim.traffic.tick)
    sim.start_in_thread()
    path = os.path.join(tempfile.mkdtemp(), "kubeconfig")
    sim.write_kubeconfig(path)
    api = kube_config.new_client_from_config(path, context="sim")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    lat = Latencies()
    n, replicas = args.deployments, args.replicas
    names = [f"app-{i:03d}" for i in range(n)]
    print(f"simulator at {sim.url}, time factor {args.time_factor}, {n} Deployments x {replicas} replicas, "
          f"{sim.config.traffic_rps:g} rps per entry point")

    core.create_namespace({"metadata": {"name": NS}})
    t0 = time.monotonic()
    for name in names:
        lat.call("create deployment", apps.create_namespaced_deployment, NS, deployment(name, replicas, "v1"))
        lat.call("create service", core.create_namespaced_service, NS,
                 {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
    created = time.monotonic() - t0

    def all_available() -> bool:
        items = lat.call("list deployments", apps.list_namespaced_deployment, NS).items
        return sum(1 for d in items if d.status and (d.status.available_replicas or 0) == replicas) == n

    ready = wait("all Deployments available", all_available)
    pods = len(core.list_namespaced_pod(NS).items)
    print(f"created {n} Deployments + Services in {created:.1f}s; all {pods} pods ready {ready:.1f}s later")

    # Idle: no API calls, only the traffic stream through every Service.
    cpu0, tr0, sim0 = controllers.seconds, traffic.seconds, sim.clock.now()
    passes0, req0 = sim.controllers.passes, sim.traffic.requests_generated
    time.sleep(args.steady_seconds / 2)
    sim_s = sim.clock.now() - sim0
    print(f"\nidle phase: {sim_s:.0f} simulated s, {sim.controllers.passes - passes0} controller passes, "
          f"{sim.traffic.requests_generated - req0} synthetic requests")
    print(f"  controllers CPU per simulated second: {(controllers.seconds - cpu0) / sim_s:.4f} s; traffic: "
          f"{(traffic.seconds - tr0) / sim_s:.4f} s = {(traffic.seconds - tr0) / (sim_s / args.time_factor):.1%} "
          "of one core in real time")

    # Busy API, no rollouts: reads and annotation patches (each patch wakes the controllers).
    cpu0, tr0, sim0, proc0 = controllers.seconds, traffic.seconds, sim.clock.now(), time.process_time()
    passes0, req0 = sim.controllers.passes, sim.traffic.requests_generated
    end = time.monotonic() + args.steady_seconds
    i = 0
    while time.monotonic() < end:
        name = names[i % n]
        lat.call("get deployment", apps.read_namespaced_deployment, name, NS)
        lat.call("patch deployment (annotation)", apps.patch_namespaced_deployment, name, NS,
                 {"metadata": {"annotations": {"bench/touch": str(i)}}})
        if i % 20 == 0:
            lat.call(f"list pods ({pods})", core.list_namespaced_pod, NS)
            # The same list as bytes: the simulator's share, without the client building 2,000 V1Pod models.
            lat.call(f"list pods ({pods}, raw JSON)", lambda: core.list_namespaced_pod(NS, _preload_content=False).data)
            lat.call("list services", core.list_namespaced_service, NS)
        i += 1
    sim_s = sim.clock.now() - sim0
    ctl_cpu, tr_cpu = controllers.seconds - cpu0, traffic.seconds - tr0
    print(f"\nAPI-busy phase: {sim_s:.0f} simulated s, {sim.controllers.passes - passes0} controller passes, "
          f"{sim.traffic.requests_generated - req0} synthetic requests, {len(sim.traffic.entry_points())} "
          "entry points")
    print(f"  controllers CPU per simulated second: {ctl_cpu / sim_s:.4f} s")
    print(f"  traffic     CPU per simulated second: {tr_cpu / sim_s:.4f} s")
    print(f"  controllers+traffic: {(ctl_cpu + tr_cpu) / sim_s:.4f} CPU s per simulated s "
          f"= {(ctl_cpu + tr_cpu) / (sim_s / args.time_factor):.1%} of one core in real time")
    print(f"  whole process (API server + client + all): {(time.process_time() - proc0) / sim_s:.4f} CPU s "
          "per simulated s")

    # Rollouts: a tenth of the Deployments change version at once.
    cpu0, tr0, sim0 = controllers.seconds, traffic.seconds, sim.clock.now()
    passes0, no_backend0 = sim.controllers.passes, sim.no_backend_requests(NS)
    rolled = names[: args.rollouts]
    for name in rolled:
        lat.call("patch deployment (image)", apps.patch_namespaced_deployment, name, NS,
                 {"spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/version": "v2"}},
                                        "spec": {"containers": [{"name": "app",
                                                                 "image": f"registry.local/{name}:v2"}]}}}})

    def rolled_out() -> bool:
        done = 0
        for name in rolled:
            d = lat.call("get deployment", apps.read_namespaced_deployment_status, name, NS)
            st = d.status
            # A status written before the controller saw the new template still reads "all updated": the rollout
            # is done only once the status describes this generation.
            if st and (st.observed_generation or 0) >= (d.metadata.generation or 0) \
                    and st.updated_replicas == replicas == st.available_replicas == st.replicas:
                done += 1
        return done == len(rolled)

    took = wait("rollouts", rolled_out)
    sim_s = sim.clock.now() - sim0
    ctl_cpu, tr_cpu = controllers.seconds - cpu0, traffic.seconds - tr0
    print(f"\nrollout phase: {len(rolled)} Deployments rolled out in {took:.1f}s real ({sim_s:.0f} simulated s)")
    print(f"  controllers+traffic: {(ctl_cpu + tr_cpu) / sim_s:.4f} CPU s per simulated s "
          f"(controllers {ctl_cpu / sim_s:.4f}, traffic {tr_cpu / sim_s:.4f})")
    print(f"  requests with no ready backend: {sim.no_backend_requests(NS) - no_backend0} during the rollouts "
          f"({no_backend0} before, while the first pods were starting behind their new Services)")
    passes = sim.controllers.passes - passes0
    print(f"  controller passes: {passes}, {1000 * ctl_cpu / max(passes, 1):.1f} ms CPU each on average; "
          f"traffic tick {1000 * traffic.seconds / max(traffic.calls, 1):.2f} ms CPU on average")
    print()
    lat.report()
    sim.stop()


if __name__ == "__main__":
    main()
