"""The simulator's kube-controller-manager and kubelet: controllers that turn desired state into status.

Every controller has `reconcile(now)` (one pass over its objects at simulated time `now`) and
`next_wakeup()` (the simulated time at which something it watches changes by itself: a pod becoming
ready, a progress deadline). `ControllerManager` runs them in order each tick, and skips ticks in which
neither the store nor the clock gives any of them something to do, so an idle simulator costs nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Protocol

from deployflow.sim.config import Clock, SimConfig
from deployflow.sim.controllers.deployments import DeploymentController
from deployflow.sim.controllers.endpoints import EndpointsController
from deployflow.sim.controllers.events import EventRecorder
from deployflow.sim.controllers.jobs import JobController
from deployflow.sim.controllers.pods import PodController, PodFactory
from deployflow.sim.controllers.replicasets import ReplicaSetController
from deployflow.sim.controllers.statefulsets import StatefulSetController
from deployflow.sim.store import Store

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
        self._seen_rv = -1
        self._wakeup = -math.inf

    def reconcile_once(self) -> None:
        """One pass of every controller at the clock's current time."""
        with self.store.lock:
            now = self.clock.now()
            # The version before the pass: what this pass writes must be seen by the controllers that
            # ran earlier in it, so a pass that changed anything is followed by another.
            self._seen_rv = self.store.resource_version
            for controller in self.controllers:
                controller.reconcile(now)
            self.passes += 1
            self._wakeup = min(c.next_wakeup() for c in self.controllers)

    def due(self) -> bool:
        """Whether a pass could change anything: the store changed, or a timer of some controller expired."""
        return self.store.resource_version != self._seen_rv or self.clock.now() >= self._wakeup

    async def run(self) -> None:
        while True:
            if self.due():
                self.reconcile_once()
            await asyncio.sleep(self.config.tick_seconds)
