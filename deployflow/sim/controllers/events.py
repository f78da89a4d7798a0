"""core/v1 Events, as controllers and the kubelet record them (`kubectl describe` and `get events` read these)."""

from __future__ import annotations

import uuid

from deployflow.sim.resources import EVENTS
from deployflow.sim.store import Obj, Store, StoreError, now_iso


class EventRecorder:
    """Repeats of the same (object, reason, message) bump `count` on one Event, as the real recorder does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[tuple[str, str, str], tuple[str, str]] = {}

    def record(self, obj: Obj, etype: str, reason: str, message: str, component: str) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message)
        stamp = now_iso()
        if key in self._seen:
            ns, name = self._seen[key]

            def bump(ev: Obj) -> None:
                ev["count"] = int(ev.get("count", 1)) + 1
                ev["lastTimestamp"] = stamp

            try:
                self.store.mutate(EVENTS, ns, name, bump)
                return
            except StoreError:
                del self._seen[key]  # deleted by a client; start a new one
        name = f"{meta.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}"
        event: Obj = {
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": etype,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component},
            "reportingComponent": component,
        }
        try:
            self.store.create(EVENTS, event)
        except StoreError:
            return  # namespace being deleted: events are best-effort, as in a real cluster
        self._seen[key] = (namespace, name)

    def forget(self, uid: str) -> None:
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]
