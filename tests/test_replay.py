"""Recorded blue-green histories replay against today's workflow code: runs in flight survive a worker upgrade.

Re-record with `.venv/bin/python -m tests.record_histories` (only when a change is meant to be incompatible and
is guarded by `workflow.patched`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from deployflow.spec import BlueGreenRequest
from deployflow.status import DeploymentStatus
from worker import workflow_runner
from workflows.bluegreen import BlueGreenDeployment

HISTORIES = Path(__file__).parent / "histories"
INDEX: dict[str, str] = json.loads((HISTORIES / "index.json").read_text())


def history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(INDEX[name], (HISTORIES / name).read_text())


@pytest.mark.parametrize("name", sorted(INDEX))
async def test_recorded_history_replays_without_nondeterminism(name: str) -> None:
    replayer = Replayer(
        workflows=[BlueGreenDeployment], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history(name), raise_on_replay_failure=True)
    assert result.replay_failure is None


def test_histories_cover_success_rollback_and_abort() -> None:
    assert {"bluegreen_happy_path.json", "bluegreen_rollback_in_standby.json", "bluegreen_abort_at_gate.json"} <= set(
        INDEX
    )


@workflow.defn(name="BlueGreenDeployment")
class ReorderedBlueGreen(BlueGreenDeployment):
    """A change that would break runs in flight: it reads the cluster twice before doing anything."""

    @workflow.run
    async def run(self, request: BlueGreenRequest) -> DeploymentStatus:
        await self._make_plan(request)
        result: DeploymentStatus = await super().run(request)
        return result


async def test_replay_catches_a_nondeterministic_change() -> None:
    replayer = Replayer(
        workflows=[ReorderedBlueGreen], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history("bluegreen_happy_path.json"))
