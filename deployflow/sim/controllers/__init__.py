"""The simulator's kube-controller-manager and kubelet: controllers that turn desired state into status.

Every controller has `reconcile(now)` (one pass over its objects at simulated time `now`) and
`next_wakeup()` (the simulated time at which something it watches changes by itself: a pod becoming
ready, a progress deadline). `ControllerManager` runs them in order, like informers it learns from the
store's watch which namespaces changed, and each tick it only passes over those plus the namespaces whose
timers expired: an idle simulator costs nothing, and one busy namespace does not make every pass walk
every object of a long test session. Controllers with `scoped = True` take the namespaces as
`reconcile(now, scope)` and report `due_namespaces(now)`; others are simply run whenever a pass runs.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Protocol

from deployflow.sim.config import Clock, SimConfig
from deployflow.sim.controllers.base import Scope
from deployflow.sim.controllers.deployments import DeploymentController
from deployflow.sim.controllers.endpoints import EndpointsController
from deployflow.sim.controllers.events import EventRecorder
from deployflow.sim.controllers.jobs import JobController
from deployflow.sim.controllers.pods import PodController, PodFactory
from deployflow.sim.controllers.replicasets import ReplicaSetController
from deployflow.sim.controllers.statefulsets import StatefulSetController
from deployflow.sim.resources import ALL, EVENTS
from deployflow.sim.store import Store, WatchEvent

__all__ = ["Controller", "ControllerManager", "PodController", "PodFactory"]


class Controller(Protocol):
    name: str

    def reconcile(self, now: float) -> None: ...

    def next_wakeup(self) -> float: ...


class ControllerManager:
    def __init__(self, store: Store, clock: Clock, config: SimConfig) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.events = EventRecorder(store)
        self.factory = PodFactory(random.Random(config.seed))
        self.pods = PodController(store, config, self.events)
        # Order matters only for latency, not correctness: workload controllers create pods, the pod
        # controller starts them in the same pass, and Endpoints see the result before traffic does.
        self.controllers: list[Controller] = [
            DeploymentController(store, config, self.events),
            ReplicaSetController(store, config, self.pods, self.factory, self.events),
            StatefulSetController(store, config, self.pods, self.factory, self.events),
            JobController(store, config, self.factory, self.events),
            self.pods,
            EndpointsController(store, config),
        ]
        self.passes = 0
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._wakeup = -math.inf
        for res in ALL:
            if res.namespaced and res is not EVENTS:  # our own Events change nothing a controller reads
                store.subscribe(res, None, self._changed)

    def _changed(self, event: WatchEvent) -> None:
        # Runs under the store lock on every write: only note where.
        self._dirty.add(event.object.get("metadata", {}).get("namespace", ""))

    def reconcile_once(self) -> None:
        """One pass of every controller over every namespace at the clock's current time."""
        self._pass(None)

    def reconcile_due(self) -> bool:
        """One pass over the namespaces that changed or whose timers expired; False when none needed one."""
        with self.store.lock:
            if not self.due():
                return False
            self._pass(self._due_scope())
            return True

    def due(self) -> bool:
        """Whether a pass could change anything: the store changed, or a timer of some controller expired."""
        return self._all_dirty or bool(self._dirty) or self.clock.now() >= self._wakeup

    def _due_scope(self) -> Scope:
        if self._all_dirty:
            return None
        now = self.clock.now()
        scope = set(self._dirty)
        for c in self.controllers:
            due_namespaces = getattr(c, "due_namespaces", None)
            if due_namespaces is not None:
                scope |= due_namespaces(now)
        return scope

    def _pass(self, scope: Scope) -> None:
        with self.store.lock:
            now = self.clock.now()
            # Reset before the pass: what the pass writes marks its namespaces again, so controllers that
            # ran earlier in it see those writes in the next pass.
            self._dirty = set()
            self._all_dirty = False
            for controller in self.controllers:
                if getattr(controller, "scoped", False):
                    controller.reconcile(now, scope)  # type: ignore[call-arg]
                else:
                    controller.reconcile(now)
            self.passes += 1
            self._wakeup = min(c.next_wakeup() for c in self.controllers)

    async def run(self) -> None:
        while True:
            self.reconcile_due()
            await asyncio.sleep(self.config.tick_seconds)
