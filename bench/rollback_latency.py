"""Rollback latency: time from the first failing analysis measurement to 0% canary traffic.

Runs CanaryDeployment on the Temporal dev server (SQLite, as in production) with the project's worker
(worker.build_worker) in this process and the simulator in a thread. Each run deploys v1, then starts a canary of v2
whose error rate (served by a local endpoint the `web` provider reads) fails the first measurement of an analysis
step at 25%. A poller sends a few requests through the app's entry point every few milliseconds and notes when v2
stops answering.

The analysis interval is excluded by construction: the failing measurement is the step's first.

    .venv/bin/python bench/rollback_latency.py [--runs 5] [--routers replicas,gateway-api,istio,nginx]

Prints one JSON object and one line for the README's *Measured* table; asserts nothing. The in-process stack, the
poller and the metrics endpoint here are shared with bench/abort_latency.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    HOST,
    WORKER_ENV,
    emit,
    log,
    machine,
    ms,
    run_main,
    scratch_dir,
    spread,
    temporal_dev_server,
)
from temporalio.client import Client, WorkflowFailureError  # noqa: E402

from deployflow.spec.canary import CanaryRequest  # noqa: E402
from deployflow.status import DeploymentStatus  # noqa: E402

ENTRY = {"replicas": "service/web", "gateway-api": "httproute/web", "istio": "virtualservice/web",
         "nginx": "ingress/web"}
ROUTERS = ",".join(ENTRY)


# --- shared with abort_latency.py ---------------------------------------------------------------------------------


def rate_server() -> tuple[ThreadingHTTPServer, str]:
    """An HTTP JSON metrics endpoint for the `web` provider: `<url>/<version>` answers {"error_rate": ...}, 0.001 for
    v1 and 0.3 (failing any sane threshold) for every other version."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            version = self.path.rstrip("/").rsplit("/", 1)[-1]
            body = json.dumps({"error_rate": 0.001 if version == "v1" else 0.3}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{HOST}:{server.server_address[1]}"


class VersionPoller(threading.Thread):
    """Sends a few requests through an entry point every few milliseconds and notes, in wall-clock time, when each
    version first and last answered."""

    def __init__(self, sim: Any, namespace: str, entry: str) -> None:
        super().__init__(daemon=True)
        self.sim, self.namespace, self.entry = sim, namespace, entry
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                served = self.sim.send_requests(self.namespace, self.entry, 20)
            except KeyError:  # the entry point does not exist yet
                served = {}
            now = time.time()
            for version, count in served.items():
                if count:
                    self.first.setdefault(version, now)
                    self.last[version] = now
            time.sleep(0.002)

    def finish(self, linger: float = 0.2) -> None:
        time.sleep(linger)  # one last look after the change being measured
        self.stopped.set()
        self.join()


@dataclass
class Lab:
    """The in-process stack: Temporal dev server, simulator thread, metrics endpoint, the project's worker."""

    client: Client
    sim: Any
    metrics_url: str
    kubeconfig: str
    queue: str = "bench-latency"
    handles: list[Any] = field(default_factory=list)

    def namespace(self, kind: str) -> str:
        name = f"{kind}-{uuid.uuid4().hex[:6]}"
        self.sim.create_namespace(name)
        return name

    async def start(self, workflow_type: str, request: Any) -> Any:
        return await self.client.start_workflow(workflow_type, request, id=request.target.workflow_id(),
                                                task_queue=self.queue)

    async def execute(self, workflow_type: str, request: Any) -> None:
        await (await self.start(workflow_type, request)).result()

    def metric(self) -> dict[str, Any]:
        """The `web` provider reading the metrics endpoint for the version under test."""
        return {"kind": "web", "url": f"{self.metrics_url}/{{{{ args.version }}}}", "json_path": "$.error_rate"}


@contextlib.asynccontextmanager
async def lab(pod_start: float, time_factor: float = 20.0) -> AsyncIterator[Lab]:
    """`pod_start`: real seconds from pod creation to Ready (the simulator runs `time_factor` times faster)."""
    from deployflow import kube
    from deployflow.sim.config import SimConfig
    from deployflow.sim.server import Simulator
    from worker import build_worker

    sim = Simulator(SimConfig(time_factor=time_factor, ready_delay_seconds=pod_start * time_factor))
    sim.start_in_thread()
    kubeconfig = str(scratch_dir() / "kubeconfig")
    sim.write_kubeconfig(kubeconfig, context="sim")
    os.environ.update({**WORKER_ENV, "KUBECONFIG": kubeconfig})
    kube.reset_clients()
    server, metrics_url = rate_server()
    env = await temporal_dev_server()
    executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="activity")
    try:
        the_lab = Lab(env.client, sim, metrics_url, kubeconfig)
        async with build_worker(env.client, the_lab.queue, executor=executor, shutdown_timeout=timedelta(seconds=5)):
            yield the_lab
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        await env.shutdown()
        server.shutdown()
        sim.stop()


