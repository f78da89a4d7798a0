"""What controllers share: per-namespace timers, so a pass can be limited to the namespaces that need one."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from deployflow.sim.store import Obj, Resource, Store, StoreError

Scope = set[str] | None  # namespaces a pass covers; None: all of them


class Wakeups:
    """The earliest simulated time at which something in each namespace changes by itself."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def reset(self, scope: Scope) -> None:
        if scope is None:
            self._at.clear()
        else:
            for ns in scope:
                self._at.pop(ns, None)

    def note(self, namespace: str, at: float) -> None:
        if at < self._at.get(namespace, math.inf):
            self._at[namespace] = at

    def next(self) -> float:
        return min(self._at.values(), default=math.inf)

    def due(self, now: float) -> set[str]:
        return {ns for ns, at in self._at.items() if at <= now}


class TimedController:
    """A namespace-scoped controller whose objects change by themselves at known simulated times (a pod turning
    ready, a progress deadline): the manager wakes it at the earliest of those, only for the namespaces due."""

    scoped = True
    _wakeups: Wakeups

    def next_wakeup(self) -> float:
        return self._wakeups.next()

    def due_namespaces(self, now: float) -> set[str]:
        return self._wakeups.due(now)


class SyncCache:
    """Skips the sync of an object when nothing it reads changed since its last sync and its own deadline (`due`,
    e.g. a pod reaching minReadySeconds) has not come: most passes then touch nothing."""

    def __init__(self, wakeups: Wakeups) -> None:
        self.wakeups = wakeups
        self.ns: dict[str, str] = {}  # uid -> namespace, to forget objects deleted within a scope
        self.inputs: dict[str, tuple[Any, ...]] = {}  # what an object's last sync read (resourceVersions)
        self.due: dict[str, float] = {}  # when an object needs a sync although nothing changed

    def run(
        self,
        objs: Iterable[Obj],
        now: float,
        scope: Scope,
        related: Callable[[str], list[Obj]],
        inputs: Callable[[Obj, list[Obj]], tuple[Any, ...]],
        sync: Callable[[Obj, list[Obj], float], None],
    ) -> list[str]:
        """Syncs each object whose inputs changed or whose deadline is due, with the objects `related` to its uid;
        returns the uids of objects gone from `scope` (forgotten here; the caller forgets its own records)."""
        seen = set()
        for obj in objs:
            uid, ns = obj["metadata"]["uid"], obj["metadata"]["namespace"]
            seen.add(uid)
            self.ns[uid] = ns
            rel = related(uid)
            read = inputs(obj, rel)
            due = self.due.get(uid, math.inf)
            if self.inputs.get(uid) == read and now < due:
                self.wakeups.note(ns, due)
                continue
            self.due[uid] = math.inf
            try:
                sync(obj, rel, now)
            except StoreError:
                self.inputs.pop(uid, None)
                continue  # deleted while we worked on it
            self.inputs[uid] = read
        gone = [u for u, ns in self.ns.items() if u not in seen and (scope is None or ns in scope)]
        for uid in gone:
            for table in (self.ns, self.inputs, self.due):
                table.pop(uid, None)
        return gone


def in_scope(store: Store, res: Resource, scope: Scope) -> Iterator[Obj]:
    """Live objects of `res` in the namespaces of `scope`. Call under the store lock; do not mutate."""
    if scope is None:
        yield from store.peek(res)
        return
    for obj in store.peek(res):
        if obj["metadata"].get("namespace", "") in scope:
            yield obj


def namespaces_of(objs: Iterable[Obj]) -> set[str]:
    return {o["metadata"].get("namespace", "") for o in objs}


def write_status(store: Store, res: Resource, obj: Obj, status: Obj) -> None:
    """Replaces `status` through the status subresource: cheaper than a read-modify-write of the whole object."""
    meta = obj["metadata"]
    stub = {"metadata": {"name": meta["name"], "namespace": meta.get("namespace", "")}, "status": status}
    store.update(res, stub, check_rv=False, subresource="status")
