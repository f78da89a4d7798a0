"""BlueGreenDeployment on the time-skipping test server, with the real activities against the simulator.

Each test judges the cluster afterwards: which colour the Services select, how many replicas each colour has.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, CancelledError

from deployflow import workloads
from deployflow.spec import BlueGreenRequest
from deployflow.spec.control import AbortRequest, ApproveRequest, PromoteRequest, RollbackRequest
from deployflow.status import DeploymentStatus, Phase
from tests.bluegreen_specs import BAD_SPECS
from tests.bluegreen_support import (
    FAULT,
    assert_blue_serves_v1,
    bluegreen_request,
    cluster_view,
    deploy,
    expect_rollback,
    rolled_back_release,
    start,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("kubeconfig")


# --- success -----------------------------------------------------------------------------------------------------


async def test_first_deployment_creates_the_services_and_serves_blue(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    assert cluster_view(namespace).selectors == {"web": None, "web-preview": None}

    status = await deploy(bluegreen_env, namespace, "1.0")

    assert status.phase == Phase.SUCCEEDED and status.version == "1.0" and status.previous_version is None
    view = cluster_view(namespace)
    assert view.selectors["web"] == {"app": "web", "deployflow.io/color": "blue"}
    assert view.color_of("web-preview") == "blue"
    assert view.replicas == {"blue": 2, "green": None}
    assert view.versions["blue"] == "1.0"


async def test_release_switches_to_green_and_retires_blue_after_an_hour_of_standby(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    await deploy(bluegreen_env, namespace, "1.0")

    status = await deploy(bluegreen_env, namespace, "2.0", workload={"replicas": 3})

    assert status.phase == Phase.SUCCEEDED
    assert status.previous_version == "1.0" and status.version == "2.0"
    view = cluster_view(namespace)
    assert view.color_of("web") == "green" and view.color_of("web-preview") == "green"
    assert view.replicas == {"blue": 0, "green": 3}
    assert view.versions["green"] == "2.0"
    # The standby lasted its full hour of (skipped) workflow time before blue was retired.
    standby = next(e for e in status.events if e.message.startswith("Standby:"))
    retired = next(e for e in status.events if e.message == "web-blue scaled to zero")
    assert (retired.time - standby.time).total_seconds() >= 3600

    # A third release goes back to blue: the colours alternate.
    await deploy(bluegreen_env, namespace, "3.0")
    view = cluster_view(namespace)
    assert view.color_of("web") == "blue" and view.versions["blue"] == "3.0"
    assert view.replicas == {"blue": 2, "green": 0}


# --- failures roll back ------------------------------------------------------------------------------------------


async def test_failing_smoke_test_keeps_traffic_on_blue(bluegreen_env: tuple[Client, str], namespace: str) -> None:
    await deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    request = bluegreen_request(namespace, "2.0", workload={"pod_annotations": {FAULT + "error-rate": "1.0"}})

    cause = await expect_rollback(await start(client, queue, request))

    assert "smoke test GET /health expected 200, got 5" in cause.message
    assert "(2 of 2 attempts)" in cause.message
    assert "traffic stays on blue (1.0)" in cause.message
    assert_blue_serves_v1(namespace)
    assert cluster_view(namespace).color_of("web-preview") == "blue"


async def test_crash_looping_version_is_rolled_back(bluegreen_env: tuple[Client, str], namespace: str) -> None:
    handle, cause = await rolled_back_release(bluegreen_env, namespace, "crash-loop")

    assert "CrashLoopBackOff" in cause.message and "traffic stays on blue (1.0)" in cause.message
    status = await handle.query("status", result_type=DeploymentStatus)
    assert status.phase == Phase.ROLLED_BACK


async def test_image_pull_failure_is_rolled_back(bluegreen_env: tuple[Client, str], namespace: str) -> None:
    _, cause = await rolled_back_release(bluegreen_env, namespace, "image-pull-error")

    assert "ErrImagePull" in cause.message or "ImagePullBackOff" in cause.message


async def test_failed_first_deployment_leaves_nothing_running(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    client, queue = bluegreen_env
    request = bluegreen_request(namespace, "1.0", workload={"pod_annotations": {FAULT + "crash-loop": "true"}})

    cause = await expect_rollback(await start(client, queue, request))

    assert "nothing was serving before" in cause.message
    view = cluster_view(namespace)
    assert view.replicas["blue"] == 0 and view.selectors["web"] is None


# --- operator control --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["paused-before-deploy", "health", "smoke", "promotion", "standby"])
async def test_abort_at_each_phase_puts_traffic_back_on_blue(
    bluegreen_env: tuple[Client, str], namespace: str, phase: str
) -> None:
    await deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    fields: dict[str, Any] = {}
    start_args: dict[str, Any] = {}
    if phase == "paused-before-deploy":
        start_args = {"start_signal": "pause"}
    if phase == "health":
        fields["workload"] = {"pod_annotations": {FAULT + "never-ready": "true"}}
    if phase == "smoke":  # a smoke test that keeps failing and retrying until the abort
        fields["workload"] = {"pod_annotations": {FAULT + "error-rate": "1.0"}}
        fields["smoke_tests"] = [{"path": "/health", "attempts": 100, "interval": "0.5s"}]
    if phase == "promotion":
        fields["promotion"] = {"mode": "manual"}
    handle = await start(client, queue, bluegreen_request(namespace, "2.0", **fields), **start_args)
    wanted = {
        "paused-before-deploy": lambda s: s.phase == Phase.PAUSED,
        "health": lambda s: s.step == "health",
        "smoke": lambda s: s.step == "smoke",
        "promotion": lambda s: s.phase == Phase.WAITING_PROMOTION,
        "standby": lambda s: s.phase == Phase.STANDBY,
    }[phase]
    await wait_for(handle, wanted, phase)
    if phase == "standby":
        assert cluster_view(namespace).color_of("web") == "green"

    status = await handle.execute_update(
        "abort", AbortRequest(reason=f"abort during {phase}"), result_type=DeploymentStatus
    )
    assert status.events[-1].message == f"abort requested: abort during {phase}"

    cause = await expect_rollback(handle)
    assert f"aborted: abort during {phase}" in cause.message
    view = cluster_view(namespace)
    assert view.color_of("web") == "blue" and view.replicas["blue"] == 2
    assert view.replicas["green"] in (0, None)  # before the deploy step, green was never created
    if phase == "paused-before-deploy":
        assert view.replicas["green"] is None


async def test_rollback_during_standby_switches_back_at_once(bluegreen_env: tuple[Client, str], namespace: str) -> None:
    await deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    handle = await start(client, queue, bluegreen_request(namespace, "2.0"))
    await wait_for(handle, lambda s: s.phase == Phase.STANDBY, "standby")
    assert cluster_view(namespace).color_of("web") == "green"

    await handle.execute_update("rollback", RollbackRequest(reason="checkout errors"))

    cause = await expect_rollback(handle)
    assert "rolled back: checkout errors; traffic is back on blue (1.0)" in cause.message
    assert_blue_serves_v1(namespace)


async def test_pause_holds_before_the_deploy_and_resume_continues(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    await deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    handle = await start(client, queue, bluegreen_request(namespace, "2.0"), start_signal="pause")
    status = await wait_for(handle, lambda s: s.phase == Phase.PAUSED, "paused")
    assert status.paused
    assert cluster_view(namespace).replicas["green"] is None  # nothing deployed while paused

    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("pause")  # already paused
    await handle.execute_update("resume")

    result: DeploymentStatus = await handle.result()
    assert result.phase == Phase.SUCCEEDED and not result.paused
    view = cluster_view(namespace)
    assert view.color_of("web") == "green" and view.replicas == {"blue": 0, "green": 2}


async def test_manual_gate_refuses_what_makes_no_sense_and_promotes_on_approval(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    await deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    handle = await start(client, queue, bluegreen_request(namespace, "2.0", promotion={"mode": "manual"}))

    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the manual gate")
    # Green is up and previewed, but users still reach blue.
    view = cluster_view(namespace)
    assert view.color_of("web") == "blue" and view.color_of("web-preview") == "green" and view.replicas["green"] == 2
    for name, arg in (("resume", None), ("rollback", RollbackRequest())):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(name, arg) if arg else await handle.execute_update(name)
        assert isinstance(refused.value.cause, ApplicationError)

    await handle.execute_update("approve", ApproveRequest(approver="release-manager", comment="QA signed off"))

    status = await wait_for(handle, lambda s: s.phase == Phase.STANDBY, "standby")
    assert status.details["approved_by"] == "release-manager"
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("approve", ApproveRequest(approver="someone"))  # nothing waits any more
    await handle.execute_update("promote", PromoteRequest())  # ends the standby early
    result: DeploymentStatus = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert cluster_view(namespace).replicas == {"blue": 0, "green": 2}


async def test_promote_refused_when_nothing_waits(bluegreen_env: tuple[Client, str], namespace: str) -> None:
    await deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    request = bluegreen_request(namespace, "2.0", workload={"pod_annotations": {FAULT + "never-ready": "true"}})
    handle = await start(client, queue, request)
    await wait_for(handle, lambda s: s.step == "health", "health wait")

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("promote", PromoteRequest())
    assert "nothing waits for promotion" in str(refused.value.cause)

    await handle.signal("abort")  # a signal with no input at all, as `temporal workflow signal --name abort`
    await expect_rollback(handle)
    assert_blue_serves_v1(namespace)


async def test_cancel_from_the_ui_rolls_back_and_ends_cancelled(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    await deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    handle = await start(client, queue, bluegreen_request(namespace, "2.0", promotion={"mode": "manual"}))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the manual gate")

    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert_blue_serves_v1(namespace)
    assert cluster_view(namespace).color_of("web-preview") == "blue"


async def test_second_start_for_the_same_app_is_refused(bluegreen_env: tuple[Client, str], namespace: str) -> None:
    from temporalio.exceptions import WorkflowAlreadyStartedError

    client, queue = bluegreen_env
    handle = await start(client, queue, bluegreen_request(namespace, "1.0", promotion={"mode": "manual"}))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the manual gate")
    with pytest.raises(WorkflowAlreadyStartedError):
        await start(
            client, queue, bluegreen_request(namespace, "9.9"), id_conflict_policy=WorkflowIDConflictPolicy.FAIL
        )
    await handle.signal("promote")
    await handle.result()
    assert cluster_view(namespace).versions["blue"] == "1.0"


# --- bad input through the real client ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "field", "reason"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
async def test_bad_payload_from_cli_or_ui_fails_the_run_naming_the_field(
    bluegreen_env: tuple[Client, str], namespace: str, name: str, data: dict[str, Any], field: str, reason: str
) -> None:
    """A raw JSON payload, as `temporal workflow start --input` or the UI sends it: the run fails at once, naming
    the field, instead of retrying a workflow task forever; nothing in the cluster changes."""
    client, queue = bluegreen_env
    payload = copy.deepcopy(data)
    if isinstance(payload.get("target"), dict) and payload["target"].get("namespace") == "shop":
        payload["target"]["namespace"] = namespace
    handle = await client.start_workflow(
        "BlueGreenDeployment", payload, id=f"deploy/sim/{namespace}/web", task_queue=queue
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidSpec" and cause.non_retryable
    assert field in cause.message and reason in cause.message, cause.message
    view = cluster_view(namespace)
    assert view.replicas == {"blue": None, "green": None}
    assert view.selectors == {"web": None, "web-preview": None}


async def test_unvalidated_request_is_refused_before_any_activity(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    """A request built without validation (model_construct) is caught by the workflow's own check."""
    client, queue = bluegreen_env
    good = bluegreen_request(namespace, "1.0")
    bad = BlueGreenRequest.model_construct(**{**dict(good), "standby": timedelta(seconds=-1)})
    with pytest.raises(WorkflowFailureError) as failure:
        await (await start(client, queue, bad)).result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidSpec" and "standby" in cause.message
    assert cluster_view(namespace).replicas == {"blue": None, "green": None}


