"""A release train, as a runbook:

1. Check the request (every app's release spec in every target).
2. For each wave in order: release every app into every target of the wave, each as a child workflow of the app's
   strategy with the usual id `deploy/<cluster>/<namespace>/<app>` (steerable on its own), an app only after the
   apps it depends on succeeded in the same target, at most `max_concurrent_per_cluster` releases per cluster.
3. Soak: a durable timer (promote skips it), then the soak's analysis of every release of the wave.
4. Approval, when the wave asks for it: wait for promote or approve.
5. A failed release stops the train: its siblings still running are cancelled (each rolls itself back). Then by
   `on_failure`: `rollback` rolls back the releases already promoted, newest first; `hold` waits for a person
   (promote goes on with the next wave, abort rolls back as `rollback` would).

The per-cluster limit is a semaphore in this workflow: it holds inside one train. Across trains (and against
releases started by hand) the workflow id of each release still keeps two releases of one app in one namespace
apart: the second start is refused, and that release fails the train.

`pause`/`resume` hold the train (no new release starts) and are relayed to the releases running; `abort` and
cancellation cancel the running releases and roll back the promoted ones; `promote`/`approve` open the train's
own gates (soak, approval, hold). A release's own gates are steered through its own workflow id.
"""

from __future__ import annotations

import asyncio
import functools

import pydantic
from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from deployflow.errors import ErrorType
    from deployflow.spec import STRATEGIES
    from deployflow.spec.common import StrictModel, Target
    from deployflow.spec.control import PauseRequest, ResumeRequest
    from deployflow.spec.train import TrainRequest, Wave
    from deployflow.status import DeploymentStatus, Phase

from workflows.analysis import AnalysisRunner, gate
from workflows.control import DeploymentControl
from workflows.failure import Aborted, explain, failure, is_cancellation, roll_back_and_end, rolled_back, shielded


class ReleaseView(pydantic.BaseModel):
    """One app in one target, as the train sees it."""

    app: str
    cluster: str
    namespace: str
    workflow_id: str
    phase: str = "Pending"  # Pending | Running | Succeeded | Failed | Cancelled | RollingBack | RolledBack
    version: str = ""
    previous_version: str | None = None
    message: str = ""


class WaveView(pydantic.BaseModel):
    name: str
    phase: str = "Pending"  # Pending | Releasing | Soaking | WaitingApproval | Promoted | Failed | RolledBack
    releases: list[ReleaseView]


