"""The strategies' decisions on their own: whether a failure rolls back, what the rollback must undo, and how the
run then ends."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType
from temporalio.exceptions import CancelledError as TemporalCancelled

from deployflow.errors import ErrorType
from deployflow.spec import RollingRequest
from workflows.decisions import (
    BlueGreenState,
    BlueGreenUndo,
    CanaryState,
    CanaryUndo,
    RollbackStep,
    RollingState,
    bluegreen_rolls_back,
    bluegreen_switched,
    bluegreen_undo,
    canary_undo,
    rollback_plan,
    rolling_rolls_back,
)
from workflows.failure import Aborted, error_type, explain, roll_back_and_end, rolled_back

S = BlueGreenState
U = BlueGreenUndo

# --- blue-green -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (S.PLANNED, [U.ACTIVE_TO_OLD, U.SCALE_NEW_TO_ZERO]),
        (S.DEPLOYED, [U.ACTIVE_TO_OLD, U.SCALE_NEW_TO_ZERO]),
        (S.PREVIEWED, [U.ACTIVE_TO_OLD, U.PREVIEW_TO_OLD, U.SCALE_NEW_TO_ZERO]),
        (S.SWITCHED, [U.ACTIVE_TO_OLD, U.PREVIEW_TO_OLD, U.SCALE_NEW_TO_ZERO]),
        (S.STANDBY, [U.ACTIVE_TO_OLD, U.PREVIEW_TO_OLD, U.SCALE_NEW_TO_ZERO]),
    ],
)
def test_bluegreen_undoes_what_the_release_reached_traffic_first(state: BlueGreenState, expected: list[U]) -> None:
    assert bluegreen_undo(state, has_old_color=True, active_service_existed=True, adopting=False) == expected


def test_bluegreen_sets_the_active_service_right_only_once_it_moved_when_it_did_not_exist_before() -> None:
    before = bluegreen_undo(S.PREVIEWED, has_old_color=True, active_service_existed=False, adopting=False)
    after = bluegreen_undo(S.SWITCHED, has_old_color=True, active_service_existed=False, adopting=False)
    assert before == [U.PREVIEW_TO_OLD, U.SCALE_NEW_TO_ZERO]
    assert after == [U.ACTIVE_TO_OLD, U.PREVIEW_TO_OLD, U.SCALE_NEW_TO_ZERO]


@pytest.mark.parametrize("state", [S.PLANNED, S.DEPLOYED, S.PREVIEWED, S.SWITCHED, S.STANDBY])
def test_bluegreen_first_release_only_scales_the_new_colour_down(state: BlueGreenState) -> None:
    assert bluegreen_undo(state, has_old_color=False, active_service_existed=False, adopting=False) == [
        U.SCALE_NEW_TO_ZERO
    ]


def test_bluegreen_adopted_service_gets_its_selector_back_only_after_the_switch() -> None:
    kwargs: dict[str, Any] = {"has_old_color": False, "active_service_existed": True, "adopting": True}
    assert bluegreen_undo(S.PREVIEWED, **kwargs) == [U.SCALE_NEW_TO_ZERO]
    assert bluegreen_undo(S.STANDBY, **kwargs) == [U.ACTIVE_TO_ADOPTED, U.SCALE_NEW_TO_ZERO]


def test_bluegreen_rolls_back_until_the_commit_and_only_once() -> None:
    rolling_back = {state for state in BlueGreenState if bluegreen_rolls_back(state)}
    assert rolling_back == set(BlueGreenState) - {S.COMMITTED, S.ROLLED_BACK}


def test_bluegreen_switched_means_the_active_service_points_at_the_new_colour() -> None:
    assert {state for state in BlueGreenState if bluegreen_switched(state)} == {S.SWITCHED, S.STANDBY, S.COMMITTED}


# --- canary ---------------------------------------------------------------------------------------------------------


def test_canary_sends_traffic_back_before_the_commit_restores_after_and_never_twice() -> None:
    assert canary_undo(CanaryState.PLANNED) == CanaryUndo.TRAFFIC_TO_STABLE
    assert canary_undo(CanaryState.CANARY) == CanaryUndo.TRAFFIC_TO_STABLE
    assert canary_undo(CanaryState.COMMITTED) == CanaryUndo.RESTORE_PREVIOUS
    assert canary_undo(CanaryState.ROLLED_BACK) is None


# --- rolling --------------------------------------------------------------------------------------------------------


def rolling(**fields: Any) -> RollingRequest:
    return RollingRequest.model_validate(
        {
            "target": {"cluster": "sim", "namespace": "shop", "app": "web"},
            "image": "registry.example.com/web:2",
            "rollback": "batches",
            **fields,
        }
    )


def test_rolling_rolls_back_once_pods_moved_and_only_once() -> None:
    assert {state for state in RollingState if rolling_rolls_back(state)} == {
        RollingState.MOVING,
        RollingState.HANDED_BACK,
    }


def test_rolling_rollback_returns_the_touched_pods_batch_by_batch() -> None:
    request = rolling(batch_size=1, max_surge=1, max_unavailable=0)
    # Two of four pods ever ran the new version: two steps bring them back, the untouched two stay as they are.
    assert rollback_plan(request, 4, 2) == [RollbackStep(3, 1, 0), RollbackStep(4, 1, 0)]


def test_rolling_rollback_all_at_once_restores_a_deployment_at_full_size_first() -> None:
    request = rolling(rollback="all-at-once", max_surge=1, max_unavailable=0)
    assert rollback_plan(request, 4, 3) == [RollbackStep(4, 4, 0)]
    stateful = rolling(kind="StatefulSet", rollback="all-at-once")
    assert rollback_plan(stateful, 4, 3)[0].surge == 0


def test_rolling_rollback_of_a_statefulset_moves_its_partition_back_up() -> None:
    request = rolling(kind="StatefulSet", batch_size=2)
    assert [step.pods for step in rollback_plan(request, 6, 4)] == [2, 4]
    assert all(step.surge == 0 for step in rollback_plan(request, 6, 4))


@pytest.mark.parametrize(
    ("replicas", "batch_size", "attempted"),
    [(n, b, a) for n, b, a in itertools.product(range(1, 11), (1, 2, 3, "50%"), range(0, 12)) if b != 3 or n > 2],
)
def test_rolling_batch_rollback_of_a_deployment_ends_with_every_pod_back(
    replicas: int, batch_size: int | str, attempted: int
) -> None:
    plan = rollback_plan(rolling(batch_size=batch_size), replicas, attempted)
    pods = [step.pods for step in plan]
    assert pods[-1] == replicas  # every pod runs the recorded revision at the end
    assert pods == sorted(pods) and all(0 < p <= replicas for p in pods)
    # Never more steps than pods that moved (at least one step, even when a failure came before any pod moved).
    assert len(plan) <= max(1, min(attempted, replicas))


# --- how a run that does not succeed ends (workflows/failure.py) ----------------------------------------------------


def activity_error(cause: BaseException, activity_type: str = "wait_healthy") -> ActivityError:
    err = ActivityError(
        "Activity task failed", scheduled_event_id=5, started_event_id=6, identity="worker",
        activity_type=activity_type, activity_id="3", retry_state=None,
    )
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (Aborted("found a bug in QA"), "aborted: found a bug in QA"),
        (activity_error(TemporalCancelled()), "cancelled"),
        (asyncio.CancelledError(), "cancelled"),
        (activity_error(ApplicationError("pod web-1 cannot start: CrashLoopBackOff", type="CrashLoopBackOff")),
         "pod web-1 cannot start: CrashLoopBackOff"),
        (activity_error(TimeoutError("timeout", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])),
         "wait_healthy timed out (START_TO_CLOSE)"),
        (ApplicationError("nobody promoted within 0:30:00", type="PromotionTimeout"), "nobody promoted within 0:30:00"),
        (KeyError("colour"), "KeyError: 'colour'"),
    ],
)
def test_explain_names_the_innermost_reason(err: BaseException, expected: str) -> None:
    assert explain(err) == expected


def test_a_failure_keeps_the_activity_s_own_type() -> None:
    missing = activity_error(ApplicationError("namespace 'shop' does not exist", type="NamespaceNotFound"))
    assert error_type(missing, ErrorType.DEPLOYMENT_FAILED) == "NamespaceNotFound"
    timed_out = activity_error(TimeoutError("timeout", type=TimeoutType.HEARTBEAT, last_heartbeat_details=[]))
    assert error_type(timed_out, ErrorType.DEPLOYMENT_FAILED) == "DeploymentFailed"


async def test_a_failure_rolls_back_then_fails_as_rolled_back_with_its_cause() -> None:
    reasons: list[str] = []

    async def roll_back(reason: str) -> None:
        reasons.append(reason)

    broken = activity_error(ApplicationError("smoke test failed", type="SmokeTestFailed"), "run_smoke_tests")
    with pytest.raises(ApplicationError) as ended:
        await roll_back_and_end(broken, roll_back, lambda reason: rolled_back(f"rolled back: {reason}"))
    assert reasons == ["smoke test failed"]
    assert ended.value.type == "RolledBack" and ended.value.non_retryable
    assert ended.value.message == "rolled back: smoke test failed" and ended.value.__cause__ is broken


async def test_a_cancelled_run_rolls_back_then_stays_cancelled() -> None:
    reasons: list[str] = []

    async def roll_back(reason: str) -> None:
        reasons.append(reason)

    cancelled = activity_error(TemporalCancelled())
    with pytest.raises(ActivityError) as ended:
        await roll_back_and_end(cancelled, roll_back, lambda reason: rolled_back(reason))
    assert reasons == ["cancelled"] and ended.value is cancelled
