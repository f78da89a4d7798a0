"""Operator control shared by every deployment workflow: pause, resume, abort, promote, approve, rollback, status.

How a strategy uses it
----------------------
Subclass `DeploymentControl` and call `_init_control` from an `@workflow.init` constructor that takes the same
request as `run`, so signals, updates and queries that arrive before `run` starts already see the deployment::

    @workflow.defn(name="CanaryDeployment", failure_exception_types=[pydantic.ValidationError])
    class CanaryDeployment(DeploymentControl):
        @workflow.init
        def __init__(self, request: CanaryRequest) -> None:
            self._init_control(strategy="canary", target=request.target, version=request.workload_version)

        @workflow.run
        async def run(self, request: CanaryRequest) -> DeploymentStatus:
            self.set_phase(Phase.PROGRESSING, "applying the canary", step="apply")
            await self.checkpoint()                 # blocks while paused; raises Aborted on abort
            ...
            await self.interruptible(workflow.execute_activity(...))   # abort cancels a long activity
            if await self.wait(timedelta(minutes=5)):  # a timed pause step; True when promoted early
                ...
            await self.wait_for_promotion(timeout=None) # manual gate; raises Aborted, returns False on timeout
            ...
            return await self.finish(Phase.SUCCEEDED, "canary promoted")   # waits for handlers to finish

Messages (the same names work as signals and as updates; signals accept no input at all):

- `pause` / `resume`: take effect at the next `checkpoint()`. Updates refuse pause when already paused or finished,
  and resume when not paused.
- `abort(reason)`: raises `Aborted` from the next `checkpoint()`, from `wait_for_promotion` and `wait`, and from
  `interruptible(...)` at once (during `standby()` it counts as a rollback). The strategy catches it, rolls back,
  and fails the run. Refused when finished or already aborting.
- `promote(full)`: opens whatever gate waits (`wait_for_promotion`, `wait`, or ends `standby` early). Refused when
  nothing waits. `promote_full` tells the strategy to skip its remaining steps (canary).
- `approve(approver, comment)`: opens a `wait_for_promotion` gate and records who approved. Refused otherwise.
- `rollback(reason)`: only while `await self.standby(duration)` holds the previous version after the switch;
  `standby` then returns "rollback" at once ("promoted" when promote ended it early, "elapsed" otherwise).
- query `status` -> `DeploymentStatus`.

State the strategy updates: `set_phase(phase, message, step=..., step_index=..., step_count=...)` (also upserts the
`DeployPhase` search attribute, refreshes the UI details and calls `_on_phase`), `event(message, kind)`,
`set_versions(version, previous)`, `status.details[...]` / `status.weights[...]` for strategy facts. Override
`_on_phase(phase, message)` to react to every phase change (notifications).
"""

from __future__ import annotations

from typing import NoReturn

import pydantic
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from deployflow.errors import ErrorType
    from deployflow.spec.common import Target, describe_validation_error
    from deployflow.spec.control import (
        AbortRequest,
        ApproveRequest,
        PauseRequest,
        PromoteRequest,
        ResumeRequest,
        RollbackRequest,
    )
    from deployflow.status import DeploymentStatus, Event, Phase

from workflows import release_metrics
from workflows.details import render_details, search_attribute_updates
from workflows.failure import (
    Aborted,
    Failure,
    error_type,
    explain,
    failure,
    invalid_spec,
    is_cancellation,
    rollback_failed,
    shielded,
)
from workflows.gates import Gates

FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED})
MAX_EVENTS = 200  # keeps the status query and history payloads small on long runs

UNCHANGED = "nothing in the cluster was changed"

__all__ = ["Aborted", "DeploymentControl", "shielded"]  # Aborted and shielded live in workflows.failure


