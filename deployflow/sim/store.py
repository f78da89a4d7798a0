"""The simulator's object store: what etcd plus the apiserver's storage layer are in a real cluster.

Objects are plain dicts shaped exactly like the Kubernetes JSON. Every change gets a new, cluster-wide
resourceVersion and becomes a watch event; the last events are kept so a watch can start from an
older resourceVersion, as clients (kubectl, the Python client's Watch) expect.
"""

from __future__ import annotations

import builtins
import copy
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from deployflow.sim.deletion import Deletion
from deployflow.sim.objects import Obj, Resource, StoreError, not_found, now_iso

__all__ = ["Obj", "Resource", "Store", "StoreError", "WatchEvent", "not_found", "now_iso"]


@dataclass
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    resource: Resource
    object: Obj
    resource_version: int
    old: Obj | None = None  # the object before a MODIFIED, so a watch with a selector can see it leave


@dataclass
class _Subscription:
    resource: Resource
    namespace: str | None
    callback: Callable[[WatchEvent], None]


@dataclass
class Store(Deletion):
    """Thread-safe: the HTTP layer, the controllers and tests touch it from different threads."""

    history_size: int = 20000
    lock: threading.RLock = field(default_factory=threading.RLock)
    _rv: int = 0
    _objects: dict[str, dict[tuple[str, str], Obj]] = field(default_factory=dict)
    _history: deque[WatchEvent] = field(default_factory=deque)
    _subs: list[_Subscription] = field(default_factory=list)
    _by_uid: dict[str, tuple[str, tuple[str, str]]] = field(default_factory=dict)
    _dependents: dict[str, set[tuple[str, tuple[str, str]]]] = field(default_factory=dict)
    _pending_grace: set[str] = field(default_factory=set)  # uids of pods in their grace period
    _in_namespace: dict[str, dict[str, set[tuple[str, str]]]] = field(default_factory=dict)
    _encoded: dict[tuple[str, str, str], tuple[str | None, bytes]] = field(default_factory=dict)

    # ---- reads -------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def oldest_resource_version(self) -> int:
        with self.lock:
            return self._history[0].resource_version if self._history else self._rv

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            obj = self._objects.get(res.key, {}).get((namespace or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        predicate: Callable[[Obj], bool] | None = None,
    ) -> list[Obj]:
        with self.lock:
            return [copy.deepcopy(obj) for obj in self._select(res, namespace, predicate)]

    def list_encoded(
        self,
        res: Resource,
        namespace: str | None = None,
        predicate: Callable[[Obj], bool] | None = None,
    ) -> builtins.list[bytes]:
        """What `list` gives, each object as compact JSON: for responses serialised at once, with no deep copy.

        Each stored version is encoded once (objects are replaced, never changed in place, on every write).
        """
        with self.lock:
            out = []
            for obj in self._select(res, namespace, predicate):
                meta = obj["metadata"]
                k = (res.key, meta.get("namespace", "") if res.namespaced else "", meta["name"])
                rv = meta.get("resourceVersion")
                cached = self._encoded.get(k)
                if cached is None or cached[0] != rv:
                    cached = self._encoded[k] = (rv, json.dumps(obj, separators=(",", ":")).encode())
                out.append(cached[1])
            return out

    def _select(
        self, res: Resource, namespace: str | None, predicate: Callable[[Obj], bool] | None
    ) -> builtins.list[Obj]:
        """Live objects in name order, from the namespace's own index when one is named. Call under the lock."""
        bucket = self._objects.get(res.key, {})
        if namespace and res.namespaced:
            keys = sorted(self._in_namespace.get(res.key, {}).get(namespace, ()))
        else:
            keys = sorted(bucket)
        objs = [bucket[k] for k in keys]
        return [obj for obj in objs if predicate(obj)] if predicate else objs

    def peek(self, res: Resource, namespace: str | None = None) -> Iterable[Obj]:
        """Objects without copying, for controllers and traffic inside the lock. Do not mutate."""
        if namespace and res.namespaced:
            bucket = self._objects.get(res.key, {})
            yield from (bucket[k] for k in list(self._in_namespace.get(res.key, {}).get(namespace, ())))
            return
        yield from self._objects.get(res.key, {}).values()

    # ---- writes ------------------------------------------------------------------------------------

    def create(self, res: Resource, obj: Obj) -> Obj:
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise StoreError(422, "Invalid", "metadata.name: Required value", {"field": "metadata.name"})
            ns = meta.get("namespace", "") if res.namespaced else ""
            if res.namespaced and not ns:
                raise StoreError(422, "Invalid", "metadata.namespace: Required value")
            bucket = self._objects.setdefault(res.key, {})
            if (ns, name) in bucket:
                raise StoreError(
                    409,
                    "AlreadyExists",
                    f'{res.key} "{name}" already exists',
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            obj["apiVersion"] = res.group_version
            obj["kind"] = res.kind
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            meta["generation"] = 1
            meta.pop("resourceVersion", None)
            meta.pop("deletionTimestamp", None)
            meta.pop("deletionGracePeriodSeconds", None)
            return self._commit("ADDED", res, (ns, name), obj)

    def update(self, res: Resource, obj: Obj, *, check_rv: bool = True, subresource: str | None = None) -> Obj:
        """Replaces an object. A stale metadata.resourceVersion gives 409 Conflict, as on a real apiserver.

        With subresource="status" only `status` changes; otherwise `status` is kept from the stored object
        for resources that have a status subresource, and generation bumps when anything but metadata
        and status changed.
        """
        with self.lock:
            meta = obj.get("metadata", {})
            name = meta.get("name", "")
            ns = meta.get("namespace", "") if res.namespaced else ""
            current = self._objects.get(res.key, {}).get((ns, name))
            if current is None:
                raise not_found(res, name)
            sent_rv = meta.get("resourceVersion")
            if check_rv and sent_rv and str(sent_rv) != current["metadata"]["resourceVersion"]:
                raise StoreError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {res.key} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            new = copy.deepcopy(obj)
            new["apiVersion"] = res.group_version
            new["kind"] = res.kind
            new_meta = new.setdefault("metadata", {})
            for keep in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if keep in current["metadata"]:
                    new_meta[keep] = current["metadata"][keep]
                else:
                    new_meta.pop(keep, None)
            if subresource == "status":
                merged = copy.deepcopy(current)
                merged["status"] = new.get("status", {})
                new = merged
            else:
                if "status" in res.subresources:
                    if "status" in current:
                        new["status"] = copy.deepcopy(current["status"])
                    else:
                        new.pop("status", None)
                if _spec_of(new) != _spec_of(current):
                    new_meta["generation"] = current["metadata"].get("generation", 1) + 1
            if new == current:
                return copy.deepcopy(current)  # no-op writes don't bump resourceVersion, like the apiserver
            out = self._commit("MODIFIED", res, (ns, name), new, old=current)
            if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
                self._finish_if_done(res, (ns, name))  # the last finalizer went: the deletion completes
            return out

    def mutate(self, res: Resource, namespace: str | None, name: str, fn: Callable[[Obj], None]) -> Obj:
        """Read-modify-write under the lock, for controllers (never conflicts)."""
        with self.lock:
            current = self.get(res, namespace, name)
            if current is None:
                raise not_found(res, name)
            before = copy.deepcopy(current)
            fn(current)
            if current == before:
                return current
            subresource = None
            if _spec_of(current) == _spec_of(before) and current.get("metadata") == before.get("metadata"):
                subresource = "status"
            return self.update(res, current, check_rv=False, subresource=subresource)

    def _resource_of(self, key: str, obj: Obj) -> Resource:
        # Reconstructs enough of a Resource for a watch event of a cascaded deletion.
        plural, _, group = key.partition(".")
        api_version = obj.get("apiVersion", "v1")
        version = api_version.split("/")[-1]
        return self._known.get(key) or Resource(group=group, version=version, kind=obj.get("kind", ""), plural=plural)

    _known: dict[str, Resource] = field(default_factory=dict)

    def _commit(
        self, etype: str, res: Resource, k: tuple[str, str], obj: Obj, store: bool = True, old: Obj | None = None
    ) -> Obj:
        self._known.setdefault(res.key, res)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if store:
            bucket = self._objects.setdefault(res.key, {})
            self._reindex(res.key, k, obj, bucket.get(k))
            bucket[k] = obj
        # `old` is the replaced stored object: nothing references or mutates it any more, so no copy.
        event = WatchEvent(etype, res, copy.deepcopy(obj), self._rv, old)
        self._history.append(event)
        while len(self._history) > self.history_size:
            self._history.popleft()
        for sub in list(self._subs):
            if sub.resource.key == res.key and (sub.namespace in (None, "", k[0])):
                sub.callback(event)
        return copy.deepcopy(obj)

    # ---- watch -------------------------------------------------------------------------------------

    def subscribe(
        self,
        res: Resource,
        namespace: str | None,
        callback: Callable[[WatchEvent], None],
        since: int | None = None,
    ) -> Callable[[], None]:
        """Calls `callback` for every event after resourceVersion `since` (replayed from history), then live.

        Raises 410 Gone when `since` is older than the kept history. Returns an unsubscribe function.
        The callback runs under the store lock: it must only enqueue.
        """
        with self.lock:
            if since is not None and since < self._rv:
                oldest = self._history[0].resource_version if self._history else self._rv + 1
                if since + 1 < oldest:
                    raise StoreError(410, "Expired", f"too old resource version: {since} ({oldest - 1})")
                for event in self._history:
                    if (
                        event.resource_version > since
                        and event.resource.key == res.key
                        and (not namespace or event.object["metadata"].get("namespace", "") == namespace)
                    ):
                        callback(event)
            sub = _Subscription(res, namespace, callback)
            self._subs.append(sub)

        def unsubscribe() -> None:
            with self.lock:
                if sub in self._subs:
                    self._subs.remove(sub)

        return unsubscribe


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
