"""Worker processes that serve their metrics, and reading those metrics: shared by the metrics and dashboard tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from deployflow.cli import has_pollers

ROOT = Path(__file__).resolve().parent.parent
WORKER_STARTUP = 60.0  # bounds a hang while a worker process starts; not a speed assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MetricsWorker:
    process: asyncio.subprocess.Process
    metrics_url: str
    sdk_metrics_url: str | None

    def samples(self, name: str, **labels: str) -> list[float]:
        """The values of every sample named `name` whose labels include `labels`."""
        text = httpx.get(self.metrics_url, timeout=10).text
        return [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]

    def total(self, name: str, **labels: str) -> float:
        return sum(self.samples(name, **labels))


@contextlib.asynccontextmanager
async def metrics_worker(
    client: Client, kubeconfig: str, queue: str, *, sdk_metrics: bool = False
) -> AsyncIterator[MetricsWorker]:
    """`python worker.py` on `queue` with metrics on a free port (and the SDK's when asked), until the block ends."""
    port, sdk_port = free_port(), free_port() if sdk_metrics else 0
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "DEPLOYFLOW_TASK_QUEUE": queue,
        "KUBECONFIG": kubeconfig,
        "DEPLOYFLOW_SHUTDOWN_SECONDS": "5",
        "DEPLOYFLOW_METRICS_PORT": str(port),
        "DEPLOYFLOW_SDK_METRICS_PORT": str(sdk_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), env=env, cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    worker = MetricsWorker(
        proc, f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{sdk_port}/metrics" if sdk_port else None
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WORKER_STARTUP
        while not await _ready(client, queue, worker.metrics_url):
            assert proc.returncode is None, "the worker exited while starting"
            assert loop.time() < deadline, "the worker never served its metrics and polled its task queue"
            await asyncio.sleep(0.1)
        yield worker
    finally:
        await stop(proc)


async def _ready(client: Client, queue: str, url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            await http.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return await has_pollers(client, queue)


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM (the worker's graceful stop), then SIGKILL if it does not end."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
