"""Deletion as the apiserver and the garbage collector do it: graceful pods, finalizers, and Foreground, Background
and Orphan propagation, with dependents found through an owner index (uid -> dependents) rather than a scan.

A mixin of `Store`: it works on the store's tables under the store's lock.
"""

from __future__ import annotations

import copy
import threading

from deployflow.sim.objects import Obj, Resource, not_found, now_iso

Key = tuple[str, str]  # (namespace, name)

DEFAULT_GRACE_SECONDS = 30  # a pod's terminationGracePeriodSeconds when its spec has none
FOREGROUND = "foregroundDeletion"


class Deletion:
    lock: threading.RLock
    _objects: dict[str, dict[Key, Obj]]
    _by_uid: dict[str, tuple[str, Key]]
    _dependents: dict[str, set[tuple[str, Key]]]
    _pending_grace: set[str]  # uids of pods in their grace period
    _in_namespace: dict[str, dict[str, set[Key]]]  # resource key -> namespace -> keys, for lists and peeks
    _encoded: dict[tuple[str, str, str], tuple[str | None, bytes]]  # JSON of each stored version, for lists

    def _commit(self, etype: str, res: Resource, k: Key, obj: Obj, store: bool = True,
                old: Obj | None = None) -> Obj:
        raise NotImplementedError

    def _resource_of(self, key: str, obj: Obj) -> Resource:
        raise NotImplementedError

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        grace_seconds: float | None = None,
        propagation: str | None = None,
    ) -> Obj:
        """Deletes an object the way the apiserver and the garbage collector do.

        A pod is only marked (deletionTimestamp, deletionGracePeriodSeconds: `grace_seconds`, else its
        terminationGracePeriodSeconds, else 30) and stays Terminating until the kubelet, the pod controller, ends
        its grace period with `finish_termination`; 0 removes it at once. An object with finalizers stays until a
        write removes the last one. `propagation`: Background (the default: dependents go once the owner is
        gone), Foreground (the owner waits, with the foregroundDeletion finalizer, until its dependents are gone)
        or Orphan (dependents lose their owner reference and stay). Dependents are found through the owner
        index, never by scanning. Returns the object as the deletion left it.
        """
        with self.lock:
            k = (namespace or "" if res.namespaced else "", name)
            current = self._objects.get(res.key, {}).get(k)
            if current is None:
                raise not_found(res, name)
            return self._delete(res, k, current, grace_seconds, propagation or "Background")

    def finish_termination(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        """Ends a pod's grace period: it goes now, or when its last finalizer does."""
        with self.lock:
            k = (namespace or "", name)
            current = self._objects.get(res.key, {}).get(k)
            if current is None:
                return None
            self._pending_grace.discard(current["metadata"]["uid"])
            return self._finish_if_done(res, k)

    def dependents(self, owner_uid: str) -> tuple[tuple[Resource, Obj], ...]:
        """Objects naming `owner_uid` in their ownerReferences (live, uncopied: call under the lock)."""
        found = ((key, self._objects.get(key, {}).get(k)) for key, k in sorted(self._dependents.get(owner_uid, ())))
        return tuple((self._resource_of(key, obj), obj) for key, obj in found if obj is not None)

    def _delete(self, res: Resource, k: tuple[str, str], current: Obj, grace: float | None, policy: str) -> Obj:
        meta = current["metadata"]
        uid = meta["uid"]
        if policy == "Orphan":
            self._orphan(uid)
        is_pod = res.key == "pods"
        if is_pod and grace is None:
            grace = float((current.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        grace = max(grace or 0.0, 0.0)
        if meta.get("deletionTimestamp"):
            # Already going: a shorter grace period (`kubectl delete --grace-period=0 --force`) brings the end
            # forward; nothing else changes.
            if is_pod and grace == 0:
                self._pending_grace.discard(uid)
                return self._finish_if_done(res, k) or copy.deepcopy(current)
            return copy.deepcopy(current)
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and self._dependents.get(uid) and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        graceful = is_pod and grace > 0
        if not finalizers and not graceful:
            return self._remove(res, k)
        new = copy.deepcopy(current)
        new_meta = new["metadata"]
        new_meta["deletionTimestamp"] = now_iso()
        new_meta["deletionGracePeriodSeconds"] = int(grace) if is_pod else 0
        if finalizers:
            new_meta["finalizers"] = finalizers
        if graceful:
            self._pending_grace.add(uid)
        out = self._commit("MODIFIED", res, k, new, old=current)
        if policy == "Foreground":
            self._delete_dependents(uid, "Foreground")
            self._owner_progress(uid)
        return out

    def _finish_if_done(self, res: Resource, k: tuple[str, str]) -> Obj | None:
        """Removes an object being deleted once nothing holds it: no finalizer and no grace period left."""
        obj = self._objects.get(res.key, {}).get(k)
        if obj is None:
            return None
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers") or meta["uid"] in self._pending_grace:
            return None
        return self._remove(res, k)

    def _remove(self, res: Resource, k: tuple[str, str], cascade: bool = True) -> Obj:
        """Takes an object out of the store; its dependents are deleted (Background), its owners told."""
        obj = self._objects[res.key].pop(k)
        self._reindex(res.key, k, None, obj)
        uid = obj["metadata"]["uid"]
        self._pending_grace.discard(uid)
        obj["metadata"].setdefault("deletionTimestamp", now_iso())
        gone = self._commit("DELETED", res, k, obj, store=False)
        if res.key == "namespaces":
            self.delete_namespace_contents(k[1])
        if cascade:
            self._delete_dependents(uid, "Background")
            for owner_uid in owner_uids(obj):
                self._owner_progress(owner_uid)
        return gone

    def _delete_dependents(self, owner_uid: str, policy: str) -> None:
        for dep_res, dep in self.dependents(owner_uid):
            meta = dep["metadata"]
            self._delete(dep_res, (meta.get("namespace", ""), meta["name"]), dep, None, policy)

    def _owner_progress(self, owner_uid: str) -> None:
        """A foreground deletion ends when the owner's last dependent is gone."""
        where = self._by_uid.get(owner_uid)
        if where is None or self._dependents.get(owner_uid):
            return
        key, k = where
        owner = self._objects.get(key, {}).get(k)
        if owner is None or FOREGROUND not in (owner["metadata"].get("finalizers") or []):
            return
        res = self._resource_of(key, owner)
        new = copy.deepcopy(owner)
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"] if f != FOREGROUND]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self._commit("MODIFIED", res, k, new, old=owner)
        self._finish_if_done(res, k)

    def _orphan(self, owner_uid: str) -> None:
        for dep_res, dep in self.dependents(owner_uid):
            new = copy.deepcopy(dep)
            refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self._commit("MODIFIED", dep_res, (dep["metadata"].get("namespace", ""), dep["metadata"]["name"]), new,
                         old=dep)

    def delete_namespace_contents(self, namespace: str) -> None:
        """Everything in a deleted namespace goes at once."""
        with self.lock:
            for key, by_namespace in list(self._in_namespace.items()):
                objs = self._objects.get(key, {})
                for k in list(by_namespace.get(namespace, ())):
                    if k in objs:
                        self._remove(self._resource_of(key, objs[k]), k, cascade=False)

    def _reindex(self, key: str, k: tuple[str, str], new: Obj | None, old: Obj | None) -> None:
        """Keeps the uid, owner and namespace indexes in step with a stored object's change (None: absent)."""
        before, after = owner_uids(old), owner_uids(new)
        for owner in before - after:
            deps = self._dependents.get(owner)
            if deps is not None:
                deps.discard((key, k))
                if not deps:
                    del self._dependents[owner]
        for owner in after - before:
            self._dependents.setdefault(owner, set()).add((key, k))
        if old is not None and new is None:
            self._by_uid.pop(old["metadata"].get("uid", ""), None)
            self._encoded.pop((key, *k), None)
            names = self._in_namespace.get(key, {}).get(k[0])
            if names is not None:
                names.discard(k)
        if new is not None:
            self._by_uid[new["metadata"]["uid"]] = (key, k)
            self._in_namespace.setdefault(key, {}).setdefault(k[0], set()).add(k)


def owner_uids(obj: Obj | None) -> set[str]:
    if obj is None:
        return set()
    return {str(r.get("uid")) for r in obj.get("metadata", {}).get("ownerReferences") or [] if r.get("uid")}

