"""ReplicaSets: keep `spec.replicas` pods alive and report how many are ready and available."""

from __future__ import annotations

import contextlib
import math

from deployflow.sim.config import SimConfig
from deployflow.sim.controllers.base import Scope, SyncCache, TimedController, Wakeups, in_scope, write_status
from deployflow.sim.controllers.events import EventRecorder
from deployflow.sim.controllers.pods import (
    PodController,
    PodFactory,
    controller_uid,
    is_active,
    is_ready,
    random_suffix,
)
from deployflow.sim.resources import PODS, REPLICASETS
from deployflow.sim.store import Obj, Store, StoreError


def pods_by_controller(store: Store, scope: Scope = None) -> dict[str, list[Obj]]:
    """Live (uncopied) pods grouped by their controlling owner's uid. Call under the store lock."""
    out: dict[str, list[Obj]] = {}
    for pod in in_scope(store, PODS, scope):
        uid = controller_uid(pod)
        if uid:
            out.setdefault(uid, []).append(pod)
    return out


class PodOwnerController(TimedController):
    """A controller that creates pods from its objects' templates (ReplicaSets, StatefulSets)."""

    def __init__(
        self, store: Store, config: SimConfig, pods: PodController, factory: PodFactory, events: EventRecorder
    ) -> None:
        self.store = store
        self.config = config
        self.pods = pods
        self.factory = factory
        self.events = events
        self._wakeups = Wakeups()


class ReplicaSetController(PodOwnerController):
    name = "replicasets"

    def __init__(
        self, store: Store, config: SimConfig, pods: PodController, factory: PodFactory, events: EventRecorder
    ) -> None:
        super().__init__(store, config, pods, factory, events)
        self._syncs = SyncCache(self._wakeups)  # `due`: when a ready pod of a ReplicaSet reaches minReadySeconds

    def reconcile(self, now: float, scope: Scope = None) -> None:
        self._wakeups.reset(scope)
        owned = pods_by_controller(self.store, scope)
        self._syncs.run(
            list(in_scope(self.store, REPLICASETS, scope)), now, scope,
            related=lambda uid: [p for p in owned.get(uid, []) if is_active(p)],
            # Neither the ReplicaSet nor its pods changed, and no pod is about to become available.
            inputs=lambda rs, pods: (rs["metadata"].get("resourceVersion"),
                                     tuple(p["metadata"].get("resourceVersion") for p in pods)),
            sync=self._sync,
        )

    def _sync(self, rs: Obj, pods: list[Obj], now: float) -> None:
        meta, spec = rs["metadata"], rs.get("spec", {})
        if meta.get("deletionTimestamp"):
            return  # being deleted: the garbage collector, not this controller, decides what goes
        ns = meta["namespace"]
        want = int(spec.get("replicas", 1))
        if len(pods) < want:
            template = spec.get("template") or {}
            for _ in range(want - len(pods)):
                pods.append(self._create_pod(template, ns, rs))
        elif len(pods) > want:
            # Like the real controller: give up pods that are not ready first, then the youngest.
            ranked = sorted(pods, key=lambda p: (is_ready(p), -(self.pods.born(p["metadata"]["uid"]) or math.inf)))
            for victim in ranked[: len(pods) - want]:
                with contextlib.suppress(StoreError):
                    self.store.delete(PODS, ns, victim["metadata"]["name"])
                pods.remove(victim)
        min_ready = float(spec.get("minReadySeconds") or 0)
        ready = [p for p in pods if is_ready(p)]
        available = 0
        for p in ready:
            if self.pods.available(p, now, min_ready):
                available += 1
            else:
                since = self.pods.ready_since(p["metadata"]["uid"])
                if since is not None:
                    due = self._syncs.due
                    due[meta["uid"]] = min(due.get(meta["uid"], math.inf), since + min_ready)
                    self._wakeups.note(ns, since + min_ready)
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": len(ready),
            "availableReplicas": available,
            "observedGeneration": meta.get("generation", 1),
        }
        if rs.get("status") != status:
            write_status(self.store, REPLICASETS, rs, status)

    def _create_pod(self, template: Obj, namespace: str, rs: Obj) -> Obj:
        pod = self.factory.build(template, namespace, rs)
        for _ in range(5):
            try:
                return self.store.create(PODS, pod)
            except StoreError as e:
                if e.code != 409:
                    raise
                pod["metadata"]["name"] = f"{rs['metadata']['name']}-{random_suffix(self.factory.rng)}"
        return self.store.create(PODS, pod)
