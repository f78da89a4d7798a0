"""Recorded histories of every strategy replay against today's workflow code: runs in flight survive a worker upgrade.

Record new ones with `.venv/bin/python -m tests.record_histories <name filter>`; re-record an existing one only
when a change is meant to be incompatible and is guarded by `workflow.patched`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

# This module defines workflows, so the sandbox imports it again: what is not workflow code passes through.
with workflow.unsafe.imports_passed_through():
    import pytest

    from deployflow.spec import BlueGreenRequest, CanaryRequest, RollingRequest
    from deployflow.status import DeploymentStatus
    from worker import workflow_runner

from workflows import ALL_WORKFLOWS
from workflows.bluegreen import BlueGreenDeployment
from workflows.canary import CanaryDeployment
from workflows.rolling import RollingDeployment

HISTORIES = Path(__file__).parent / "histories"
INDEX: dict[str, str] = json.loads((HISTORIES / "index.json").read_text())


def workflow_name(cls: type) -> str:
    definition = workflow._Definition.must_from_class(cls)
    assert definition.name is not None
    return definition.name


WORKFLOWS: dict[str, type] = {workflow_name(cls): cls for cls in ALL_WORKFLOWS}


def events(name: str) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = json.loads((HISTORIES / name).read_text())["events"]
    return recorded


def workflow_type(name: str) -> str:
    started = events(name)[0]["workflowExecutionStartedEventAttributes"]
    return str(started["workflowType"]["name"])


def outcome(name: str) -> str:
    """success, rollback or abort, read from how the recorded run ended."""
    last = events(name)[-1]
    if last["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED":
        return "success"
    assert last["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED", (name, last["eventType"])
    message = last["workflowExecutionFailedEventAttributes"]["failure"]["message"]
    assert "rolled back" in message, (name, message)
    return "abort" if "aborted" in message else "rollback"


def history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(INDEX[name], (HISTORIES / name).read_text())


def replayer(*workflows: type) -> Replayer:
    return Replayer(
        workflows=list(workflows), data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )


@pytest.mark.parametrize("name", sorted(INDEX))
async def test_recorded_history_replays_without_nondeterminism(name: str) -> None:
    kind = workflow_type(name)
    assert kind in WORKFLOWS, f"{name} was recorded by {kind}, which no longer is in workflows.ALL_WORKFLOWS"
    result = await replayer(WORKFLOWS[kind]).replay_workflow(history(name), raise_on_replay_failure=True)
    assert result.replay_failure is None


def test_every_history_file_is_indexed() -> None:
    assert {p.name for p in HISTORIES.glob("*.json")} - {"index.json"} == set(INDEX)


def test_histories_cover_success_rollback_and_abort_of_every_strategy() -> None:
    covered: dict[str, set[str]] = {kind: set() for kind in WORKFLOWS}
    for name in INDEX:
        covered.setdefault(workflow_type(name), set()).add(outcome(name))
    assert covered == {kind: {"success", "rollback", "abort"} for kind in WORKFLOWS}


@workflow.defn(name="BlueGreenDeployment")
class ReorderedBlueGreen(BlueGreenDeployment):
    """A change that would break runs in flight: it reads the cluster twice before doing anything."""

    @workflow.run
    async def run(self, request: BlueGreenRequest) -> DeploymentStatus:
        await self._make_plan(request)
        result: DeploymentStatus = await super().run(request)
        return result


@workflow.defn(name="CanaryDeployment")
class DelayedCanary(CanaryDeployment):
    """A change that would break runs in flight: a new wait before the tracks are read, with no `workflow.patched`."""

    @workflow.run
    async def run(self, request: CanaryRequest) -> DeploymentStatus:
        await workflow.sleep(1)
        result: DeploymentStatus = await super().run(request)
        return result


@workflow.defn(name="RollingDeployment")
class BakingRolling(RollingDeployment):
    """A change that would break runs in flight: a new wait before the first step, with no `workflow.patched`."""

    @workflow.run
    async def run(self, request: RollingRequest) -> DeploymentStatus:
        await workflow.sleep(1)
        result: DeploymentStatus = await super().run(request)
        return result


@pytest.mark.parametrize(
    ("changed", "name"),
    [
        (ReorderedBlueGreen, "bluegreen_happy_path.json"),
        (DelayedCanary, "canary_promoted.json"),
        (BakingRolling, "rolling_abort_mid_rollout.json"),
    ],
)
async def test_replay_catches_a_nondeterministic_change(changed: type, name: str) -> None:
    with pytest.raises(NondeterminismError):
        await replayer(changed).replay_workflow(history(name))
