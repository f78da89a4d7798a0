"""RollingDeployment: replace an app's pods batch by batch, checking each batch before the next.

The runbook
-----------
1. Record the workload as it runs now (template, replicas, strategy): the revision a rollback returns to.
2. pre_deploy hooks (a migration Job, a confirmation). A failure ends here: nothing has changed.
3. Optional approval before the first batch.
4. For each batch: hold here while paused (nothing moves between batches), run pre_promote hooks before the
   last one, move the batch's pods to the new version (never more than maxUnavailable out of service, never
   more than maxSurge extra), and gate on health: every new pod ready and available, none crash-looping or
   failing to pull. Then the optional analysis, bake time and approval.
5. Hand the workload back to Kubernetes (original strategy, unpaused), notify "promoted", run post_deploy hooks.
6. Any failure after step 3, an abort, or a cancel: roll back to the recorded revision (at once or batch by
   batch), run on_rollback hooks, and fail with the reason. How pods move in batches, and why "between batches"
   means "no pod is changing", is explained in `activities/rolling.py`.

In `native` mode step 4 is one step: Kubernetes' own RollingUpdate with the chosen maxSurge/maxUnavailable,
watched to the end; a pause pauses the Deployment itself (`spec.paused`) wherever its rollout stands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pydantic
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.rolling import (
        BeginInput,
        FinishInput,
        MoveInput,
        NativeInput,
        PauseInput,
        PrepareInput,
        PrepareResult,
        begin_rolling,
        finish_rolling,
        move_pods,
        native_rollout,
        prepare_rolling,
        set_paused,
    )
    from deployflow.errors import ErrorType
    from deployflow.spec.analysis import Analysis
    from deployflow.spec.hooks import HookPoint
    from deployflow.spec.notify import NotifyEvent
    from deployflow.spec.rolling import RollingRequest
    from deployflow.status import DeploymentStatus, Phase

from workflows.analysis import AnalysisRunner, gate
from workflows.control import DeploymentControl
from workflows.decisions import RollingState, rollback_plan, rolling_rolls_back
from workflows.failure import explain, failure, roll_back_and_end, rolled_back
from workflows.hooks import run_hooks
from workflows.notify import Notifications
from workflows.options import HEARTBEAT, QUICK, READS, activity


@workflow.defn(name="RollingDeployment", failure_exception_types=[pydantic.ValidationError])
class RollingDeployment(DeploymentControl):
    @workflow.init
    def __init__(self, request: RollingRequest) -> None:
        self._init_control(strategy="rolling", target=request.target, version=request.resolved_version or "")
        self._notifications = Notifications(request.notifications, request.target, "rolling", on_event=self.event)
        self._attempted = 0  # most pods ever asked to run the new version: what a rollback must undo
        self._gate_at: int | None = None
        self._state = RollingState.RECORDED

    def _on_phase(self, phase: Phase, message: str) -> None:
        self._notifications.on_phase(phase, message, self.status)

    @workflow.run
    async def run(self, request: RollingRequest) -> DeploymentStatus:
        return await self._notifications.around(self._run(request))

    # ---- the runbook -------------------------------------------------------------------------------------------

    async def _run(self, r: RollingRequest) -> DeploymentStatus:
        version = r.resolved_version or ""
        self.set_phase(Phase.PROGRESSING, f"rolling {r.kind} {r.name} to {version}", step="prepare")
        self.check_request(r)
        try:
            prep = await self.interruptible(
                activity(
                    prepare_rolling, PrepareInput(request=r), summary=f"record {r.kind} {r.name}", cancellation=READS
                )
            )
        except (Exception, asyncio.CancelledError) as err:
            self.fail_without_rollback(err)
        rec = prep.recorded
        n = rec.replicas
        self.set_versions(version, rec.version)
        plan = [n] if r.mode == "native" else r.batch_plan(n)
        surge, unavailable = r.surge_and_unavailable(n)
        self.status.details.update(
            kind=r.kind, workload=r.name, replicas=n, mode=r.mode, batches=len(plan),
            max_surge=surge, max_unavailable=unavailable, previous_revision=rec.revision,
        )
        self.status.step_count = len(plan)
        # An approval asked for after the last batch would come too late to stop anything: hold before it instead.
        self._gate_at = min(r.approval.after_batch, len(plan) - 1) if r.approval is not None else None
        if prep.up_to_date:
            return await self.finish(Phase.SUCCEEDED, f"{r.kind} {r.name} already runs {version}: nothing to do")

        # Nothing has changed yet: a failure or abort from here to the first batch leaves the cluster as it was.
        try:
            await self.checkpoint()
            await self.interruptible(self._hooks(r, HookPoint.PRE_DEPLOY))
            if self._gate_at == 0:
                await self._approval(r, "before the first batch")
        except (Exception, asyncio.CancelledError) as err:
            self.fail_without_rollback(err)

        self._state = RollingState.MOVING
        try:
            if r.mode == "native":
                await self._native(r, prep)
            else:
                await self._batches(r, prep, plan, surge, unavailable)
            self._state = RollingState.HANDED_BACK
            self.status.weights = {"stable": 0, "new": 100}
            self._notifications.send(NotifyEvent.PROMOTED, self.status, f"all {n} pods run {version}")
            self.set_phase(Phase.PROGRESSING, f"all {n} pods run {version}; post-deploy checks", step="post-deploy")
            await self.interruptible(self._hooks(r, HookPoint.POST_DEPLOY))
        except (Exception, asyncio.CancelledError) as err:
            if not rolling_rolls_back(self._state):
                raise
            # Cancel (the UI's button, `temporal workflow cancel`) rolls back too; the run then ends CANCELED.
            await roll_back_and_end(
                err, lambda reason: self._roll_back(r, prep, reason),
                lambda reason: rolled_back(f"rolled back to {rec.version or rec.revision}: {reason}"),
            )
        return await self.finish(Phase.SUCCEEDED, f"{r.kind} {r.name} runs {version} on all {n} pods")

    async def _batches(self, r: RollingRequest, prep: PrepareResult, plan: list[int], surge: int, unavail: int) -> None:
        n = prep.recorded.replicas
        version = r.resolved_version or ""
        self.set_phase(Phase.PROGRESSING, f"{len(plan)} batches of up to {plan[0]} pods", step="begin")
        await self._activity(
            begin_rolling,
            BeginInput(workload=prep.workload, template=prep.template, replicas=n, recorded=prep.recorded),
            summary=f"freeze {r.kind} {r.name} at its pods, target {version}",
        )
        for i, count in enumerate(plan, start=1):
            await self.checkpoint()  # a pause holds here: the last batch is complete and the next has not begun
            if i == len(plan):
                await self.interruptible(self._hooks(r, HookPoint.PRE_PROMOTE))
            label = f"batch {i}/{len(plan)}"
            self.set_phase(
                Phase.PROGRESSING, f"{label}: {count}/{n} pods to {version}", step=label, step_index=i,
                step_count=len(plan),
            )
            self._attempted = max(self._attempted, count)
            await self._activity(
                move_pods,
                MoveInput(
                    workload=prep.workload, count=count, replicas=n, surge=surge, unavailable=unavail,
                    timeout_seconds=r.batch_timeout.total_seconds(), label=label,
                ),
                summary=f"{label}: {count}/{n} pods to {version}",
                timeout=r.batch_timeout + QUICK,
            )
            share = round(100 * count / n) if n else 100
            self.status.weights = {"stable": 100 - share, "new": share}
            self.status.details["updated_replicas"] = count
            self.event(f"{label} healthy: {count}/{n} pods run {version}, all ready")
            if r.analysis is not None:
                await self._analyse(r, r.analysis, label)
            if i < len(plan):
                if r.bake > timedelta(0):
                    self.set_phase(Phase.PROGRESSING, f"{label}: baking for {r.bake}", step=label)
                    await self.wait(r.bake)
                if self._gate_at == i:
                    await self._approval(r, f"after {label}")
        self.set_phase(Phase.PROGRESSING, f"handing {r.kind} {r.name} back to Kubernetes", step="finish")
        await self._activity(
            finish_rolling,
            FinishInput(workload=prep.workload, recorded=prep.recorded, replicas=n),
            summary=f"unfreeze {r.kind} {r.name}",
        )

    async def _native(self, r: RollingRequest, prep: PrepareResult) -> None:
        n = prep.recorded.replicas
        surge, unavailable = r.surge_and_unavailable(n)
        self.set_phase(
            Phase.PROGRESSING, f"Kubernetes RollingUpdate (maxSurge {surge}, maxUnavailable {unavailable})",
            step="rollout", step_index=1, step_count=1,
        )
        await self.interruptible(self._hooks(r, HookPoint.PRE_PROMOTE))
        self._attempted = n
        native = NativeInput(
            workload=prep.workload, template=prep.template, replicas=n,
            strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            restore_strategy=prep.recorded.strategy, timeout_seconds=r.batch_timeout.total_seconds(),
        )
        # No batches to stop between: a pause pauses the Deployment itself (spec.paused), mid-rollout, and resume
        # sets the same template again and unpauses it.
        while True:
            rollout = activity(
                native_rollout, native, timeout=r.batch_timeout + QUICK, heartbeat=HEARTBEAT,
                summary=f"RollingUpdate of {r.kind} {r.name}",
            )
            if await self.interruptible(self._unless_paused(rollout)):
                return
            await self._activity(
                set_paused, PauseInput(workload=prep.workload, paused=True), summary=f"pause {r.kind} {r.name}"
            )
            self.event(f"{r.kind} {r.name} paused mid-rollout (spec.paused)", kind="decision")
            await self.checkpoint()

    async def _unless_paused(self, step: Awaitable[Any]) -> bool:
        """True when `step` completed; False when a pause came first, once the step has stopped."""
        task = await self._unless(step, lambda: self.status.paused)
        if task is None:
            return False
        task.result()
        return True

    # ---- rollback -------------------------------------------------------------------------------------------------

    async def _roll_back(self, r: RollingRequest, prep: PrepareResult, reason: str) -> None:
        rec = prep.recorded
        n = rec.replicas
        back_to = rec.version or rec.revision or "the recorded revision"
        self.set_phase(Phase.ROLLING_BACK, f"rolling back to {back_to}: {reason}", step="rollback")
        try:
            if r.mode == "native":
                await self._activity(
                    native_rollout,
                    NativeInput(
                        workload=prep.workload, template=rec.template, replicas=n, strategy=rec.strategy or {},
                        restore_strategy=None, timeout_seconds=r.batch_timeout.total_seconds(),
                    ),
                    summary=f"restore {r.kind} {r.name}", timeout=r.batch_timeout + QUICK,
                    abortable=False,
                )
            else:
                await self._activity(
                    begin_rolling,
                    BeginInput(workload=prep.workload, template=rec.template, replicas=n, recorded=rec),
                    summary=f"target {r.kind} {r.name} back at {back_to}",
                    abortable=False,
                )
                plan = rollback_plan(r, n, self._attempted)
                for j, (count, surge, unavailable) in enumerate(plan, start=1):
                    label = f"rollback {j}/{len(plan)}"
                    self.set_phase(Phase.ROLLING_BACK, f"{label}: {count} pods back to {back_to}", step=label)
                    await self._activity(
                        move_pods,
                        MoveInput(
                            workload=prep.workload, count=count, replicas=n, surge=surge, unavailable=unavailable,
                            timeout_seconds=r.batch_timeout.total_seconds(), label=label,
                        ),
                        summary=label, timeout=r.batch_timeout + QUICK, abortable=False,
                    )
                await self._activity(
                    finish_rolling,
                    FinishInput(workload=prep.workload, recorded=rec, replicas=n),
                    summary=f"unfreeze {r.kind} {r.name}",
                    abortable=False,
                )
        except (ActivityError, ApplicationError) as err:
            self.fail_rollback(
                f"rollback to {back_to} failed: {explain(err)}; {r.kind} {r.target.namespace}/{r.name} needs a hand "
                f"(the rollout was: {reason})", err,
            )
        self.status.weights = {"stable": 100, "new": 0}
        self.status.details["updated_replicas"] = 0
        self._state = RollingState.ROLLED_BACK
        try:
            await self._hooks(r, HookPoint.ON_ROLLBACK)
        except (ApplicationError, ActivityError) as err:
            self.event(f"{explain(err)} (the rollback itself completed)", kind="warning")
        self.set_phase(Phase.ROLLED_BACK, f"all {n} pods run {back_to} again: {reason}")

    # ---- pieces ---------------------------------------------------------------------------------------------------

    async def _activity(
        self, fn: Any, arg: Any, *, summary: str, timeout: timedelta = timedelta(minutes=5), abortable: bool = True
    ) -> Any:
        """A cluster-changing activity: interrupted by abort (except the rollback's own steps), and stopped
        cleanly before any rollback starts."""
        step = activity(fn, arg, summary=summary, timeout=timeout, heartbeat=HEARTBEAT)
        return await (self.interruptible(step) if abortable else step)

    async def _hooks(self, r: RollingRequest, point: HookPoint) -> None:
        if not r.hooks.at(point):
            return
        before = (self.status.phase, self.status.message)
        self.set_phase(self.status.phase, f"{point.value} hooks", record=False)
        await run_hooks(
            point, r.hooks, r.target, version=r.resolved_version or "", previous_version=self.status.previous_version,
            strategy="rolling", on_event=self.event,
        )
        self.set_phase(before[0], before[1], record=False)

    async def _approval(self, r: RollingRequest, where: str) -> None:
        assert r.approval is not None
        approved = await self.wait_for_promotion(r.approval.timeout, message=f"waiting for approval {where}")
        if not approved:
            raise failure(f"nobody approved {where} within {r.approval.timeout}", ErrorType.APPROVAL_TIMED_OUT)
        who = self.status.details.get("approved_by")
        self.event(f"approval {where} granted" + (f" by {who}" if who else " (promote)"), kind="decision")

    async def _analyse(self, r: RollingRequest, analysis: Analysis, label: str) -> None:
        """The batch's analysis; the worst metric decides (see workflows.analysis)."""
        self.set_phase(Phase.PROGRESSING, f"{label}: analysis", step=label)
        # Since this patch an inconclusive analysis waits for a person, as in a canary, and metrics are measured
        # side by side. Runs that began before measured them one after another and failed on inconclusive: they
        # keep doing so, as their histories recorded.
        unified = workflow.patched("rolling-analysis-runner")
        runner = AnalysisRunner(self, r.target, r.resolved_version or "", label=label, legacy=not unified)
        verdict = await (self.interruptible(runner.run(analysis)) if unified else runner.run(analysis))
        await gate(self, verdict, on_inconclusive=analysis.on_inconclusive if unified else "fail", where=label)