class DeploymentControl(Gates):
    """Pause/resume/abort/promote/approve/rollback handlers, the `status` query and the helpers strategies call."""

    # --- set-up -------------------------------------------------------------------------------------------------

    def _init_control(self, *, strategy: str, target: Target, version: str, step_count: int = 0) -> None:
        self._target = target
        self._status = DeploymentStatus(
            strategy=strategy,
            app=target.app,
            namespace=target.namespace,
            cluster=target.cluster,
            version=version,
            step_count=step_count,
            started_at=workflow.now(),
        )
        self._pause_reason: str | None = None
        self._abort_reason: str | None = None
        self._rollback_reason: str | None = None
        self._promotion: PromoteRequest | ApproveRequest | None = None
        self._gate_open = False  # a promotion gate (wait_for_promotion) is waiting
        self._wait_open = False  # a timed pause step (wait) is waiting: promote skips it
        self._standby_open = False  # the previous version is held for rollback
        self._published_identity = False

    @property
    def status(self) -> DeploymentStatus:
        return self._status

    @property
    def finished(self) -> bool:
        return self._status.phase in FINAL_PHASES

    @property
    def abort_requested(self) -> str | None:
        return self._abort_reason

    # --- query --------------------------------------------------------------------------------------------------

    @workflow.query(name="status", description="The live picture: phase, step, versions, decisions, event log")
    def status_query(self) -> DeploymentStatus:
        return self._status

    # --- pause / resume -----------------------------------------------------------------------------------------

    @workflow.signal(name="pause", description="Hold at the next safe point until resumed")
    def pause_signal(self, request: PauseRequest | None = None) -> None:
        if self.finished or self._pause_reason is not None:
            return
        self._do_pause(request or PauseRequest())

    @workflow.update(name="pause", description="Hold at the next safe point until resumed; answers with the status")
    def pause_update(self, request: PauseRequest | None = None) -> DeploymentStatus:
        self._do_pause(request or PauseRequest())
        return self._status

    @pause_update.validator
    def _validate_pause(self, request: PauseRequest | None = None) -> None:
        self._refuse_if_finished("pause")
        if self._pause_reason is not None:
            raise ValueError(f"already paused ({self._pause_reason})")
        if self._abort_reason is not None:
            raise ValueError(f"cannot pause: the deployment is being aborted ({self._abort_reason})")

    def _do_pause(self, request: PauseRequest) -> None:
        self._pause_reason = request.reason
        self._status.paused = True
        self.event(f"pause requested: {request.reason}", kind="decision")
        self._publish_details()

    @workflow.signal(name="resume", description="Continue after a pause")
    def resume_signal(self, request: ResumeRequest | None = None) -> None:
        if self._pause_reason is None:
            return
        self._do_resume()

    @workflow.update(name="resume", description="Continue after a pause; answers with the status")
    def resume_update(self, request: ResumeRequest | None = None) -> DeploymentStatus:
        self._do_resume()
        return self._status

    @resume_update.validator
    def _validate_resume(self, request: ResumeRequest | None = None) -> None:
        self._refuse_if_finished("resume")
        if self._pause_reason is None:
            raise ValueError("not paused: nothing to resume")

    def _do_resume(self) -> None:
        self._pause_reason = None
        self._status.paused = False
        self.event("resumed", kind="decision")
        self._publish_details()

    # --- abort --------------------------------------------------------------------------------------------------

    @workflow.signal(name="abort", description="Stop, send traffic back to the stable version, and fail")
    def abort_signal(self, request: AbortRequest | None = None) -> None:
        if self.finished or self._abort_reason is not None:
            return
        self._do_abort(request or AbortRequest())

    @workflow.update(name="abort", description="Stop, send traffic back to the stable version, and fail")
    def abort_update(self, request: AbortRequest | None = None) -> DeploymentStatus:
        self._do_abort(request or AbortRequest())
        return self._status

    @abort_update.validator
    def _validate_abort(self, request: AbortRequest | None = None) -> None:
        self._refuse_if_finished("abort")
        if self._abort_reason is not None:
            raise ValueError(f"already aborting ({self._abort_reason})")
        if self._status.phase == Phase.ROLLING_BACK:
            raise ValueError("already rolling back")

    def _do_abort(self, request: AbortRequest) -> None:
        self._abort_reason = request.reason
        self.event(f"abort requested: {request.reason}", kind="decision")
        self._publish_details()

    # --- promote / approve --------------------------------------------------------------------------------------

    @workflow.signal(name="promote", description="Open the gate that waits (or skip all steps with full=true)")
    def promote_signal(self, request: PromoteRequest | None = None) -> None:
        if not self._promotable():
            return
        self._do_promote(request or PromoteRequest())

    @workflow.update(name="promote", description="Open the gate that waits (or skip all steps with full=true)")
    def promote_update(self, request: PromoteRequest | None = None) -> DeploymentStatus:
        self._do_promote(request or PromoteRequest())
        return self._status

    @promote_update.validator
    def _validate_promote(self, request: PromoteRequest | None = None) -> None:
        self._refuse_if_finished("promote")
        if self._abort_reason is not None:
            raise ValueError(f"cannot promote: the deployment is being aborted ({self._abort_reason})")
        if not self._promotable():
            raise ValueError(f"nothing waits for promotion (phase {self._status.phase.value}, step {self._step()})")

    def _promotable(self) -> bool:
        return not self.finished and (self._gate_open or self._wait_open or self._standby_open)

    def _do_promote(self, request: PromoteRequest) -> None:
        self._promotion = request
        self.event("promoted" + (" fully" if request.full else ""), kind="decision")

    @workflow.signal(name="approve", description="Approve a manual promotion gate")
    def approve_signal(self, request: ApproveRequest | None = None) -> None:
        if not self._gate_open or self.finished:
            return
        self._do_approve(request or ApproveRequest())

    @workflow.update(name="approve", description="Approve a manual promotion gate; answers with the status")
    def approve_update(self, request: ApproveRequest | None = None) -> DeploymentStatus:
        self._do_approve(request or ApproveRequest())
        return self._status

    @approve_update.validator
    def _validate_approve(self, request: ApproveRequest | None = None) -> None:
        self._refuse_if_finished("approve")
        if not self._gate_open:
            raise ValueError(f"no approval is pending (phase {self._status.phase.value}, step {self._step()})")

    def _do_approve(self, request: ApproveRequest) -> None:
        self._promotion = request
        comment = f": {request.comment}" if request.comment else ""
        self.event(f"approved by {request.approver}{comment}", kind="decision")
        self._status.details["approved_by"] = request.approver

    # --- rollback -----------------------------------------------------------------------------------------------

    @workflow.signal(name="rollback", description="During standby: send traffic back to the previous version now")
    def rollback_signal(self, request: RollbackRequest | None = None) -> None:
        if not self._standby_open or self._rollback_reason is not None:
            return
        self._do_rollback(request or RollbackRequest())

    @workflow.update(name="rollback", description="During standby: send traffic back to the previous version now")
    def rollback_update(self, request: RollbackRequest | None = None) -> DeploymentStatus:
        self._do_rollback(request or RollbackRequest())
        return self._status

    @rollback_update.validator
    def _validate_rollback(self, request: RollbackRequest | None = None) -> None:
        self._refuse_if_finished("roll back")
        if self._rollback_reason is not None:
            raise ValueError(f"already rolling back ({self._rollback_reason})")
        if not self._standby_open:
            raise ValueError(
                f"rollback is possible only while the previous version is on standby (phase {self._status.phase.value}"
                "); before the switch use abort"
            )

    def _do_rollback(self, request: RollbackRequest) -> None:
        self._rollback_reason = request.reason
        self.event(f"rollback requested: {request.reason}", kind="decision")

    def _refuse_if_finished(self, what: str) -> None:
        if self.finished:
            raise ValueError(f"cannot {what}: the deployment has finished ({self._status.phase.value})")

    # --- helpers the strategies call ----------------------------------------------------------------------------

    def set_phase(
        self,
        phase: Phase,
        message: str = "",
        *,
        step: str | None = None,
        step_index: int | None = None,
        step_count: int | None = None,
        record: bool = True,
    ) -> None:
        self._refresh_status()
        changed = phase != self._status.phase
        previous, self._status.phase = self._status.phase, phase
        self._status.message = message
        if step is not None:
            self._status.step = step
        if step_index is not None:
            self._status.step_index = step_index
        if step_count is not None:
            self._status.step_count = step_count
        if phase in FINAL_PHASES and self._status.finished_at is None:
            self._status.finished_at = workflow.now()
        if changed:
            release_metrics.phase_changed(self, previous)
        if message and record:
            kind = "error" if phase in (Phase.FAILED, Phase.ROLLED_BACK) else "info"
            self.event(message if not changed else f"{phase.value}: {message}", kind=kind)
        self._publish(phase_changed=changed)
        if changed:
            self._on_phase(phase, message)

    def _refresh_status(self) -> None:
        """Called before every published status. A hook for facts a workflow keeps outside the status (a train's
        waves); must not block, raise or issue commands."""

    def _on_phase(self, phase: Phase, message: str) -> None:
        """Called on every phase change. A hook for notifications; must not block or raise."""

    def set_versions(self, version: str, previous: str | None) -> None:
        self._status.version = version
        self._status.previous_version = previous
        self._publish(phase_changed=False)

    def event(self, message: str, kind: str = "info") -> None:
        self._status.events.append(Event(time=workflow.now(), message=message, kind=kind))
        if len(self._status.events) > MAX_EVENTS:
            del self._status.events[: len(self._status.events) - MAX_EVENTS]
        workflow.logger.info("%s: %s", self._status.app, message)

    async def finish(self, phase: Phase, message: str) -> DeploymentStatus:
        """Records the final phase and returns the status once every handler has finished."""
        self.set_phase(phase, message)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    # --- failing before anything changed -------------------------------------------------------------------------

    def check_request(self, request: pydantic.BaseModel) -> None:
        """Validates a request again before anything in a cluster changes: the converter validated the payload, but
        a request built in code (a test, a client bypassing the models) may not have been. Fails naming the field."""
        try:
            type(request).model_validate(request.model_dump(mode="json", exclude_unset=True))
        except pydantic.ValidationError as err:
            error = invalid_spec(describe_validation_error(err))
            self.set_phase(Phase.FAILED, error.message)
            raise error from err

    def warn_unless_locked(self) -> None:
        """The workflow ID is the lock that keeps two releases of one app apart: say so when a run was started under
        another ID."""
        expected_id = self._target.workflow_id()
        if workflow.info().workflow_id != expected_id:
            self.event(
                f"workflow id {workflow.info().workflow_id!r} is not {expected_id!r}: another run could deploy "
                "the same app at the same time",
                kind="warning",
            )

    def fail_without_rollback(self, err: Failure, outcome: str = UNCHANGED) -> NoReturn:
        """Ends a run that failed (or was aborted or cancelled) before it changed anything: the failure says what went
        wrong, with the activity's own type (a missing namespace, an unknown cluster, a failed hook), and `outcome`."""
        message = f"{explain(err)}; {outcome}"
        self.set_phase(Phase.FAILED, message)
        if is_cancellation(err):
            raise err
        raise failure(message, error_type(err, ErrorType.DEPLOYMENT_FAILED)) from err

    def fail_rollback(self, message: str, err: BaseException) -> NoReturn:
        """Ends a run whose rollback itself failed: `message` says where the cluster stands and what a person must
        check."""
        self.set_phase(Phase.FAILED, message)
        raise rollback_failed(message) from err

    # --- internals ----------------------------------------------------------------------------------------------

    def _step(self) -> str:
        return self._status.step or "-"

    def _publish(self, *, phase_changed: bool) -> None:
        workflow.upsert_search_attributes(search_attribute_updates(self._status, identity=not self._published_identity))
        self._published_identity = True
        self._publish_details()

    def _publish_details(self) -> None:
        workflow.set_current_details(render_details(self._status, self._abort_reason))
