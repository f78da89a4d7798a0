"""Notifications from inside a workflow: fire and forget, bounded retries, never a reason to fail.

`Notifications.on_phase` maps the control mixin's phase changes to events, so a strategy wires it once::

    def _on_phase(self, phase: Phase, message: str) -> None:
        self._notifications.on_phase(phase, message, self.status)

Each message goes out in its own workflow task (an activity per notifier), so a slow or dead receiver never
delays the rollout. `await drain()` before the run ends, so the last events (succeeded, failed) are sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.failure import shielded
from workflows.options import NOTIFY_RETRY, READS, activity

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotificationInput, send_notification
    from deployflow.spec.common import Target
    from deployflow.spec.notify import Notifier, NotifyEvent, NotifyMessage
    from deployflow.status import DeploymentStatus, Phase

EventSink = Callable[[str, str], None]

_PHASE_EVENTS = {
    Phase.PAUSED: NotifyEvent.PAUSED,
    Phase.WAITING_PROMOTION: NotifyEvent.WAITING_APPROVAL,
    Phase.STANDBY: NotifyEvent.PROMOTED,
    Phase.ROLLED_BACK: NotifyEvent.ROLLED_BACK,
    Phase.SUCCEEDED: NotifyEvent.SUCCEEDED,
    Phase.FAILED: NotifyEvent.FAILED,
}


class Notifications:
    def __init__(
        self, notifiers: list[Notifier], target: Target, strategy: str, on_event: EventSink | None = None
    ) -> None:
        self._notifiers = notifiers
        self._target = target
        self._strategy = strategy
        self._on_event = on_event
        self._pending: set[asyncio.Task[None]] = set()
        self._last: dict[int, asyncio.Task[None]] = {}  # per notifier: its messages go out in order
        self._started = False
        self._last_phase: Phase | None = None

    def on_phase(self, phase: Phase, message: str, status: DeploymentStatus) -> None:
        """Sends what a phase change means: started (first progress), resumed (leaving a pause), and the rest."""
        previous, self._last_phase = self._last_phase, phase
        if phase == Phase.PROGRESSING and not self._started:
            self._started = True
            self.send(NotifyEvent.STARTED, status, message)
            return
        if previous == Phase.PAUSED and phase != Phase.PAUSED and phase not in _PHASE_EVENTS:
            self.send(NotifyEvent.RESUMED, status, message)
            return
        event = _PHASE_EVENTS.get(phase)
        if event is not None:
            self.send(event, status, message)

    def send(self, event: NotifyEvent, status: DeploymentStatus, reason: str = "") -> None:
        wanted = [n for n in self._notifiers if n.wants(event)]
        if not wanted:
            return
        message = NotifyMessage(
            event=event,
            time=workflow.now(),
            workflow_id=workflow.info().workflow_id,
            strategy=self._strategy,
            cluster=self._target.cluster,
            namespace=self._target.namespace,
            app=self._target.app,
            version=status.version,
            previous_version=status.previous_version,
            phase=status.phase.value,
            reason=reason,
            details={k: str(v) for k, v in status.details.items() if isinstance(v, str | int | float | bool)},
        )
        for index, notifier in enumerate(self._notifiers):
            if not notifier.wants(event):
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(notifier, message, self._last.get(index)))
            self._last[index] = task
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _deliver(self, notifier: Notifier, message: NotifyMessage, after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await workflow.wait([after])  # never raises: _deliver swallows its failures
        try:
            await activity(
                send_notification,
                NotificationInput(notifier=notifier, message=message),
                timeout=timedelta(seconds=15),
                retry_policy=NOTIFY_RETRY,
                cancellation=READS,
                summary=f"notify {message.event.value} via {notifier.kind}",
            )
        except ActivityError as err:
            cause = err.cause if err.cause is not None else err
            text = f"notification {message.event.value} via {notifier.describe()} not delivered: {cause}"
            workflow.logger.warning(text)
            if self._on_event:
                self._on_event(text, "warning")

    async def around(self, release: Awaitable[DeploymentStatus]) -> DeploymentStatus:
        """Runs the release, then waits for the notifications still in flight.

        On failure or cancellation the wait is shielded, so the last words (rolled back, failed) still go out.
        Not BaseException: a worker evicting the run from its cache must not wait for deliveries.
        """
        try:
            status = await release
        except (Exception, asyncio.CancelledError):
            await shielded(self.drain())
            raise
        await self.drain()
        return status

    async def drain(self) -> None:
        """Waits for the notifications in flight (each ends: delivered, or given up and logged)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
