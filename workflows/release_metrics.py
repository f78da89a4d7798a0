"""Metrics from inside a release: one call per phase change (`DeploymentControl.set_phase`).

Why from workflow code rather than from a final activity: an activity would add a command to every run, changing
the command sequence of runs already recorded (a `workflow.patched` branch for every strategy) and costing a round
trip at the end of each release, for a number the workflow already knows. Workflow code runs again on every replay,
so the counters are touched only when the code runs for the first time (`not workflow.unsafe.is_replaying()`): a
release whose worker dies is replayed by the next worker up to where it was, silently, and only the phase changes
that worker makes itself are counted. The final phase change happens once, so the release is counted once.

Nothing here creates a command, and a failure here is logged and swallowed: metrics never change a release.

At the final phase the summary a person wants from a notification (outcome, duration, and for a rollback its reason
class and the measurement that decided it) goes into `status.details`, so notifications and the status carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from deployflow import metrics
    from deployflow.status import Phase


@dataclass
class _Rollback:
    started: datetime
    reason: str
    after_promotion: bool


_STATE = "_release_metrics_rollback"
_OUTCOMES = {Phase.SUCCEEDED: "succeeded", Phase.ROLLED_BACK: "rolled_back", Phase.FAILED: "failed"}


def phase_changed(control: Any, previous: Phase) -> None:
    """Records the phase `control.status` has just entered, coming from `previous`."""
    try:
        _observe(control, previous)
    except Exception as err:  # a metrics fault must never fail a workflow task
        workflow.logger.warning("release metrics not recorded: %s", err)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _observe(control: Any, previous: Phase) -> None:
    status = control.status
    run_id = workflow.info().run_id
    if status.phase == Phase.ROLLING_BACK and getattr(control, _STATE, None) is None:
        setattr(
            control,
            _STATE,
            _Rollback(workflow.now(), status.message, after_promotion=previous == Phase.STANDBY),
        )
    outcome = _OUTCOMES.get(status.phase)
    if outcome is None:
        metrics.LIVE.track(run_id, control)
        if not workflow.unsafe.is_replaying():
            metrics.prepare(status)
        return
    metrics.LIVE.finished(run_id, status)
    started = status.started_at or workflow.now()
    seconds = ((status.finished_at or workflow.now()) - started).total_seconds()
    status.details["outcome"] = outcome
    status.details["duration"] = format_duration(seconds)
    rollback: tuple[str, float] | None = None
    state: _Rollback | None = getattr(control, _STATE, None)
    if state is not None and status.phase == Phase.ROLLED_BACK:
        decided_by = metrics.deciding_measurement(status.measurements)
        after = state.after_promotion or "after promotion" in status.message
        reason = metrics.rollback_reason(
            state.reason, after_promotion=after, failed_measurement=decided_by is not None
        )
        rollback = (reason, (workflow.now() - state.started).total_seconds())
        status.details["rollback_reason"] = reason
        if decided_by is not None:
            status.details["measurement"] = metrics.describe_measurement(decided_by)
    if not workflow.unsafe.is_replaying():
        metrics.record_release(status, outcome, seconds, rollback)
