"""Canary deployment, as a runbook:

1. Check the request.
2. Read what runs now: the stable track (`<app>-stable`) and its version. If there is none, this is the app's
   first deployment: there is nothing to compare against, so deploy it as the stable version and stop.
3. Make sure the routing exists (Services, and the route the router weighs) and put the new version on the
   canary track (`<app>-canary`), with no traffic yet.
4. Run the steps: `set_weight` shifts a share of traffic to the canary (its pods ready first), `pause` waits (for
   a duration, or until promoted), `analysis` measures and judges: success goes on, failure rolls back,
   inconclusive waits for an operator's promote or abort. Background analysis, when asked for, watches from its
   starting step to the end and rolls back the moment it fails.
5. Promote: all traffic to the canary, the stable track moves to the new version, traffic goes back to stable
   and the canary scales to zero; at every moment ready pods serve every request.
6. Optionally watch after promotion; a late rise of the error rate over the pre-deployment baseline restores the
   previous version.

Any failure, an abort, or a cancellation before promotion sends all traffic back to stable first (the fast part),
then restores stable's size and scales the canary to zero, and fails the run saying why and at which step.
Terminating the run skips all of this.

Hooks run at the points deployflow.spec.hooks names: pre_deploy before the canary is created, pre_promote before
step 5, post_deploy after it (a failure restores the previous version), on_rollback after any rollback.
Notifications follow the phases; "promoted" goes out when the stable track takes the new version. The rollbacks,
the first deployment and the hooks are in workflows.canary_steps.
"""

from __future__ import annotations

import asyncio
import math

import pydantic
from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.traffic import (
        ReleaseQuery,
        ReleaseState,
        TrackInfo,
        TrackRequest,
        WeightResult,
        deploy_track,
        inspect_release,
        prepare_routing,
        set_weight,
    )
    from deployflow.spec.analysis import Analysis, Metric
    from deployflow.spec.canary import (
        AnalysisStep,
        CanaryRequest,
        PauseStep,
        SetWeightStep,
        Step,
        describe_step,
    )
    from deployflow.spec.control import PauseRequest
    from deployflow.spec.hooks import HookPoint
    from deployflow.spec.notify import NotifyEvent
    from deployflow.spec.weights import weight_warnings
    from deployflow.status import DeploymentStatus, Phase, TrafficStep, format_percent, traffic_text

from workflows.analysis import AnalysisRunner, Decision, decide, gate
from workflows.canary_steps import CanarySteps
from workflows.decisions import CanaryState, CanaryUndo, canary_undo
from workflows.failure import roll_back_and_end, rolled_back, shielded
from workflows.notify import Notifications
from workflows.options import QUICK, READS, activity


