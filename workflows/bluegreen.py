"""Blue-green deployment, as a runbook:

1. Check the request.
2. Read what runs now: which colour the active Service points at, and its version.
3. Deploy the new version to the idle colour (`<app>-blue` or `<app>-green`) and wait until every pod is ready.
4. Point the preview Service at it and run the smoke tests through the preview Service.
5. Wait at the promotion gate (at once, after a delay, or for a person).
6. Switch the active Service's selector to the new colour: all traffic moves in one step, to pods already ready.
7. Keep the old colour running for the standby time; a rollback meanwhile switches straight back.
8. Scale the old colour to zero.

Any failure, an abort, or a cancellation before step 8 leaves (or puts back) traffic on the old colour, scales the
new colour to zero, and fails the run with the reason. Terminating the run skips all of this.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pydantic
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.services import SwitchResult, SwitchServiceInput, switch_service
    from activities.smoke import SmokeReport, SmokeTestsInput, run_smoke_tests
    from activities.workloads import (
        AppliedWorkload,
        ApplyWorkloadInput,
        HealthReport,
        ReadWorkloadsInput,
        ScaleInput,
        WaitHealthyInput,
        WorkloadsSnapshot,
        apply_workload,
        read_workloads,
        scale_workload,
        wait_healthy,
    )
    from deployflow.errors import ErrorType
    from deployflow.spec.bluegreen import COLORS, BlueGreenRequest
    from deployflow.spec.hooks import HookPoint
    from deployflow.status import DeploymentStatus, Phase

    # Label names the activities' inputs carry; the module holds the Kubernetes client code behind them.
    from deployflow.workloads import APP_LABEL, COLOR_LABEL

from workflows.bluegreen_plan import Plan, gate_message, plan_release, smoke_budget
from workflows.control import DeploymentControl
from workflows.decisions import (
    BlueGreenState,
    BlueGreenUndo,
    bluegreen_rolls_back,
    bluegreen_switched,
    bluegreen_undo,
)
from workflows.failure import explain, failure, roll_back_and_end, rolled_back, shielded
from workflows.hooks import run_hooks
from workflows.notify import Notifications
from workflows.options import HEARTBEAT, QUICK, READS, activity

STEPS = ["validate", "snapshot", "deploy", "health", "preview", "smoke", "promotion", "switch", "standby", "finish"]

@workflow.defn(name="BlueGreenDeployment", failure_exception_types=[pydantic.ValidationError])
class BlueGreenDeployment(DeploymentControl):
    @workflow.init
    def __init__(self, request: BlueGreenRequest) -> None:
        self._init_control(
            strategy="blue-green", target=request.target, version=request.version, step_count=len(STEPS)
        )
        self._request = request
        self._notifications = Notifications(request.notifications, request.target, "blue-green", self.event)
        self._plan: Plan | None = None
        self._state = BlueGreenState.PLANNED
        self._undone_from: BlueGreenState | None = None  # where the release stood when its rollback began

    @workflow.run
    async def run(self, request: BlueGreenRequest) -> DeploymentStatus:
        return await self._notifications.around(self._run(request))

    async def _run(self, request: BlueGreenRequest) -> DeploymentStatus:
        self._begin("validate", "checking the request")
        self.check_request(request)
        self.warn_unless_locked()

        try:
            self._begin("snapshot", "reading the live state")
            plan = self._plan = await self._make_plan(request)
            # A failing pre-deploy hook fails the run: nothing has changed yet, so there is nothing to roll back.
            await self._hooks(request, HookPoint.PRE_DEPLOY)
        except (Exception, asyncio.CancelledError) as err:
            self.fail_without_rollback(err)

        try:
            await self._release(request, plan)
        except (Exception, asyncio.CancelledError) as err:
            if not bluegreen_rolls_back(self._state):
                raise
            await roll_back_and_end(
                err, lambda reason: self._roll_back(request, plan, reason),
                lambda reason: self._rolled_back_error(plan, reason),
            )

        return await self.finish(
            Phase.SUCCEEDED, f"{plan.new_color} ({request.version}) serves {request.active_service_name}"
        )

    async def _release(self, request: BlueGreenRequest, plan: Plan) -> None:
        """Steps 3 to 8. Raising anywhere here before the commit rolls back."""
        app = request.target.app
        new = plan.deployment(app, plan.new_color)
        await self.checkpoint()

        self._state = BlueGreenState.DEPLOYED
        self._begin("deploy", f"deploying {request.version} to {plan.new_color} ({new})")
        applied: AppliedWorkload = await self.interruptible(
            activity(
                apply_workload,
                ApplyWorkloadInput(target=request.target, name=new, workload=request.workload,
                                   replicas=request.workload.replicas, selector=self._selector(plan.new_color)),
                summary=f"apply {new}",
            )
        )

        self._begin("health", f"waiting for {request.workload.replicas} ready pods of {new}")
        health: HealthReport = await self.interruptible(
            activity(
                wait_healthy,
                WaitHealthyInput(target=request.target, name=new, replicas=request.workload.replicas,
                                 image=applied.image, pod_selector=self._selector(plan.new_color),
                                 timeout=request.workload.health_timeout),
                timeout=request.workload.health_timeout + QUICK,
                heartbeat=HEARTBEAT,
                summary=f"wait for {new} to be healthy",
            )
        )
        self.event(f"{new} healthy: {health.summary}")
        await self.checkpoint()

        self._begin("preview", f"pointing {request.preview_service_name} at {plan.new_color}")
        await self._switch(request, request.preview_service_name, plan.new_color)
        self._state = BlueGreenState.PREVIEWED
        await self.checkpoint()

        if request.smoke_tests:
            self._begin("smoke", f"{len(request.smoke_tests)} smoke test(s) through {request.preview_service_name}")
            report: SmokeReport = await self.interruptible(
                activity(
                    run_smoke_tests,
                    SmokeTestsInput(
                        target=request.target,
                        service=request.preview_service_name,
                        port=request.workload.service_port,
                        tests=request.smoke_tests,
                    ),
                    timeout=smoke_budget(request),
                    heartbeat=max(HEARTBEAT, max(t.timeout for t in request.smoke_tests) * 2),
                    # Cancelled like a cluster change: no check request is in flight once the rollback starts.
                    summary=f"smoke tests via {request.preview_service_name}",
                )
            )
            for result in report.results:
                self.event(result.message, kind="info" if result.passed else "error")
            self._status.details["smoke_tests"] = "passed" if report.passed else "failed"
            if not report.passed:
                raise failure(report.failure, ErrorType.SMOKE_TEST_FAILED)
            await self.checkpoint()

        self._begin("promotion", gate_message(request))
        await self._promotion_gate(request)
        await self.checkpoint()

        await self._hooks(request, HookPoint.PRE_PROMOTE)
        self._begin("switch", f"switching {request.active_service_name} to {plan.new_color}")
        await self._switch(request, request.active_service_name, plan.new_color)
        self._state = BlueGreenState.SWITCHED
        self._status.details["active_color"] = plan.new_color
        self._status.weights = {plan.new_color: 100, **({plan.old_color: 0} if plan.old_color else {})}
        self.event(f"traffic switched to {plan.new_color} ({request.version})", kind="decision")
        # Post-deploy checks run while the old colour is still up, so their failure switches straight back.
        await self._hooks(request, HookPoint.POST_DEPLOY)

        if plan.old_color is not None and plan.old_replicas > 0 and request.standby > timedelta(0):
            self._state = BlueGreenState.STANDBY
            self._begin("standby", f"{plan.old_color} ({plan.old_version}) kept for rollback for {request.standby}")
            outcome = await self.standby(
                request.standby, message=f"{plan.old_color} ({plan.old_version}) on standby for {request.standby}"
            )
            if outcome == "rollback":
                reason = self.rollback_reason or "rollback requested"
                await shielded(self._roll_back(request, plan, reason))
                raise self._rolled_back_error(plan, reason)
            if outcome == "promoted":
                self.event("standby ended early by promote", kind="decision")

        self._state = BlueGreenState.COMMITTED
        self._begin("finish", "retiring the old colour")
        if plan.old_color is not None:
            old = plan.deployment(app, plan.old_color)
            await self._scale(request, old, 0)
            self.event(f"{old} scaled to zero")
        elif plan.adopting:
            self.event(
                f"the pods {request.active_service_name} selected before ({plan.active_selector}) are not managed "
                "by deployflow and keep running: retire them when you no longer need a way back",
                kind="warning",
            )

    # --- the rollback -------------------------------------------------------------------------------------------

    async def _roll_back(self, request: BlueGreenRequest, plan: Plan, reason: str) -> None:
        """Puts traffic on the old colour (if any), points preview there too, scales the new colour to zero."""
        self.set_phase(Phase.ROLLING_BACK, f"rolling back: {reason}")
        new = plan.deployment(request.target.app, plan.new_color)
        self._undone_from = self._state
        undo = bluegreen_undo(
            self._state,
            has_old_color=plan.old_color is not None,
            active_service_existed=plan.active_service_existed,
            adopting=plan.adopting,
        )
        try:
            for step in undo:
                await self._undo(request, plan, step)
        except ActivityError as err:
            self.fail_rollback(
                f"rollback failed ({explain(err)}) after: {reason}; the cluster needs a person: "
                f"check {request.active_service_name}'s selector and {new}'s replicas", err,
            )
        try:
            await self._hooks(request, HookPoint.ON_ROLLBACK, abortable=False)
        except (ActivityError, ApplicationError) as err:
            self.event(f"on_rollback hook: {explain(err)}", kind="warning")
        if plan.old_color is not None:
            self._status.details["active_color"] = plan.old_color
            self._status.weights = {plan.old_color: 100, plan.new_color: 0}
        self._state = BlueGreenState.ROLLED_BACK
        self.set_phase(
            Phase.ROLLED_BACK,
            f"rolled back: {reason}; {self._traffic_now(plan)}; {new} scaled to zero",
        )

    async def _undo(self, request: BlueGreenRequest, plan: Plan, step: BlueGreenUndo) -> None:
        if step == BlueGreenUndo.SCALE_NEW_TO_ZERO:
            await self._scale(request, plan.deployment(request.target.app, plan.new_color), 0)
        elif step == BlueGreenUndo.ACTIVE_TO_ADOPTED:
            await self._switch(request, request.active_service_name, selector=plan.active_selector)
        else:
            assert plan.old_color is not None  # bluegreen_undo moves Services to the old colour only when there is one
            if step == BlueGreenUndo.ACTIVE_TO_OLD:
                await self._switch(request, request.active_service_name, plan.old_color)
            else:
                await self._switch(request, request.preview_service_name, plan.old_color, create=False)

    def _rolled_back_error(self, plan: Plan, reason: str) -> ApplicationError:
        return rolled_back(
            f"rolled back: {reason}; {self._traffic_now(plan)}",
            {"reason": reason, "old_color": plan.old_color, "new_color": plan.new_color},
        )

    def _traffic_now(self, plan: Plan) -> str:
        if plan.old_color is None and not plan.adopting:
            return "nothing was serving before, so nothing serves now"
        verb = "is back on" if bluegreen_switched(self._undone_from or self._state) else "stays on"
        return f"traffic {verb} {plan.where_traffic_stays()}"

    # --- steps --------------------------------------------------------------------------------------------------

    async def _make_plan(self, request: BlueGreenRequest) -> Plan:
        app = request.target.app
        names = [f"{app}-{color}" for color in COLORS]
        live: WorkloadsSnapshot = await activity(
            read_workloads,
            ReadWorkloadsInput(
                target=request.target,
                deployments=names,
                services=[request.active_service_name, request.preview_service_name],
            ),
            summary="read live state",
            cancellation=READS,
        )
        plan, warnings = plan_release(request, live)
        for warning in warnings:
            self.event(warning, kind="warning")
        new_color = plan.new_color
        self.set_versions(request.version, plan.old_version)
        self._status.details.update(
            {
                "active_color": plan.old_color or "none",
                "new_color": new_color,
                "active_service": request.active_service_name,
                "preview_service": request.preview_service_name,
            }
        )
        if plan.old_color:
            self._status.weights = {plan.old_color: 100, new_color: 0}
        self.event(
            f"live: {plan.where_traffic_stays()}; deploying {request.version} to {new_color}"
            if plan.old_color
            else f"first deployment of {app}: deploying {request.version} to {new_color}"
        )
        return plan

    async def _hooks(self, request: BlueGreenRequest, point: HookPoint, *, abortable: bool = True) -> None:
        """The hooks of one point; on_rollback's are not abortable: the abort is what they follow."""
        if not request.hooks.at(point):
            return  # no command at all, so runs recorded without hooks replay unchanged
        running = run_hooks(point, request.hooks, request.target, version=request.version, strategy="blue-green",
                            previous_version=self._plan.old_version if self._plan else None, on_event=self.event)
        await (self.interruptible(running) if abortable else running)

    def _on_phase(self, phase: Phase, message: str) -> None:
        self._notifications.on_phase(phase, message, self._status)

    async def _promotion_gate(self, request: BlueGreenRequest) -> None:
        gate = request.promotion
        if gate.mode == "auto":
            return
        if gate.mode == "after":
            assert gate.delay is not None
            early = await self.wait(gate.delay)
            self.event("promoted before the delay ended" if early else f"promotion delay {gate.delay} passed")
            return
        promoted = await self.wait_for_promotion(
            gate.timeout, message=f"{request.version} is ready on {request.preview_service_name}: promote or abort"
        )
        if not promoted:
            raise failure(f"nobody promoted within {gate.timeout}", ErrorType.PROMOTION_TIMEOUT)

    async def _switch(
        self,
        request: BlueGreenRequest,
        service: str,
        color: str = "",
        *,
        create: bool = True,
        selector: dict[str, str] | None = None,
    ) -> None:
        selector = selector or self._selector(color)
        result: SwitchResult = await activity(
            switch_service,
            SwitchServiceInput(
                target=request.target,
                service=service,
                selector=selector,
                create_if_missing=create,
                port=request.workload.service_port,
                target_port=request.workload.port,
            ),
            summary=f"{service} -> {color or selector}",
        )
        if result.created:
            self.event(f"created Service {service} selecting {color or selector}")

    async def _scale(self, request: BlueGreenRequest, name: str, replicas: int) -> None:
        await activity(
            scale_workload,
            ScaleInput(target=request.target, name=name, replicas=replicas),
            summary=f"scale {name} to {replicas}",
        )

    def _selector(self, color: str) -> dict[str, str]:
        return {APP_LABEL: self._request.target.app, COLOR_LABEL: color}

    def _begin(self, step: str, message: str) -> None:
        phase = self._status.phase if self._status.phase != Phase.PENDING else Phase.PROGRESSING
        if phase in (Phase.WAITING_PROMOTION, Phase.PAUSED, Phase.STANDBY):
            phase = Phase.PROGRESSING
        self.set_phase(phase, message, step=step, step_index=STEPS.index(step) + 1)
