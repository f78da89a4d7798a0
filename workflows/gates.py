"""The gates a deployment waits at, and the safe points between its steps: `checkpoint`, `interruptible`,
`wait_for_promotion`, `wait` and `standby` (see workflows.control for the messages that open and close them).

`Gates` holds the operator's requests as the handlers of `DeploymentControl` record them; the gates only read them
and wait, so every wait here is a `workflow.wait_condition` and the commands a run issues depend on its history alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from deployflow.spec.control import ApproveRequest, PromoteRequest
    from deployflow.status import DeploymentStatus, Phase

from workflows.failure import Aborted

T = TypeVar("T")

StandbyOutcome = Literal["elapsed", "promoted", "rollback"]


class Gates:
    """The waiting half of `DeploymentControl`, which sets these attributes in `_init_control`."""

    _status: DeploymentStatus
    _pause_reason: str | None
    _abort_reason: str | None
    _rollback_reason: str | None
    _promotion: PromoteRequest | ApproveRequest | None
    _gate_open: bool  # a promotion gate (wait_for_promotion) is waiting
    _wait_open: bool  # a timed pause step (wait) is waiting: promote skips it
    _standby_open: bool  # the previous version is held for rollback

    if TYPE_CHECKING:  # provided by DeploymentControl

        def set_phase(self, phase: Phase, message: str = "", *, record: bool = True) -> None: ...

        def event(self, message: str, kind: str = "info") -> None: ...

    @property
    def promote_full(self) -> bool:
        """True once an operator sent `promote` with full=true: skip every remaining step."""
        return isinstance(self._promotion, PromoteRequest) and self._promotion.full


    async def checkpoint(self) -> None:
        """A safe point between steps: raises `Aborted` if an abort arrived; blocks while paused."""
        self._raise_if_aborted()
        if self._pause_reason is None:
            return
        before, message = self._status.phase, self._status.message
        self.set_phase(Phase.PAUSED, f"paused: {self._pause_reason}")
        await workflow.wait_condition(lambda: self._pause_reason is None or self._abort_reason is not None)
        self._raise_if_aborted()
        self.set_phase(before, message, record=False)

    async def interruptible(self, awaitable: Awaitable[T]) -> T:
        """Awaits an activity (or any step) but gives up at once on abort: the step is cancelled, then `Aborted`.

        Give the activities run here WAIT_CANCELLATION_COMPLETED: a cluster-changing step has then stopped before
        the rollback starts, and no cancelled activity is left running unseen (on the shared time-skipping test
        server such an orphan also stops time from skipping for every later test).
        """
        self._raise_if_aborted()
        step = await self._unless(awaitable, self._requested())
        if step is not None:
            return step.result()
        self._raise_if_aborted()
        raise AssertionError("unreachable: interruptible woke without step or abort")

    async def _unless(self, awaitable: Awaitable[T], stop: Callable[[], bool]) -> asyncio.Future[T] | None:
        """Awaits a step unless `stop()` becomes true first; then the step is cancelled and has stopped when this
        returns None. Otherwise the finished step, whose result (or failure) is the caller's."""
        step: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(workflow.wait_condition(stop))
        racers: list[asyncio.Future[Any]] = [step, stopper]
        try:
            await workflow.wait(racers, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The run itself was cancelled: the step is not cancelled with it, so stop it and let it finish
            # stopping before the caller's cleanup touches the cluster.
            await self._stop(step)
            raise
        finally:
            if not stopper.done():
                stopper.cancel()
        if step.done():
            return step
        await self._stop(step)
        return None

    @staticmethod
    async def _stop(step: asyncio.Future[Any]) -> None:
        if step.done():
            return
        step.cancel()
        # The step's own failure no longer matters: the stop wins.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await step

    async def wait_for_promotion(self, timeout: timedelta | None = None, *, message: str = "") -> bool:
        """A promotion gate: True on promote/approve, False on timeout; raises `Aborted` on abort."""
        self._raise_if_aborted()
        if self._promotion is not None and self.promote_full:
            return True
        self._promotion = None
        self._gate_open = True
        before = self._status.phase
        self.set_phase(Phase.WAITING_PROMOTION, message or "waiting for promote or approve")
        try:
            await workflow.wait_condition(self._requested(promotion=True), timeout=timeout)
        except TimeoutError:
            self.event(f"nobody promoted within {timeout}", kind="warning")
            return False
        finally:
            self._gate_open = False
        self._raise_if_aborted()
        self.set_phase(before if before != Phase.WAITING_PROMOTION else Phase.PROGRESSING, "promoted")
        return True

    async def wait(self, duration: timedelta, *, promotable: bool = True) -> bool:
        """A durable timed step (bake time): True when an operator promoted early; raises `Aborted` on abort.

        Pauses extend the wait: the time spent paused does not count.
        """
        self._raise_if_aborted()
        if promotable and self.promote_full:
            return True
        self._promotion = None
        self._wait_open = promotable
        deadline = workflow.now() + duration
        try:
            while True:
                remaining = deadline - workflow.now()
                if remaining <= timedelta(0):
                    return False
                try:
                    await workflow.wait_condition(self._requested(promotion=True, pause=True), timeout=remaining)
                except TimeoutError:
                    return False
                self._raise_if_aborted()
                if self._promotion is not None:
                    return True
                paused_at = workflow.now()
                self._wait_open = False
                await self.checkpoint()
                self._wait_open = promotable
                deadline += workflow.now() - paused_at
        finally:
            self._wait_open = False

    async def standby(self, duration: timedelta, *, message: str = "") -> StandbyOutcome:
        """Holds the previous version for `duration`: "rollback" on rollback or abort, "promoted" when an operator
        ends standby early, "elapsed" otherwise. Phase is STANDBY meanwhile."""
        self._standby_open = True
        self._promotion = None
        self.set_phase(Phase.STANDBY, message or f"previous version on standby for {duration}")
        try:
            await workflow.wait_condition(self._requested(rollback=True, promotion=True), timeout=duration)
        except TimeoutError:
            return "elapsed"
        finally:
            self._standby_open = False
        if self._rollback_reason is None and self._abort_reason is not None:
            self._rollback_reason = f"aborted: {self._abort_reason}"
        if self._rollback_reason is not None:
            return "rollback"
        return "promoted"

    @property
    def rollback_reason(self) -> str | None:
        return self._rollback_reason

    def _requested(self, *, promotion: bool = False, pause: bool = False, rollback: bool = False) -> Callable[[], bool]:
        """What a gate waits for: an abort always, and the operator requests it also answers to."""
        return lambda: (
            self._abort_reason is not None
            or (promotion and self._promotion is not None)
            or (pause and self._pause_reason is not None)
            or (rollback and self._rollback_reason is not None)
        )

    def _raise_if_aborted(self) -> None:
        if self._abort_reason is not None:
            raise Aborted(self._abort_reason)