@workflow.defn(name="ReleaseTrain", failure_exception_types=[pydantic.ValidationError])
class ReleaseTrain(DeploymentControl):
    @workflow.init
    def __init__(self, request: TrainRequest) -> None:
        self._init_control(strategy="train", target=request.target, version=request.version,
                           step_count=len(request.waves))
        self._request = request
        self._waves = [
            WaveView(name=wave.name, releases=[
                ReleaseView(app=name, cluster=t.cluster, namespace=t.namespace,
                            workflow_id=f"deploy/{t.cluster}/{t.namespace}/{name}")
                for t in wave.targets for name in request.order()
            ])
            for wave in request.waves
        ]
        self._children: dict[str, workflow.ChildWorkflowHandle[object, DeploymentStatus]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._promoted: list[ReleaseView] = []  # releases that succeeded, in the order they did
        self._show()

    @workflow.run
    async def run(self, request: TrainRequest) -> DeploymentStatus:
        self.set_phase(Phase.PROGRESSING, "checking the request", step="validate")
        self.check_request(request)
        self.warn_unless_locked()
        relay = asyncio.create_task(self._relay_pause())
        # No `finally` here or below: a run evicted from the worker's cache is torn down by GeneratorExit, and
        # cleanup that touches the workflow then (cancelling a task, waking a waiter) fails outside its event loop.
        try:
            result = await self._run(request)
        except (Exception, asyncio.CancelledError):
            relay.cancel()
            raise
        relay.cancel()
        return result

    async def _run(self, request: TrainRequest) -> DeploymentStatus:
        held: list[str] = []
        for index, (wave, view) in enumerate(zip(request.waves, self._waves, strict=True)):
            try:
                await self._wave(wave, view, index)
            except (Exception, asyncio.CancelledError) as err:
                view.phase = "Failed"
                self._show()
                if request.on_failure == "hold" and not is_cancellation(err) and not isinstance(err, Aborted):
                    try:
                        await self.wait_for_promotion(
                            None, message=f"wave {wave.name} failed ({explain(err)}): holding; promote to go on "
                            "with the next wave, abort to roll back the promoted waves")
                        held.append(wave.name)
                        self.event(f"wave {wave.name} failed and was passed over by promote", kind="decision")
                        continue
                    except (Exception, asyncio.CancelledError) as second:
                        err = second
                await roll_back_and_end(
                    err, self._roll_back,
                    functools.partial(self._stopped, wave.name))
        passed = f" (passed over after failing: {', '.join(held)})" if held else ""
        return await self.finish(Phase.SUCCEEDED, f"{request.version} released through every wave{passed}")

    def _stopped(self, wave: str, reason: str) -> ApplicationError:
        return rolled_back(f"train {self._request.name} stopped in wave {wave}: {reason}; promoted waves rolled back")

    # --- one wave -----------------------------------------------------------------------------------------------

    async def _wave(self, wave: Wave, view: WaveView, index: int) -> None:
        await self.checkpoint()
        view.phase = "Releasing"
        self.set_phase(Phase.PROGRESSING, f"wave {wave.name}: releasing", step=wave.name, step_index=index + 1)
        await self.interruptible(self._release_all(wave, view))
        if wave.soak is not None:
            view.phase = "Soaking"
            self.set_phase(Phase.PROGRESSING, f"wave {wave.name}: soaking for {wave.soak.duration}")
            if await self.wait(wave.soak.duration):
                self.event(f"wave {wave.name}: soak ended early by promote", kind="decision")
            if wave.soak.analysis is not None:
                await self._analyse(wave, view)
        if wave.approval:
            view.phase = "WaitingApproval"
            self._show()
            await self.wait_for_promotion(None, message=f"wave {wave.name} done: promote or approve to go on")
        view.phase = "Promoted"
        self.set_phase(Phase.PROGRESSING, f"wave {wave.name} promoted")

    async def _release_all(self, wave: Wave, view: WaveView) -> None:
        """Every release of the wave; the first failure cancels the others (and waits until they rolled back)."""
        tasks = [asyncio.create_task(self._release(wave, view, rel)) for rel in view.releases]
        try:
            while pending := [t for t in tasks if not t.done()]:
                await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                failed = next((t for t in tasks if t.done() and t.exception() is not None), None)
                if failed is not None:
                    raise failed.exception()  # type: ignore[misc]
        except (Exception, asyncio.CancelledError):
            for task in tasks:
                task.cancel()
            await shielded(workflow.wait(tasks))
            raise

    async def _release(self, wave: Wave, view: WaveView, rel: ReleaseView) -> None:
        deps = self._request.app(rel.app).depends_on
        mine = {r.app: r for r in view.releases if (r.cluster, r.namespace) == (rel.cluster, rel.namespace)}
        await workflow.wait_condition(lambda: all(mine[d].phase == "Succeeded" for d in deps))
        limit = self._limits.setdefault(rel.cluster, asyncio.Semaphore(self._request.max_concurrent_per_cluster))
        await limit.acquire()
        try:
            await self.checkpoint()
            spec = self._request.app(rel.app).request(rel.cluster, rel.namespace)
            rel.version = spec.version  # type: ignore[attr-defined]
            await self._child(rel, spec, f"wave {wave.name}")
        except (Exception, asyncio.CancelledError):
            limit.release()
            raise
        limit.release()
        self._promoted.append(rel)

    async def _child(self, rel: ReleaseView, spec: StrictModel, why: str) -> DeploymentStatus:
        """Runs one release to its end; the view follows it. Cancelling this cancels the release (it rolls back)."""
        rel.phase, rel.message = "Running", why
        self._show()
        try:
            handle = await workflow.start_child_workflow(
                STRATEGIES[spec.strategy][0],  # type: ignore[attr-defined]
                spec,
                id=rel.workflow_id,
                result_type=DeploymentStatus,
                # A terminated train still has its running releases roll back.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                static_summary=f"{why} of train {self._request.name}",
            )
            self._children[rel.workflow_id] = handle
            if self.status.paused:  # paused between the start and now: the relay has already run
                await handle.signal("pause", PauseRequest(reason="the train is paused"))
            result = await handle
        except (Exception, asyncio.CancelledError) as err:
            self._children.pop(rel.workflow_id, None)
            rel.phase = "Cancelled" if is_cancellation(err) else "Failed"
            rel.message = explain(err)
            self.event(f"{rel.workflow_id}: {rel.phase.lower()}: {rel.message}", kind="error")
            self._show()
            raise
        self._children.pop(rel.workflow_id, None)
        rel.phase, rel.previous_version = "Succeeded", result.previous_version
        rel.message = result.message
        self.event(f"{rel.workflow_id}: {result.version} released (previous {result.previous_version or 'none'})")
        self._show()
        return result

    async def _analyse(self, wave: Wave, view: WaveView) -> None:
        assert wave.soak is not None and wave.soak.analysis is not None
        analysis = wave.soak.analysis
        for rel in view.releases:
            where = f"wave {wave.name}: soak analysis of {rel.app} in {rel.cluster}/{rel.namespace}"
            self.set_phase(Phase.PROGRESSING, where)
            target = Target(cluster=rel.cluster, namespace=rel.namespace, app=rel.app)
            runner = AnalysisRunner(self, target, rel.version, label=where)
            await gate(self, await self.interruptible(runner.run(analysis)),
                       on_inconclusive=analysis.on_inconclusive, where=where)

    # --- rollback -----------------------------------------------------------------------------------------------

    async def _roll_back(self, reason: str) -> None:
        """Releases the previous version of every promoted release, newest first, one at a time.

        Why re-release rather than signal `rollback`: a release that succeeded has ended, so there is no standby left
        to signal in general (canary and rolling never keep one). Each release reports `previous_version`; releasing
        the app's own spec with that tag of its image is the same path a person would take, through the same
        strategy, health checks and smoke tests, and it is idempotent: a target already on that version is left
        as it is by the strategy.
        """
        self.set_phase(Phase.ROLLING_BACK, f"rolling back: {reason}")
        failed: list[str] = []
        for rel in reversed(self._promoted):
            if rel.previous_version is None:
                self.event(f"{rel.workflow_id}: first release of the app there; nothing to roll back to",
                           kind="warning")
                continue
            app = self._request.app(rel.app)
            spec = app.previous_release(rel.cluster, rel.namespace, rel.previous_version)
            try:
                result = await self._child(rel, spec, f"rollback to {rel.previous_version}")
            except Exception as err:  # noqa: BLE001 - every other promoted release still rolls back
                failed.append(f"{rel.workflow_id} ({explain(err)})")
                continue
            rel.phase, rel.version, rel.previous_version = "RolledBack", result.version, result.previous_version
        for view in self._waves:
            if view.phase == "Promoted":
                view.phase = "RolledBack"
        self._show()
        if failed:
            raise failure(f"rollback failed for {', '.join(failed)}: check those releases", ErrorType.ROLLBACK_FAILED)
        self.set_phase(Phase.ROLLED_BACK, f"rolled back: {reason}")

    # --- operator messages relayed to the running releases ------------------------------------------------------

    async def _relay_pause(self) -> None:
        relayed = False
        while True:
            await workflow.wait_condition(lambda: self.status.paused != relayed)  # noqa: B023 - read at once
            paused = relayed = self.status.paused
            message: PauseRequest | ResumeRequest = (
                PauseRequest(reason="the train is paused") if paused else ResumeRequest()
            )
            for workflow_id, handle in list(self._children.items()):
                try:
                    await handle.signal("pause" if paused else "resume", message)
                except Exception as err:  # noqa: BLE001 - a release that just ended cannot be paused
                    self.event(f"{workflow_id}: could not relay {'pause' if paused else 'resume'}: {err}",
                               kind="warning")

    def _refresh_status(self) -> None:
        """Every published status carries the waves as they stand (and one line of them for the UI's details)."""
        self._show()

    def _show(self) -> None:
        """The query reads the status as it is, so this costs no command in history (a phase change upserts the
        search attributes); the UI's details follow at the next phase change."""
        self.status.details["waves"] = [w.model_dump(mode="json") for w in self._waves]
        self.status.details["progress"] = " · ".join(f"{w.name} {w.phase}" for w in self._waves)


__all__ = ["ReleaseTrain", "ReleaseView", "WaveView"]
