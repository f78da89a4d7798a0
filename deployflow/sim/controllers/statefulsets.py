"""StatefulSets: ordinal pods `<name>-0..N-1`, ControllerRevisions, and partitioned rolling updates.

What the real controller does and this one copies:

- every distinct pod template gets a ControllerRevision `<name>-<hash>` (revision numbers grow); pods carry the
  label `controller-revision-hash` naming the revision they were built from;
- `OrderedReady` (the default) creates pods in ordinal order, each only once the one before it is Ready, and
  removes surplus pods from the highest ordinal down; `Parallel` creates and removes all at once;
- `RollingUpdate` replaces pods whose revision is not the update revision, highest ordinal first, one at a time
  and only while every other pod is Ready; pods below `partition` keep (and are recreated at) the current
  revision; `OnDelete` never replaces pods by itself;
- status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas, currentRevision,
  updateRevision, observedGeneration. currentRevision becomes updateRevision once every pod runs it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re

from deployflow.sim.controllers.base import Scope, in_scope
from deployflow.sim.controllers.pods import controller_uid, is_ready, owner_reference
from deployflow.sim.controllers.replicasets import PodOwnerController, pods_by_controller
from deployflow.sim.resources import CONTROLLERREVISIONS, PODS, STATEFULSETS
from deployflow.sim.store import Obj, StoreError

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj) -> str:
    """A short, stable, label-safe hash of a pod template (the role of the real controller's FNV hash)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:10])


def ordinal_of(sts_name: str, pod: Obj) -> int | None:
    match = re.fullmatch(re.escape(sts_name) + r"-(\d+)", pod["metadata"]["name"])
    return int(match.group(1)) if match else None


class StatefulSetController(PodOwnerController):
    name = "statefulsets"

    def reconcile(self, now: float, scope: Scope = None) -> None:
        self._wakeups.reset(scope)
        statefulsets = list(in_scope(self.store, STATEFULSETS, scope))
        if not statefulsets:
            return
        owned = pods_by_controller(self.store, scope)
        for sts in statefulsets:
            try:
                self._sync(copy.deepcopy(sts), owned.get(sts["metadata"]["uid"], []), now)
            except StoreError:
                continue  # deleted while we worked on it

    # ---- revisions -----------------------------------------------------------------------------------

    def _revisions(self, sts: Obj) -> list[Obj]:
        uid = sts["metadata"]["uid"]
        return [
            cr for cr in self.store.list(CONTROLLERREVISIONS, sts["metadata"]["namespace"])
            if controller_uid(cr) == uid
        ]

    def _ensure_revision(self, sts: Obj, revisions: list[Obj]) -> Obj:
        template = sts["spec"].get("template") or {}
        name = f"{sts['metadata']['name']}-{template_hash(template)}"
        next_number = max((int(cr.get("revision", 0)) for cr in revisions), default=0) + 1
        for cr in revisions:
            if cr["metadata"]["name"] == name:
                if int(cr.get("revision", 0)) != next_number - 1:
                    # Going back to an older template re-uses its revision object with a new number, as upstream.
                    cr = self.store.mutate(
                        CONTROLLERREVISIONS, sts["metadata"]["namespace"], name,
                        lambda o: o.__setitem__("revision", next_number),
                    )
                return cr
        selector_labels = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
        revision = {
            "metadata": {
                "name": name,
                "namespace": sts["metadata"]["namespace"],
                "labels": {**selector_labels, REVISION_LABEL: name},
                "ownerReferences": [owner_reference(sts)],
            },
            "data": {"spec": {"template": {**copy.deepcopy(template), "$patch": "replace"}}},
            "revision": next_number,
        }
        created = self.store.create(CONTROLLERREVISIONS, revision)
        self.events.record(sts, "Normal", "SuccessfulCreate", f"create ControllerRevision {name}", "statefulset")
        return created

    @staticmethod
    def _template_of(revision: Obj) -> Obj:
        template = copy.deepcopy(revision["data"]["spec"]["template"])
        template.pop("$patch", None)
        return template

    # ---- reconcile -----------------------------------------------------------------------------------

    def _sync(self, sts: Obj, pods: list[Obj], now: float) -> None:
        meta, spec = sts["metadata"], sts["spec"]
        ns, name = meta["namespace"], meta["name"]
        replicas = int(spec.get("replicas", 1))
        revisions = self._revisions(sts)
        update_rev = self._ensure_revision(sts, revisions)
        revisions = self._revisions(sts)
        by_name = {cr["metadata"]["name"]: cr for cr in revisions}
        status = sts.get("status") or {}
        current_name = status.get("currentRevision")
        current_rev = by_name.get(current_name or "", update_rev)
        update_name = update_rev["metadata"]["name"]

        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int(((strategy.get("rollingUpdate") or {}).get("partition")) or 0) if rolling else 0
        parallel = spec.get("podManagementPolicy") == "Parallel"

        by_ordinal: dict[int, Obj] = {}
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            ordinal = ordinal_of(name, pod)
            if ordinal is not None:
                by_ordinal[ordinal] = pod

        def revision_for(ordinal: int) -> Obj:
            # On RollingUpdate pods at or above the partition get the update revision; OnDelete too (recreated ones).
            if not rolling or ordinal >= partition:
                return update_rev
            return current_rev

        # Create missing pods (ordered: stop at the first that is missing or not Ready).
        for ordinal in range(replicas):
            existing = by_ordinal.get(ordinal)
            if existing is None:
                by_ordinal[ordinal] = self._create_pod(sts, ordinal, revision_for(ordinal))
                if not parallel:
                    break
            elif not parallel and not is_ready(existing):
                break

        # Remove surplus pods, highest ordinal first (ordered: one at a time, once all others are Ready).
        surplus = sorted((o for o in by_ordinal if o >= replicas), reverse=True)
        for ordinal in surplus:
            if not parallel and not all(is_ready(p) for o, p in by_ordinal.items() if o < replicas):
                break
            self._delete_pod(sts, by_ordinal.pop(ordinal))
            if not parallel:
                break

        # Rolling update: replace the highest-ordinal pod not at its target revision, while every pod is Ready.
        if rolling:
            healthy = len(by_ordinal) == replicas and all(is_ready(p) for p in by_ordinal.values())
            if healthy:
                for ordinal in range(replicas - 1, partition - 1, -1):
                    pod = by_ordinal[ordinal]
                    if pod["metadata"].get("labels", {}).get(REVISION_LABEL) != update_name:
                        self._delete_pod(sts, pod)
                        del by_ordinal[ordinal]
                        break

        live = [p for o, p in by_ordinal.items() if o < replicas]
        ready = [p for p in live if is_ready(p)]
        min_ready = float(spec.get("minReadySeconds") or 0)
        available = sum(1 for p in ready if self.pods.available(p, now, min_ready))
        for p in ready:
            since = self.pods.ready_since(p["metadata"]["uid"])
            if since is not None and now - since < min_ready:
                self._wakeups.note(ns, since + min_ready)
        current_name = current_rev["metadata"]["name"]
        updated = sum(1 for p in live if p["metadata"].get("labels", {}).get(REVISION_LABEL) == update_name)
        current = sum(1 for p in live if p["metadata"].get("labels", {}).get(REVISION_LABEL) == current_name)
        if updated == replicas and len(ready) == replicas:
            current_name, current = update_name, updated
        new_status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(live),
            "readyReplicas": len(ready),
            "availableReplicas": available,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_name,
            "updateRevision": update_name,
            "collisionCount": status.get("collisionCount", 0),
        }
        if status != new_status:
            self.store.mutate(STATEFULSETS, ns, name, lambda o: o.__setitem__("status", new_status))

    def _create_pod(self, sts: Obj, ordinal: int, revision: Obj) -> Obj:
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = self.factory.build(
            self._template_of(revision),
            sts["metadata"]["namespace"],
            sts,
            name=name,
            extra_labels={
                REVISION_LABEL: revision["metadata"]["name"],
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: str(ordinal),
            },
        )
        pod["spec"]["hostname"] = name
        if sts["spec"].get("serviceName"):
            pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
        created = self.store.create(PODS, pod)
        self.events.record(
            sts, "Normal", "SuccessfulCreate", f"create Pod {name} in StatefulSet {sts['metadata']['name']} successful",
            "statefulset-controller",
        )
        return created

    def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        try:
            self.store.delete(PODS, pod["metadata"]["namespace"], name)
        except StoreError:
            return
        self.events.record(
            sts, "Normal", "SuccessfulDelete", f"delete Pod {name} in StatefulSet {sts['metadata']['name']} successful",
            "statefulset-controller",
        )
