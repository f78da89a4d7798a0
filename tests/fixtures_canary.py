"""Canary fixtures: a scripted metric endpoint shared by a module, and a released v1 to deploy the next version
over."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from deployflow.sim.server import Simulator
from deployflow.status import Phase
from tests.canary_support import ACTIVITIES, Rates, Release
from tests.http_support import json_server
from workflows.canary import CanaryDeployment


@pytest.fixture(scope="module")
def rate_server() -> Iterator[tuple[str, dict[str, Rates]]]:
    """One server; each test gets its own `Rates` under its own path."""
    tables: dict[str, Rates] = {}

    def answer(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        key, version = path.strip("/").split("/")
        return 200, {"data": {"error_rate": tables[key].next(version)}}

    with json_server(answer) as base:
        yield base, tables


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