@workflow.defn(name="CanaryDeployment", failure_exception_types=[pydantic.ValidationError])
class CanaryDeployment(CanarySteps):
    @workflow.init
    def __init__(self, request: CanaryRequest) -> None:
        # Stages wait before their first measurement since this patch; runs that began before keep the expansion
        # they started with, so their histories replay.
        delayed = not request.stages or workflow.patched("stage-measurement-delay")
        self._steps: list[Step] = request.expanded_steps(delayed_measurements=delayed)
        self._init_control(strategy="canary", target=request.target, version=request.version,
                           step_count=len(self._steps))
        self._status.details["router"] = request.traffic.router
        self._status.details["steps"] = [describe_step(s) for s in self._steps]
        self._weight = 0
        self._step_number = 0
        self._state = CanaryState.PLANNED
        self._background_failure: str | None = None
        self._notifications = Notifications(request.notifications, request.target, "canary", self.event)
        # Runs begun before this patch read no observed split; asking only when there is a Prometheus to read it
        # from leaves every other run's history as it was.
        observed = request.observed_metric()
        self._observed_metric = observed if observed is not None and workflow.patched("observed-split") else None
        self._observing: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, request: CanaryRequest) -> DeploymentStatus:
        return await self._notifications.around(self._run(request))

    async def _run(self, request: CanaryRequest) -> DeploymentStatus:
        self.set_phase(Phase.PROGRESSING, "checking the request", step="validate")
        self.check_request(request)
        for warning in weight_warnings(request):  # a pod ratio cannot give every weight: say so before it starts
            self.event(warning, kind="warning")

        self.set_phase(Phase.PROGRESSING, "reading the stable and canary tracks", step="snapshot")
        try:
            live: ReleaseState = await activity(
                inspect_release, ReleaseQuery(target=request.target), summary="read the stable and canary tracks",
                cancellation=READS,
            )
        except (Exception, asyncio.CancelledError) as err:
            self.fail_without_rollback(err)
        if not live.stable.exists:
            return await self._first_deployment(request)
        previous = live.stable
        self.set_versions(request.version, previous.version)
        if previous.version == request.version and (not live.canary.exists or live.canary.replicas == 0):
            return await self.finish(Phase.SUCCEEDED, f"{request.version} already runs on the stable track")

        baseline = await self._pre_deployment_baseline(request, previous)
        await self._pre_deploy(request, previous.version)
        try:
            await self._release(request, previous)
        except (Exception, asyncio.CancelledError) as err:
            if canary_undo(self._state) != CanaryUndo.TRAFFIC_TO_STABLE:
                raise
            reason = self._explain(err)
            where = f"at step {self._step_number} ({self._weight}%)" if self._step_number else "before the first step"
            details = {"step": self._step_number, "weight": self._weight, "reason": reason}
            await roll_back_and_end(
                err, lambda why: self._roll_back(request, previous, why),
                lambda why: rolled_back(f"rolled back {why}; traffic is back on {previous.version}", details),
                reason=f"{where}: {reason}",
            )

        await self._post_deploy(request, previous)
        if request.post_promotion is not None:
            await self._post_promotion_watch(request, previous, baseline)
        return await self.finish(Phase.SUCCEEDED, f"{request.version} promoted: it is the stable version")

    # --- the release ----------------------------------------------------------------------------------------------

    async def _release(self, request: CanaryRequest, previous: TrackInfo) -> None:
        """Steps 3 to 5. Raising anywhere here rolls back."""
        app = request.target.app
        self._state = CanaryState.CANARY
        self.set_phase(Phase.PROGRESSING, f"preparing {request.traffic.router} routing", step="routing")
        await self.interruptible(self._activity(
            prepare_routing, self._routing(request), summary=f"{request.traffic.router} routing for {app}"
        ))
        await self.checkpoint()
        self.set_phase(Phase.PROGRESSING, f"putting {request.version} on the canary track", step="canary")
        await self.interruptible(self._activity(
            deploy_track,
            TrackRequest(target=request.target, track="canary", workload=request.workload, replicas=0, wait=False),
            summary=f"{app}-canary runs {request.version}",
        ))
        self._set_weights(0, 0.0)

        background: asyncio.Task[None] | None = None
        try:
            for index, step in enumerate(self._steps):
                if self.promote_full:
                    self.event("full promotion: remaining steps skipped", kind="decision")
                    break
                if background is None and request.background_analysis is not None \
                        and index >= request.background_analysis.starting_step:
                    background = asyncio.create_task(self._background(request, request.background_analysis.analysis))
                await self.checkpoint()
                self._step_number = index + 1
                label = f"{index + 1}/{len(self._steps)} {describe_step(step)}"
                self.set_phase(Phase.PROGRESSING, describe_step(step), step=label, step_index=index + 1)
                await self._run_step(request, step)
            await self.checkpoint()
            self._step_number = len(self._steps) + 1
            # Background analysis keeps watching while pre-promote hooks run; a failure of either rolls back.
            await self._hooks(request, HookPoint.PRE_PROMOTE, previous.version)
            self.set_phase(Phase.PROGRESSING, "promoting: all traffic to the canary", step="promote")
            if self._weight < 100:
                await self._shift(request, 100)
        finally:
            if background is not None:
                await self._stop_task(background)
            if self._observing is not None:
                await self._stop_task(self._observing)
        await self._promote(request)

    async def _run_step(self, request: CanaryRequest, step: Step) -> None:
        if isinstance(step, SetWeightStep):
            await self._shift(request, step.set_weight)
        elif isinstance(step, PauseStep):
            if step.pause.duration is not None:
                if await self.wait(step.pause.duration):
                    self.event("pause skipped by promote", kind="decision")
                # The weight has held for the pause: what it gave is in Prometheus, analysis or not.
                if (reading := self._observe(request)) is not None:
                    await reading
            else:
                await self.wait_for_promotion(None, message=f"paused at {self._weight}%: waiting for promote")
        elif isinstance(step, AnalysisStep):
            verdict = await self.interruptible(self._analysis(request).run(step.analysis))
            await gate(self, verdict, on_inconclusive=step.analysis.on_inconclusive)

    async def _shift(self, request: CanaryRequest, weight: int) -> None:
        result: WeightResult = await self.interruptible(self._activity(
            set_weight,
            self._weight_request(request, weight),
            summary=f"canary weight {weight}%",
            timeout=request.workload.health_timeout + QUICK,
        ))
        self._status.details["stable_pods"] = result.stable_replicas
        self._status.details["canary_pods"] = result.canary_replicas
        self._set_weights(weight, result.actual_weight)
        self._status.traffic_history.append(
            TrafficStep(time=workflow.now(), requested=weight, actual=result.actual_weight)
        )
        actual = "" if result.actual_weight is None else f"actual {format_percent(result.actual_weight)}: "
        self.event(f"canary weight {weight}% ({actual}{result.canary_replicas} canary pods, "
                   f"{result.stable_replicas} stable)")

    async def _promote(self, request: CanaryRequest) -> None:
        """The stable track takes the new version while the canary serves everything, then takes the traffic
        back; the canary scales to zero only after that, so no request finds no backend."""
        app = request.target.app
        canary: ReleaseState = await self._activity(
            inspect_release, ReleaseQuery(target=request.target), summary="read the canary's pod template"
        )
        self.set_phase(Phase.PROGRESSING, f"{app}-stable moves to {request.version}", step="promote")
        await self.interruptible(self._deploy_stable(
            request, f"{app}-stable runs {request.version}", template=canary.canary.template
        ))
        self._state = CanaryState.COMMITTED
        back: WeightResult = await self._activity(
            set_weight, self._weight_request(request, 0), summary="traffic back to the stable track",
            timeout=request.workload.health_timeout + QUICK,
        )
        self._set_weights(0, back.actual_weight)
        self.event(f"promoted: {app}-stable runs {request.version}; canary scaled to zero", kind="decision")
        # Sent here rather than on the STANDBY phase (see _on_phase): a canary without a post-promotion watch
        # never enters standby.
        self._notifications.send(NotifyEvent.PROMOTED, self._status, f"{app}-stable runs {request.version}")

    # --- analysis -------------------------------------------------------------------------------------------------

    def _analysis(self, request: CanaryRequest, *, baseline_value: float | None = None) -> AnalysisRunner:
        def exposure() -> float | None:
            # Each measurement is a moment Prometheus has scraped the current weight: read the real split too.
            self._observe(request)
            return self._exposure()

        return AnalysisRunner(self, request.target, request.version, baseline_value=baseline_value,
                              exposure=exposure)

    def _observe(self, request: CanaryRequest) -> asyncio.Task[None] | None:
        """Starts reading the observed split, unless there is nothing to read it from, the canary holds no weight
        of its own any more, or a read is still under way."""
        metric = self._observed_metric
        if metric is None or self._state != CanaryState.CANARY or (self._observing and not self._observing.done()):
            return None
        self._observing = asyncio.create_task(self._read_observed(request, metric))
        return self._observing

    async def _read_observed(self, request: CanaryRequest, metric: Metric) -> None:
        """The canary's share of the requests answered, into the status and the current weight's history entry.
        Never a reason to fail: no data, a refused or failed read leave it unknown."""
        weight, entry = self._weight, self._status.traffic_history[-1] if self._status.traffic_history else None
        share: float | None = None
        try:
            measured = await AnalysisRunner(self, request.target, request.version).measure(
                metric, args=request.traffic.observed_args(request.target.app), summary="observed traffic split"
            )
            share = measured.value
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            self.event(f"observed split unknown: {self._explain(err)}", kind="warning")
        if weight != self._weight:
            return  # read over the previous weight: it says nothing of the current one
        canary = round(100 * share, 1) if share is not None and 0 <= share <= 1 else None
        self._status.observed_weights = {} if canary is None else {"stable": round(100 - canary, 1), "canary": canary}
        if entry is not None and entry.requested == weight:
            entry.observed = canary
        self._status.details["traffic"] = traffic_text(self._status)
        self._publish_details()

    async def _background(self, request: CanaryRequest, analysis: Analysis) -> None:
        """Runs until cancelled at promotion. A failure interrupts whatever step runs (as an abort does);
        inconclusive pauses the release for a person (resume goes on, abort rolls back), or fails with
        `on_inconclusive: fail`."""
        self.event("background analysis started")
        verdict = await self._analysis(request).run(analysis, background=True)
        decision = decide(verdict, analysis.on_inconclusive)
        if verdict is None or decision is Decision.GO_ON:
            return
        if decision is Decision.WAIT:
            self.event(f"background analysis inconclusive: {verdict.message}", kind="warning")
            self._do_pause(PauseRequest(reason=f"background analysis inconclusive: {verdict.message}"))
            return
        self._background_failure = f"background analysis: {verdict.message}"
        self.event(self._background_failure, kind="error")
        # Interrupts the running step exactly as an abort does; _explain tells them apart.
        self._abort_reason = self._background_failure
        self._publish_details()

    async def _pre_deployment_baseline(self, request: CanaryRequest, previous: TrackInfo) -> float | None:
        """The stable version's error rate before anything changes: the post-promotion watch compares to it."""
        metric = request.post_promotion_metric()
        if metric is None or previous.version is None:
            return None
        plain = metric.model_copy(update={"failure_condition": None, "success_condition": None, "baseline": False})
        measurement = await self._analysis(request).measure(
            plain, version=previous.version, summary="pre-deployment error rate"
        )
        if measurement.value is None:
            self.event(f"no pre-deployment baseline ({measurement.message}): the floor applies", kind="warning")
            return 0.0
        self.event(f"pre-deployment baseline: error_rate {measurement.value:.4g} ({previous.version})")
        self._status.details["baseline_error_rate"] = measurement.value
        return measurement.value

    async def _post_promotion_watch(self, request: CanaryRequest, previous: TrackInfo, baseline: float | None) -> None:
        watch = request.post_promotion
        metric = request.post_promotion_metric()
        assert watch is not None and metric is not None and request.error_rate is not None
        delay = request.error_rate.first_measurement_after()
        # Right after promotion Prometheus has not scraped the new stable pods: a query then answers no data, an
        # inconclusive verdict. The watch waits as the stages do, then measures every interval until the window ends.
        # Runs that began before this patch measure at once, as their histories recorded.
        if delay < watch.window and workflow.patched("post-promotion-measurement-delay"):
            window, interval = watch.window.total_seconds(), watch.interval.total_seconds()
            # Only measurements due before the window ends: the last one never races the window's own timer.
            count = math.ceil((window - delay.total_seconds()) / interval)
            metric = metric.model_copy(update={"initial_delay": delay, "count": count})
        analysis = Analysis(metrics=[metric])

        async def watching() -> None:
            verdict = await self._analysis(request, baseline_value=baseline or 0.0).run(analysis, background=True)
            decision = decide(verdict, analysis.on_inconclusive)
            if verdict is not None and decision is Decision.ROLL_BACK:
                self._rollback_reason = f"post-promotion analysis: {verdict.message}"
            elif verdict is not None and decision is Decision.WAIT:
                # The previous version stays on standby until the window ends: a person can still roll back.
                self.event(f"post-promotion analysis inconclusive: {verdict.message}", kind="warning")

        task = asyncio.create_task(watching())
        outcome = await self.standby(
            watch.window, message=f"watching {request.version} for {watch.window}; {previous.version} can be restored"
        )
        await self._stop_task(task)
        if outcome != "rollback":
            ended = "passed" if outcome == "elapsed" else "ended by promote"
            self.event(f"post-promotion watch {ended}")
            return
        reason = self.rollback_reason or "rollback requested"
        await shielded(self._restore_previous(request, previous, reason))
        raise rolled_back(f"rolled back after promotion: {reason}; {previous.version} serves again", {"reason": reason})
