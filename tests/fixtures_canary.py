"""Canary fixtures: a scripted metric endpoint shared by a module, and a released v1 to deploy the next version
over."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from deployflow.sim.server import Simulator
from deployflow.status import Phase
from tests.canary_support import ACTIVITIES, Rates, Release
from workflows.canary import CanaryDeployment


@pytest.fixture(scope="module")
def rate_server() -> Iterator[tuple[str, dict[str, Rates]]]:
    """One server; each test gets its own `Rates` under its own path."""
    tables: dict[str, Rates] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            key, version = self.path.strip("/").split("/")
            value = tables[key].next(version)
            body = json.dumps({"data": {"error_rate": value}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tables
    server.shutdown()


@pytest.fixture
async def release(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str,
    rate_server: tuple[str, dict[str, Rates]],
) -> AsyncIterator[Release]:
    base, tables = rate_server
    key = uuid.uuid4().hex[:8]
    tables[key] = Rates()
    task_queue = f"canary-{key}"
    async with Worker(time_skipping_env.client, task_queue=task_queue, workflows=[CanaryDeployment],
                      activities=ACTIVITIES):
        r = Release(time_skipping_env, sim, namespace, base, tables[key], key, task_queue)
        first = await r.deploy(r.spec("v1"))
        assert first.phase == Phase.SUCCEEDED and "first deployment" in first.message
        yield r
        assert await r.still_running() == []
