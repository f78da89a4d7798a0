"""Rollback latency: time from the first failing analysis measurement to 0% canary traffic.

Runs CanaryDeployment on the Temporal dev server (SQLite, as in production) with a worker in this process and the
simulator in a thread. Each run deploys v1, then starts a canary of v2 whose error rate (served by a local
endpoint the `web` provider reads) fails the first measurement of an analysis step at 25%. A poller sends a few
requests through the app's entry point every few milliseconds and notes when v2 stops answering.

The analysis interval is excluded by construction: the failing measurement is the step's first.

    .venv/bin/python bench/rollback_latency.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from temporalio.client import WorkflowFailureError  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.analysis import measure  # noqa: E402
from activities.traffic import TRAFFIC_ACTIVITIES  # noqa: E402
from deployflow import kube  # noqa: E402
from deployflow.sim.config import SimConfig  # noqa: E402
from deployflow.sim.server import Simulator  # noqa: E402
from deployflow.spec.canary import CanaryRequest  # noqa: E402
from deployflow.status import DeploymentStatus  # noqa: E402
from deployflow.temporal import dev_server_search_attribute_args, temporal_cli_path  # noqa: E402
from workflows.canary import CanaryDeployment  # noqa: E402

ENTRY = {"replicas": "service/web", "gateway-api": "httproute/web", "istio": "virtualservice/web",
         "nginx": "ingress/web"}


def rate_server() -> tuple[ThreadingHTTPServer, str]:
    """v1 is healthy, every other version fails with a 30% error rate."""

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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Poller(threading.Thread):
    """Notes, with wall-clock times, when the canary version last answered a request."""

    def __init__(self, sim: Simulator, namespace: str, entry: str) -> None:
        super().__init__(daemon=True)
        self.sim, self.namespace, self.entry = sim, namespace, entry
        self.last_canary: float | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                served = self.sim.send_requests(self.namespace, self.entry, 20)
            except KeyError:
                served = {}
            if served.get("v2"):
                self.last_canary = time.time()
            time.sleep(0.002)


async def one_run(env: WorkflowEnvironment, sim: Simulator, metrics_url: str, router: str, queue: str) -> float:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    sim.create_namespace(namespace)

    def spec(version: str, steps: list[dict[str, Any]]) -> CanaryRequest:
        return CanaryRequest.model_validate({
            "target": {"cluster": "sim", "namespace": namespace, "app": "web"},
            "workload": {"image": f"web:{version}", "replicas": 4},
            "traffic": {"router": router},
            "steps": steps,
        })

    first = spec("v1", [])
    await env.client.execute_workflow(CanaryDeployment.run, first, id=first.target.workflow_id(), task_queue=queue)
    steps = [
        {"set_weight": 25},
        {"analysis": {"metrics": [{
            "name": "error_rate",
            "provider": {"kind": "web", "url": f"{metrics_url}/{{{{ args.version }}}}", "json_path": "$.error_rate"},
            "failure_condition": "result > 0.02",
        }]}},
    ]
    canary = spec("v2", steps)
    poller = Poller(sim, namespace, ENTRY[router])
    poller.start()
    handle = await env.client.start_workflow(
        CanaryDeployment.run, canary, id=canary.target.workflow_id() + "-canary", task_queue=queue
    )
    try:
        await handle.result()
        raise RuntimeError("the canary was expected to roll back")
    except WorkflowFailureError:
        pass
    await asyncio.sleep(0.2)  # the poller's last look after the rollback
    poller.stopped.set()
    poller.join()
    status: DeploymentStatus = await handle.query("status", result_type=DeploymentStatus)
    failing = next(m for m in status.measurements if m.verdict == "Failed")
    if poller.last_canary is None:
        raise RuntimeError("the canary never took traffic")
    return poller.last_canary - failing.time.timestamp()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--routers", default="replicas,gateway-api,istio,nginx")
    args = parser.parse_args()

    sim = Simulator(SimConfig(time_factor=20.0, ready_delay_seconds=1.0))
    sim.start_in_thread()
    kubeconfig = os.path.join(tempfile.mkdtemp(prefix="deployflow-bench-"), "config")
    sim.write_kubeconfig(kubeconfig, context="sim")
    os.environ["KUBECONFIG"] = kubeconfig
    kube.reset_clients()
    server, metrics_url = rate_server()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=dev_server_search_attribute_args(),
        ui=False,
    )
    queue = "bench-rollback"
    try:
        async with Worker(env.client, task_queue=queue, workflows=[CanaryDeployment],
                          activities=[*TRAFFIC_ACTIVITIES, measure],
                          max_heartbeat_throttle_interval=timedelta(seconds=1)):
            print(f"rollback latency: first failing measurement -> 0% canary traffic ({args.runs} runs per router, "
                  "Temporal dev server, simulator, 4 replicas, canary at 25%)")
            for router in args.routers.split(","):
                seconds = [await one_run(env, sim, metrics_url, router, queue) for _ in range(args.runs)]
                print(f"  {router:12s} median {statistics.median(seconds) * 1000:6.0f} ms   "
                      f"min {min(seconds) * 1000:6.0f} ms   max {max(seconds) * 1000:6.0f} ms")
    finally:
        await env.shutdown()
        server.shutdown()
        sim.stop()


if __name__ == "__main__":
    asyncio.run(main())
