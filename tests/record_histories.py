"""Re-records the blue-green histories the replay test checks (tests/histories/).

    .venv/bin/python -m tests.record_histories

Runs each scenario on the time-skipping test server against an in-process simulator and writes the event history
as `temporal workflow show -o json` would. Re-record only on purpose: the point of the committed histories is that
workflow code changes must still replay the runs already in flight (use `workflow.patched` when they cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from deployflow import kube
from deployflow.sim.config import SimConfig
from deployflow.sim.server import Simulator
from deployflow.spec.control import AbortRequest, RollbackRequest
from deployflow.status import DeploymentStatus, Phase
from deployflow.temporal import register_search_attributes, test_server_path
from tests.bluegreen_support import bluegreen_request, running_worker, start, wait_for

HISTORIES = Path(__file__).parent / "histories"

Scenario = Callable[[Client, str, str], Awaitable[WorkflowHandle[Any, Any]]]


async def _deploy_v1(client: Client, queue: str, namespace: str) -> None:
    await (await start(client, queue, bluegreen_request(namespace, "1.0"))).result()


async def happy_path(client: Client, queue: str, namespace: str) -> WorkflowHandle[Any, Any]:
    """v1 live, v2 deployed, smoke-tested, switched, an hour of standby, blue retired."""
    await _deploy_v1(client, queue, namespace)
    handle = await start(client, queue, bluegreen_request(namespace, "2.0"))
    await handle.result()
    return handle


async def rollback_in_standby(client: Client, queue: str, namespace: str) -> WorkflowHandle[Any, Any]:
    await _deploy_v1(client, queue, namespace)
    handle = await start(client, queue, bluegreen_request(namespace, "2.0"))
    await wait_for(handle, lambda s: s.phase == Phase.STANDBY, "standby")
    await handle.execute_update("rollback", RollbackRequest(reason="errors after the switch"))
    return handle


async def abort_at_gate(client: Client, queue: str, namespace: str) -> WorkflowHandle[Any, Any]:
    await _deploy_v1(client, queue, namespace)
    handle = await start(client, queue, bluegreen_request(namespace, "2.0", promotion={"mode": "manual"}))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the manual gate")
    await handle.signal("pause")
    await handle.execute_update("abort", AbortRequest(reason="found a bug in QA"), result_type=DeploymentStatus)
    return handle


SCENARIOS: dict[str, Scenario] = {
    "happy_path": happy_path,
    "rollback_in_standby": rollback_in_standby,
    "abort_at_gate": abort_at_gate,
}


async def record() -> None:
    sim = Simulator(SimConfig(time_factor=20.0, ready_delay_seconds=1.0))
    sim.start_in_thread()
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = sim.write_kubeconfig(os.path.join(tmp, "config"), context="sim")
        os.environ["KUBECONFIG"] = kubeconfig
        kube.reset_clients()
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=test_server_path(), data_converter=pydantic_data_converter
        )
        try:
            await register_search_attributes(env.client)
            async with running_worker(env.client) as queue:
                HISTORIES.mkdir(exist_ok=True)
                index: dict[str, str] = {}
                for name, scenario in SCENARIOS.items():
                    namespace = f"r-{uuid.uuid4().hex[:8]}"
                    sim.create_namespace(namespace)
                    handle = await scenario(env.client, queue, namespace)
                    # Rollbacks and aborts end failed, as they should.
                    with contextlib.suppress(WorkflowFailureError):
                        await handle.result()
                    history = await handle.fetch_history()
                    (HISTORIES / f"bluegreen_{name}.json").write_text(history.to_json() + "\n")
                    index[f"bluegreen_{name}.json"] = handle.id
                    print(f"recorded {name}: {len(history.events)} events")
                (HISTORIES / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        finally:
            await env.shutdown()
            sim.stop()


if __name__ == "__main__":
    asyncio.run(record())