async def closed(handle: Any) -> bool:
    """Waits for the run to end; whether it failed (a rollback fails the run)."""
    try:
        await handle.result()
    except WorkflowFailureError:
        return True
    return False


# --- first failing measurement -> 0% canary traffic ---------------------------------------------------------------


def canary(namespace: str, version: str, router: str, steps: list[dict[str, Any]], **fields: Any) -> CanaryRequest:
    return CanaryRequest.model_validate({
        "target": {"cluster": "sim", "namespace": namespace, "app": "web"},
        "workload": {"image": f"web:{version}", "replicas": 4},
        "traffic": {"router": router},
        "steps": steps,
        **fields,
    })


async def one_run(the_lab: Lab, router: str) -> float:
    namespace = the_lab.namespace("rollback")
    await the_lab.execute("CanaryDeployment", canary(namespace, "v1", router, []))
    steps: list[dict[str, Any]] = [{"set_weight": 25},
             {"analysis": {"metrics": [{"name": "error_rate", "provider": the_lab.metric(),
                                        "failure_condition": "result > 0.02"}]}}]
    poller = VersionPoller(the_lab.sim, namespace, ENTRY[router])
    poller.start()
    handle = await the_lab.start("CanaryDeployment", canary(namespace, "v2", router, steps))
    if not await closed(handle):
        raise RuntimeError("the canary was expected to roll back")
    poller.finish()
    status: DeploymentStatus = await handle.query("status", result_type=DeploymentStatus)
    failing = next(m for m in status.measurements if m.verdict == "Failed")
    if "v2" not in poller.last:
        raise RuntimeError("the canary never took traffic")
    return max(0.0, poller.last["v2"] - failing.time.timestamp())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--routers", default=ROUTERS)
    parser.add_argument("--pod-start", type=float, default=0.05, help="real seconds from pod creation to Ready")
    args = parser.parse_args()

    seconds: dict[str, list[float]] = {}
    async with lab(args.pod_start) as the_lab:
        for router in args.routers.split(","):
            seconds[router] = [await one_run(the_lab, router) for _ in range(args.runs)]
            log(f"{router}: {ms(seconds[router])}")
    result = {"bench": "rollback_latency", "runs": args.runs, "pod_start_s": args.pod_start, "replicas": 4,
              "canary_weight": 25, "machine": machine(),
              "first_failing_measurement_to_0pct_ms": {r: spread(v, scale=1000, digits=1) for r, v in seconds.items()}}
    emit(result,
         f"rollback latency (`bench/rollback_latency.py`: first failing measurement → 0% canary traffic, dev server, "
         f"4 replicas, canary at 25%, {args.runs} runs each; the analysis interval excluded)",
         "median (min–max): " + ", ".join(f"{r} {ms(v)}" for r, v in seconds.items()) + "; target was under 2 s")


if __name__ == "__main__":
    run_main(main())
