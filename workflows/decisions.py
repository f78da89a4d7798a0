"""Where a release stands, and what follows from it: pure functions, with no Temporal in them, unit-tested alone.

Each strategy keeps one explicit state instead of a handful of booleans, moves it forward as its steps complete,
and asks these functions what a failure means: whether it rolls back, and what the rollback must undo.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # only the annotation: the workflows pass their request in, whichever side of the sandbox it is
    from deployflow.spec.rolling import RollingRequest

# --- blue-green ---------------------------------------------------------------------------------------------------


class BlueGreenState(StrEnum):
    PLANNED = "planned"  # the live state is read; nothing has changed
    DEPLOYED = "deployed"  # the new colour runs (or is being applied); no Service points at it
    PREVIEWED = "previewed"  # the preview Service points at the new colour
    SWITCHED = "switched"  # the active Service points at the new colour
    STANDBY = "standby"  # switched, with the old colour kept running for a rollback
    COMMITTED = "committed"  # the old colour is being retired: no way back
    ROLLED_BACK = "rolled back"


class BlueGreenUndo(StrEnum):
    ACTIVE_TO_OLD = "point the active Service at the old colour"
    PREVIEW_TO_OLD = "point the preview Service at the old colour"
    ACTIVE_TO_ADOPTED = "give the active Service back the selector it had"
    SCALE_NEW_TO_ZERO = "scale the new colour to zero"


_BG_ORDER = list(BlueGreenState)


def _reached(state: BlueGreenState, step: BlueGreenState) -> bool:
    """Whether `state` is at or past `step` on the way to COMMITTED (ROLLED_BACK is off that path)."""
    return state != BlueGreenState.ROLLED_BACK and _BG_ORDER.index(state) >= _BG_ORDER.index(step)


def bluegreen_switched(state: BlueGreenState) -> bool:
    return _reached(state, BlueGreenState.SWITCHED)


def bluegreen_rolls_back(state: BlueGreenState) -> bool:
    """A failure rolls back until the old colour is being retired; a rollback happens once."""
    return state not in (BlueGreenState.COMMITTED, BlueGreenState.ROLLED_BACK)


def bluegreen_undo(
    state: BlueGreenState, *, has_old_color: bool, active_service_existed: bool, adopting: bool
) -> list[BlueGreenUndo]:
    """The rollback's steps, in order, for a release that got as far as `state`.

    With an old colour the active Service goes back to it (also when it existed but never moved: a Service that
    pointed elsewhere is set right), and preview follows if it had moved. A first blue-green release that adopted an
    existing Service gives it back its selector once it had been switched. The new colour always scales to zero.
    """
    steps: list[BlueGreenUndo] = []
    if has_old_color:
        if active_service_existed or bluegreen_switched(state):
            steps.append(BlueGreenUndo.ACTIVE_TO_OLD)
        if _reached(state, BlueGreenState.PREVIEWED):
            steps.append(BlueGreenUndo.PREVIEW_TO_OLD)
    elif adopting and bluegreen_switched(state):
        steps.append(BlueGreenUndo.ACTIVE_TO_ADOPTED)
    steps.append(BlueGreenUndo.SCALE_NEW_TO_ZERO)
    return steps


# --- canary -------------------------------------------------------------------------------------------------------


class CanaryState(StrEnum):
    PLANNED = "planned"  # the tracks are read; nothing has changed
    CANARY = "canary"  # routing and the canary track are set up: the canary takes a share of traffic
    COMMITTED = "committed"  # the stable track runs the new version
    ROLLED_BACK = "rolled back"  # traffic back on stable (before the commit) or the previous version restored


class CanaryUndo(StrEnum):
    TRAFFIC_TO_STABLE = "all traffic back to the stable track, the canary to zero"
    RESTORE_PREVIOUS = "the stable track back to the previous version"


def canary_undo(state: CanaryState) -> CanaryUndo | None:
    """What a failure in `state` must undo: None when there is nothing (left) to undo."""
    if state == CanaryState.ROLLED_BACK:
        return None
    if state == CanaryState.COMMITTED:
        return CanaryUndo.RESTORE_PREVIOUS
    return CanaryUndo.TRAFFIC_TO_STABLE


# --- rolling ------------------------------------------------------------------------------------------------------


class RollingState(StrEnum):
    RECORDED = "recorded"  # the running revision is recorded; nothing has changed
    MOVING = "moving"  # pods are moving to the new version
    HANDED_BACK = "handed back"  # every pod runs the new version; Kubernetes owns the workload again
    ROLLED_BACK = "rolled back"


def rolling_rolls_back(state: RollingState) -> bool:
    """Once pods have moved, any failure (post-deploy checks included) returns to the recorded revision, once."""
    return state in (RollingState.MOVING, RollingState.HANDED_BACK)


class RollbackStep(NamedTuple):
    pods: int  # pods at the recorded template once the step is done
    surge: int
    unavailable: int


def rollback_plan(request: RollingRequest, replicas: int, attempted: int) -> list[RollbackStep]:
    """The rollback's moves back to the recorded template, given that at most `attempted` pods were ever asked to
    run the new version."""
    surge, unavailable = request.surge_and_unavailable(replicas)
    touched = max(1, min(attempted, replicas))
    if request.rollback == "all-at-once":
        # Deployment: the recorded revision comes back at full size first, then the new pods go.
        return [RollbackStep(replicas, replicas if request.kind == "Deployment" else 0, unavailable)]
    steps = request.batch_plan(touched)
    if request.kind == "StatefulSet":
        # Highest ordinals first, as they were updated: the partition moves back up batch by batch.
        return [RollbackStep(count, 0, unavailable) for count in steps]
    start = replicas - touched
    return [RollbackStep(min(replicas, start + count), surge, unavailable) for count in steps]
