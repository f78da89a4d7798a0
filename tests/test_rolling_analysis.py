"""A rolling release's analysis means what a canary's does: inconclusive waits for a person (promote goes on,
abort rolls back) unless the analysis says `on_inconclusive: fail`. Real activities against the simulator."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from deployflow.sim.server import Simulator
from deployflow.spec.control import AbortRequest, PromoteRequest
from deployflow.status import DeploymentStatus, Phase
from tests.rolling_support import (
    create_deployment,
    failure_message,
    request,
    rolling_worker,
    start,
    versions,
    wait_phase,
    wait_ready,
)
from workflows.rolling import RollingDeployment


async def replays(handle: WorkflowHandle[Any, Any]) -> None:
    """The run's own history replays against today's code: the new analysis path is deterministic."""
    history = await handle.fetch_history()
    await Replayer(workflows=[RollingDeployment], data_converter=pydantic_data_converter).replay_workflow(history)


def inconclusive(**fields: Any) -> dict[str, Any]:
    """Every pod ready (ratio 1), which is neither above 1 nor below 0: each measurement is inconclusive."""
    return {
        "metrics": [
            {"name": "ready", "provider": {"kind": "kubernetes", "measure": "ready-ratio"},
             "success_condition": "result > 1", "failure_condition": "result < 0"}
        ],
        **fields,
    }


async def test_inconclusive_analysis_waits_for_promote_then_goes_on(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1, analysis=inconclusive()))
        waiting = await wait_phase(handle, Phase.WAITING_PROMOTION)
        assert waiting.step == "batch 1/2"
        assert "analysis inconclusive" in waiting.message and "promote to go on, or abort" in waiting.message
        assert [m.verdict for m in waiting.measurements] == ["Inconclusive"]
        assert sorted(versions(sim, namespace).values()) == ["1.0.0", "2.0.0"]  # held after the first batch

        await handle.execute_update("promote", PromoteRequest())
        assert (await wait_phase(handle, Phase.WAITING_PROMOTION)).step == "batch 2/2"  # the next batch's analysis
        await handle.execute_update("promote", PromoteRequest())
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED, final.message
    assert [m.verdict for m in final.measurements] == ["Inconclusive", "Inconclusive"]
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["2.0.0", "2.0.0"]
    await replays(handle)


async def test_abort_while_an_inconclusive_analysis_waits_rolls_back(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1, analysis=inconclusive()))
        await wait_phase(handle, Phase.WAITING_PROMOTION)
        await handle.execute_update("abort", AbortRequest(reason="no data, not worth it"))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "aborted: no data, not worth it" in failure_message(failed.value)
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]


async def test_inconclusive_analysis_configured_to_fail_rolls_back(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    spec = request(namespace, batch_size=1, analysis=inconclusive(on_inconclusive="fail"))
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, spec)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        status = await handle.query("status", result_type=DeploymentStatus)
    message = failure_message(failed.value)
    assert "batch 1/2: analysis inconclusive: ready 1: neither" in message, message
    assert status.phase == Phase.ROLLED_BACK
    assert not any("promote to go on" in e.message for e in status.events)  # it never waited for a person
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]