# --- health judgement, from raw objects ---------------------------------------------------------------------------


def _pod(name: str, image: str, *, ready: bool, waiting: str | None = None, deleting: bool = False) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "web", "image": image, "state": state, "restartCount": 3 if waiting else 0}],
        },
    }


def _deployment(**status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2, **status}}


def test_health_waits_for_terminating_old_pods_and_ignores_their_crashes() -> None:
    pods = [
        _pod("new-1", "web:2", ready=True),
        _pod("new-2", "web:2", ready=True),
        _pod("old-1", "web:1", ready=False, waiting="CrashLoopBackOff"),
    ]
    health = workloads.assess(_deployment(updatedReplicas=2, replicas=3), pods, replicas=2, image="web:2")
    assert health.failure_reason is None and not health.ready  # the old pod still exists
    pods[2] = _pod("old-1", "web:1", ready=False, deleting=True)
    health = workloads.assess(_deployment(updatedReplicas=2, replicas=2), pods, replicas=2, image="web:2")
    assert health.ready


def test_health_fails_fast_on_a_crash_loop_and_on_the_progress_deadline() -> None:
    crashing = [_pod("new-1", "web:2", ready=False, waiting="CrashLoopBackOff")]
    health = workloads.assess(_deployment(updatedReplicas=2, replicas=2), crashing, replicas=2, image="web:2")
    assert health.failure_reason == "CrashLoopBackOff" and "3 restarts" in health.failure_message
    stalled = _deployment(
        updatedReplicas=2,
        replicas=2,
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    )
    health = workloads.assess(stalled, [], replicas=2, image="web:2")
    assert health.failure_reason == "ProgressDeadlineExceeded" and not health.ready
