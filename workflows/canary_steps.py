"""The canary's building blocks below its runbook (workflows.canary): the rollbacks, the first deployment, the
hooks, and the requests its activities take."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.traffic import (
        RoutingRequest,
        TrackInfo,
        TrackRequest,
        WeightRequest,
        deploy_track,
        prepare_routing,
        rollback_traffic,
    )
    from deployflow.spec.canary import CanaryRequest
    from deployflow.spec.hooks import HookPoint
    from deployflow.status import DeploymentStatus, Phase, traffic_text

from workflows.control import DeploymentControl
from workflows.decisions import CanaryState
from workflows.failure import Aborted, explain, roll_back_and_end, rolled_back
from workflows.hooks import run_hooks
from workflows.notify import Notifications
from workflows.options import HEARTBEAT, QUICK, RETRY, activity


class CanarySteps(DeploymentControl):
    """The state `CanaryDeployment.__init__` sets, and the steps that use it."""

    _weight: int  # the requested canary weight now
    _state: CanaryState
    _background_failure: str | None  # set when background analysis failed: it interrupts as an abort does
    _notifications: Notifications

    # --- rollback -------------------------------------------------------------------------------------------------

    async def _roll_back(self, request: CanaryRequest, previous: TrackInfo, reason: str) -> None:
        """Weight to 0 first (the fast part), then stable back to full size and the canary to zero."""
        self.set_phase(Phase.ROLLING_BACK, f"rolling back {reason}")
        try:
            await self._activity(
                rollback_traffic, self._weight_request(request, 0), summary="all traffic back to stable",
                timeout=request.workload.health_timeout + QUICK,
            )
        except ActivityError as err:
            self.fail_rollback(
                f"rollback failed ({self._explain(err)}) after: {reason}; the cluster needs a person: check the "
                f"{request.traffic.router} routing of {request.target.app} and {request.target.app}-canary's replicas",
                err,
            )
        self._set_weights(0, 0.0)
        self._state = CanaryState.ROLLED_BACK
        await self._on_rollback(request, previous.version)
        self.set_phase(Phase.ROLLED_BACK, f"rolled back {reason}; traffic is back on {previous.version}")

    async def _restore_previous(self, request: CanaryRequest, previous: TrackInfo, reason: str) -> None:
        self.set_phase(Phase.ROLLING_BACK, f"restoring {previous.version}: {reason}")
        try:
            await self._deploy_stable(
                request, f"{request.target.app}-stable back to {previous.version}", template=previous.template
            )
        except ActivityError as err:
            self.fail_rollback(f"restoring {previous.version} failed ({self._explain(err)}) after: {reason}", err)
        self.set_versions(previous.version or "", request.version)
        self._state = CanaryState.ROLLED_BACK
        await self._on_rollback(request, previous.version)
        self.set_phase(Phase.ROLLED_BACK, f"rolled back after promotion: {reason}; {previous.version} serves again")

    @staticmethod
    async def _stop_task(task: asyncio.Task[None]) -> None:
        """Cancels a concurrent analysis and waits until its measurement in flight has ended, so no activity is
        left running unseen after the step it belonged to."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ActivityError):
            await task

    # --- first deployment -----------------------------------------------------------------------------------------

    async def _first_deployment(self, request: CanaryRequest) -> DeploymentStatus:
        app = request.target.app
        self.set_versions(request.version, None)
        self.event("first deployment: no stable version to compare against, steps skipped", kind="decision")
        await self._pre_deploy(request, None)
        self.set_phase(Phase.PROGRESSING, f"deploying {request.version} as the stable version", step="first")
        await self.interruptible(self._deploy_stable(
            request, f"{app}-stable runs {request.version}", workload=request.workload
        ))
        await self._activity(prepare_routing, self._routing(request), summary=f"{request.traffic.router} routing")
        self._set_weights(0, 0.0)
        try:
            await self._hooks(request, HookPoint.POST_DEPLOY, None)
        except (Exception, asyncio.CancelledError) as err:
            # Nothing ran before, so there is nothing to restore: the run fails and says what serves.
            self.fail_without_rollback(err, f"there is no previous version to restore: {request.version} keeps serving")
        return await self.finish(Phase.SUCCEEDED, f"first deployment: {request.version} is the stable version")

    # --- hooks and notifications ----------------------------------------------------------------------------------

    def _on_phase(self, phase: Phase, message: str) -> None:
        if phase == Phase.STANDBY:
            return  # the post-promotion watch: "promoted" went out when the stable track took the new version
        self._notifications.on_phase(phase, message, self._status)

    async def _hooks(
        self, request: CanaryRequest, point: HookPoint, previous_version: str | None, *, abortable: bool = True
    ) -> None:
        """Runs the hooks of one point (see deployflow.spec.hooks for what a failure means at each)."""
        hooks = request.hooks.at(point)
        if not hooks:
            return  # no command at all, so runs recorded without hooks replay unchanged
        self.set_phase(self._status.phase, f"{point.value}: {len(hooks)} hook(s)", record=False)
        running = run_hooks(
            point, request.hooks, request.target, version=request.version, previous_version=previous_version,
            strategy="canary", on_event=self.event,
        )
        await (self.interruptible(running) if abortable else running)

    async def _pre_deploy(self, request: CanaryRequest, previous_version: str | None) -> None:
        """Runs before anything in the cluster changes: a failure (or an abort meanwhile) fails the run with nothing
        to roll back."""
        try:
            await self._hooks(request, HookPoint.PRE_DEPLOY, previous_version)
        except (Exception, asyncio.CancelledError) as err:
            self.fail_without_rollback(err)

    async def _post_deploy(self, request: CanaryRequest, previous: TrackInfo) -> None:
        """Runs once the stable track runs the new version. A failure restores the previous version, as a failed
        post-promotion analysis does: a release whose post-deploy checks fail is not one to keep serving."""
        try:
            await self._hooks(request, HookPoint.POST_DEPLOY, previous.version)
        except (Exception, asyncio.CancelledError) as err:
            await roll_back_and_end(
                err, lambda why: self._restore_previous(request, previous, why),
                lambda why: rolled_back(f"rolled back after promotion: {why}; {previous.version} serves again",
                                        {"reason": why}),
                reason=self._explain(err),
            )

    async def _on_rollback(self, request: CanaryRequest, previous_version: str | None) -> None:
        """Runs after a rollback finished, even one caused by an abort. A failure is a warning: the rollback
        stands and the run fails with the rollback's reason."""
        try:
            await self._hooks(request, HookPoint.ON_ROLLBACK, previous_version, abortable=False)
        except (ActivityError, ApplicationError) as err:
            self.event(f"{self._explain(err)} (the rollback itself completed)", kind="warning")

    # --- helpers --------------------------------------------------------------------------------------------------

    def _activity(
        self,
        fn: Any,
        arg: Any,
        *,
        summary: str,
        timeout: timedelta = QUICK,
        retry: RetryPolicy = RETRY,
    ) -> Any:
        return activity(fn, arg, summary=summary, timeout=timeout, heartbeat=HEARTBEAT, retry_policy=retry)

    def _deploy_stable(self, request: CanaryRequest, summary: str, **source: Any) -> Any:
        """The stable track at full size, from `workload=` or a saved `template=`, ready before it returns."""
        return self._activity(
            deploy_track,
            TrackRequest(target=request.target, track="stable", replicas=request.workload.replicas,
                         timeout_seconds=request.workload.health_timeout.total_seconds(), **source),
            summary=summary,
            timeout=request.workload.health_timeout + QUICK,
        )

    def _routing(self, request: CanaryRequest) -> RoutingRequest:
        return RoutingRequest(target=request.target, traffic=request.traffic, port=request.workload.service_port,
                              target_port=request.workload.port)

    def _weight_request(self, request: CanaryRequest, weight: int) -> WeightRequest:
        return WeightRequest(
            target=request.target, traffic=request.traffic, weight=weight, replicas=request.workload.replicas,
            port=request.workload.service_port, target_port=request.workload.port,
            timeout_seconds=request.workload.health_timeout.total_seconds(),
        )

    def _set_weights(self, weight: int, actual: float | None) -> None:
        """The requested split and, when known, the real one (None: not known, e.g. results recorded before
        set_weight reported it)."""
        self._weight = weight
        self._status.weights = {"stable": 100 - weight, "canary": weight}
        self._status.actual_weights = {} if actual is None else {"stable": 100 - actual, "canary": actual}
        self._status.observed_weights = {}  # counted at the previous weight until read again
        # In the details too, so notifications (which carry the details) say both.
        self._status.details["traffic"] = traffic_text(self._status)
        self._publish_details()

    def _exposure(self) -> float | None:
        """The share of requests the new version has now: the canary's real weight, all of it once promoted."""
        if self._state == CanaryState.COMMITTED:
            return 100.0
        return self._status.actual_weights.get("canary")

    def _explain(self, err: BaseException) -> str:
        # A failed background analysis interrupts the running step the way an abort does; it is not an abort.
        if isinstance(err, Aborted) and err.reason == self._background_failure:
            return err.reason
        return explain(err)
