"""Deployments: the rollout logic of kube-controller-manager's deployment controller, pass by pass.

Each pass does what one sync of the real controller does: find or create the ReplicaSet for the current
pod template, move replicas from old ReplicaSets to it within maxSurge/maxUnavailable (or all at once for
Recreate), then write a status that `kubectl rollout status` and our own activities can read.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any

from deployflow.sim.config import SimConfig
from deployflow.sim.controllers.base import Scope, SyncCache, TimedController, Wakeups, in_scope, write_status
from deployflow.sim.controllers.deploymentutil import (
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_PROGRESS_DEADLINE,
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    REVISION,
    condition,
    fenceposts,
    revision_of,
    template_hash,
    without_hash,
)
from deployflow.sim.controllers.events import EventRecorder
from deployflow.sim.controllers.pods import is_terminal, owner_reference
from deployflow.sim.controllers.proportional import Sized, is_scaling_event, max_replicas_of, proportional_sizes
from deployflow.sim.resources import DEPLOYMENTS, PODS, REPLICASETS
from deployflow.sim.selectors import SelectorError, from_label_selector, matches
from deployflow.sim.store import Obj, Store, StoreError, now_iso

# Tests and other controllers name the rollout arithmetic from here.
__all__ = ["DeploymentController", "HASH_LABEL", "REVISION", "fenceposts", "template_hash"]


@dataclass
class _Rollout:
    """The ReplicaSets of one Deployment during a pass, with the scale decided so far."""

    new: Obj | None
    old: list[Obj]
    collision_count: int = 0
    scale: dict[str, int] = field(default_factory=dict)

    def replicas(self, rs: Obj) -> int:
        return self.scale.get(rs["metadata"]["name"], int(rs.get("spec", {}).get("replicas", 0)))

    def all(self) -> list[Obj]:
        return ([self.new] if self.new else []) + self.old


class DeploymentController(TimedController):
    name = "deployments"

    def __init__(self, store: Store, config: SimConfig, events: EventRecorder) -> None:
        self.store = store
        self.config = config
        self.events = events
        self._progress_at: dict[str, float] = {}  # deployment uid -> simulated time of the last progress
        self._wakeups = Wakeups()
        self._syncs = SyncCache(self._wakeups)  # `due`: when a Deployment's progress deadline needs a look

    def reconcile(self, now: float, scope: Scope = None) -> None:
        self._wakeups.reset(scope)
        by_owner: dict[str, list[Obj]] = {}
        for rs in in_scope(self.store, REPLICASETS, scope):
            for ref in rs["metadata"].get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == "Deployment":
                    by_owner.setdefault(ref["uid"], []).append(rs)

        def inputs(d: Obj, rss: list[Obj]) -> tuple[Any, ...]:
            # Nothing this Deployment reads changed and its deadline is not due: the last sync still holds.
            read: tuple[Any, ...] = (d["metadata"].get("resourceVersion"),
                                     tuple(sorted(rs["metadata"].get("resourceVersion", "") for rs in rss)))
            if ((d.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate":
                # Recreate also waits for terminating pods, which change no ReplicaSet when they go.
                read += (tuple(len(self.store.dependents(rs["metadata"]["uid"])) for rs in rss),)
            return read

        gone = self._syncs.run(
            list(in_scope(self.store, DEPLOYMENTS, scope)), now, scope,
            related=lambda uid: by_owner.get(uid, []), inputs=inputs, sync=self._sync,
        )
        for uid in gone:
            self._progress_at.pop(uid, None)
            self.events.forget(uid)

    # ---- one deployment ----------------------------------------------------------------------------------

    def _sync(self, d: Obj, rss: list[Obj], now: float) -> None:
        if d["metadata"].get("deletionTimestamp"):
            return  # being deleted: the garbage collector, not this controller, decides what goes
        spec = d.get("spec", {})
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels")
        try:
            selects_template = bool(spec.get("selector")) and matches(from_label_selector(spec["selector"]), labels)
        except SelectorError:
            selects_template = False
        if not selects_template:
            # The apiserver rejects these ("selector does not match template labels"); one that slipped
            # through would create pods its own ReplicaSet could never count, so leave it alone.
            return
        rss = sorted(rss, key=lambda r: (revision_of(r), r["metadata"].get("creationTimestamp", "")))
        new = next((rs for rs in rss if without_hash(rs["spec"].get("template")) == template), None)
        ro = _Rollout(new, [rs for rs in rss if rs is not new], int(d.get("status", {}).get("collisionCount") or 0))
        event: str | None = None
        if spec.get("paused"):
            # A paused Deployment still scales (kubectl scale works) when one ReplicaSet holds all pods.
            active = [rs for rs in rss if ro.replicas(rs) > 0] or ([new] if new else rss[-1:])
            want = int(spec.get("replicas", 1))
            if len(active) == 1 and ro.replicas(active[0]) != want:
                self._scale(d, ro, active[0], want)
            self._sync_status(d, ro, now, event)
            return
        max_rev = max((revision_of(rs) for rs in rss), default=0)
        if new is None:
            ro.new = self._create_rs(d, ro, template, max_rev + 1)
            event = "NewReplicaSetCreated"
        elif revision_of(new) < max_rev or revision_of(new) == 0:
            # A rollback (`kubectl rollout undo`) points the template back at an old ReplicaSet: reuse it,
            # and give it the newest revision so history reads in order.
            ro.new = self._set_revision(new, max_rev + 1)
            event = "FoundNewReplicaSet"
        assert ro.new is not None
        self._annotate_deployment(d, ro.new)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            self._recreate(d, ro)
        elif not self._scale_proportionally(d, ro):
            self._rolling(d, ro)
        self._sync_status(d, ro, now, event)

    def _create_rs(self, d: Obj, ro: _Rollout, template: Obj, revision: int) -> Obj:
        meta, spec = d["metadata"], d["spec"]
        while True:
            h = template_hash(template, ro.collision_count)
            name = f"{meta['name']}-{h}"
            existing = self.store.get(REPLICASETS, meta["namespace"], name)
            if existing is None:
                break
            owners = [r for r in existing["metadata"].get("ownerReferences") or [] if r.get("controller")]
            if not owners and without_hash(existing["spec"].get("template")) == template:
                # An orphan of ours (say, left by `kubectl delete --cascade=orphan`): adopt it, as the real
                # controller does, instead of creating a twin.
                return self.store.mutate(
                    REPLICASETS, meta["namespace"], name,
                    lambda o: o["metadata"].__setitem__("ownerReferences", [owner_reference(d)]))
            ro.collision_count += 1  # the name is taken by something else: what status.collisionCount is for
        rs_template = copy.deepcopy(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels[HASH_LABEL] = h
        replicas = int(spec.get("replicas", 1))
        surge, _ = fenceposts(d, replicas)
        rs = {
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {
                    REVISION: str(revision),
                    DESIRED_REPLICAS: str(replicas),
                    MAX_REPLICAS: str(replicas + surge),
                },
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": rs_template,
            },
        }
        return self.store.create(REPLICASETS, rs)

    def _set_revision(self, rs: Obj, revision: int) -> Obj:
        def bump(o: Obj) -> None:
            ann = o["metadata"].setdefault("annotations", {})
            old = ann.get(REVISION)
            ann[REVISION] = str(revision)
            if old and old != "0":
                history = [h for h in ann.get("deployment.kubernetes.io/revision-history", "").split(",") if h]
                ann["deployment.kubernetes.io/revision-history"] = ",".join(history + [old])

        return self.store.mutate(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], bump)

    def _annotate_deployment(self, d: Obj, new: Obj) -> None:
        revision = str(revision_of(new))
        if (d["metadata"].get("annotations") or {}).get(REVISION) != revision:
            self.store.mutate(DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"],
                              lambda o: o["metadata"].setdefault("annotations", {}).__setitem__(REVISION, revision))

    # ---- strategies ----------------------------------------------------------------------------------------

    def _scale(self, d: Obj, ro: _Rollout, rs: Obj, to: int) -> None:
        current = ro.replicas(rs)
        replicas = int(d["spec"].get("replicas", 1))
        surge, _ = fenceposts(d, replicas)
        min_ready = int(d["spec"].get("minReadySeconds") or 0)
        ro.scale[rs["metadata"]["name"]] = to

        def apply(o: Obj) -> None:
            o["spec"]["replicas"] = to
            o["spec"]["minReadySeconds"] = min_ready
            ann = o["metadata"].setdefault("annotations", {})
            ann[DESIRED_REPLICAS] = str(replicas)
            ann[MAX_REPLICAS] = str(replicas + surge)

        self.store.mutate(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], apply)
        if to != current:
            direction = "up" if to > current else "down"
            self.events.record(d, "Normal", "ScalingReplicaSet",
                               f"Scaled {direction} replica set {rs['metadata']['name']} from {current} to {to}",
                               "deployment-controller")

    def _scale_proportionally(self, d: Obj, ro: _Rollout) -> bool:
        """A Deployment scaled while several ReplicaSets have pods: each takes its share (see proportional)."""
        assert ro.new is not None
        replicas = int(d["spec"].get("replicas", 1))
        active = [rs for rs in ro.all() if ro.replicas(rs) > 0]
        if len(active) < 2 or not is_scaling_event(replicas, active):
            return False
        if ro.replicas(ro.new) == replicas == int((ro.new.get("status") or {}).get("availableReplicas") or 0):
            return False  # the new ReplicaSet is saturated: the rollout simply scales the old ones down
        surge, _ = fenceposts(d, replicas)
        sets = [Sized(rs["metadata"]["name"], ro.replicas(rs), revision_of(rs), max_replicas_of(rs)) for rs in active]
        sizes = proportional_sizes(sets, replicas, surge, int((d.get("status") or {}).get("replicas") or 0))
        for rs in active:
            self._scale(d, ro, rs, sizes[rs["metadata"]["name"]])
        return True

    def _recreate(self, d: Obj, ro: _Rollout) -> None:
        """Recreate: every old pod is gone before the first new one starts."""
        assert ro.new is not None
        replicas = int(d["spec"].get("replicas", 1))
        active_old = [rs for rs in ro.old if ro.replicas(rs) > 0]
        for rs in active_old:
            self._scale(d, ro, rs, 0)
        if active_old or any(int(rs.get("status", {}).get("replicas", 0)) > 0 for rs in ro.old):
            return  # wait until the old pods have terminated
        # Terminating pods still run (and may still serve): like the real controller, wait until they are gone.
        if any(dep_res.key == PODS.key and not is_terminal(pod)
               for rs in ro.old for dep_res, pod in self.store.dependents(rs["metadata"]["uid"])):
            return
        if ro.replicas(ro.new) != replicas:
            self._scale(d, ro, ro.new, replicas)
        self._cleanup(d, ro)

    def _rolling(self, d: Obj, ro: _Rollout) -> None:
        assert ro.new is not None
        if self._reconcile_new(d, ro):
            return
        if self._reconcile_old(d, ro):
            return
        self._cleanup(d, ro)

    def _reconcile_new(self, d: Obj, ro: _Rollout) -> bool:
        """Scale the new ReplicaSet up as far as maxSurge allows (deploymentutil.NewRSNewReplicas)."""
        assert ro.new is not None
        replicas = int(d["spec"].get("replicas", 1))
        current_new = ro.replicas(ro.new)
        if current_new == replicas:
            return False
        if current_new > replicas:
            self._scale(d, ro, ro.new, replicas)
            return True
        surge, _ = fenceposts(d, replicas)
        total = sum(ro.replicas(rs) for rs in ro.all())
        max_total = replicas + surge
        if total >= max_total:
            return False
        target = current_new + min(max_total - total, replicas - current_new)
        self._scale(d, ro, ro.new, target)
        return True

    def _reconcile_old(self, d: Obj, ro: _Rollout) -> bool:
        """Scale old ReplicaSets down without dropping below replicas - maxUnavailable available pods."""
        assert ro.new is not None
        if sum(ro.replicas(rs) for rs in ro.old) == 0:
            return False
        replicas = int(d["spec"].get("replicas", 1))
        _, unavailable = fenceposts(d, replicas)
        all_pods = sum(ro.replicas(rs) for rs in ro.all())
        min_available = replicas - unavailable
        new_unavailable = ro.replicas(ro.new) - int(ro.new.get("status", {}).get("availableReplicas", 0))
        max_scale_down = all_pods - min_available - new_unavailable
        if max_scale_down <= 0:
            return False
        scaled = 0
        # First drop old pods that are not available anyway: that costs no availability.
        for rs in sorted(ro.old, key=revision_of):
            if scaled >= max_scale_down:
                break
            have = ro.replicas(rs)
            if have == 0:
                continue
            unhealthy = have - int(rs.get("status", {}).get("availableReplicas", 0))
            unhealthy = min(unhealthy, have)
            if unhealthy <= 0:
                continue
            cut = min(unhealthy, max_scale_down - scaled)
            self._scale(d, ro, rs, have - cut)
            scaled += cut
        # Then healthy old pods, oldest first, as far as the available count allows (the pods dropped
        # above were not available, so they do not count against it).
        available = sum(int(rs.get("status", {}).get("availableReplicas", 0)) for rs in ro.all())
        allowed = available - min_available
        if allowed > 0:
            for rs in sorted(ro.old, key=revision_of):
                if allowed <= 0:
                    break
                have = ro.replicas(rs)
                if have == 0:
                    continue
                cut = min(have, allowed)
                self._scale(d, ro, rs, have - cut)
                scaled += cut
                allowed -= cut
        return scaled > 0

    def _cleanup(self, d: Obj, ro: _Rollout) -> None:
        """Keep at most revisionHistoryLimit scaled-down old ReplicaSets, deleting the oldest."""
        limit = d["spec"].get("revisionHistoryLimit")
        limit = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
        idle = [rs for rs in ro.old if ro.replicas(rs) == 0 and int(rs.get("status", {}).get("replicas", 0)) == 0]
        idle.sort(key=revision_of)
        for rs in idle[: max(len(idle) - limit, 0)]:
            with contextlib.suppress(StoreError):
                self.store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
            ro.old.remove(rs)

    # ---- status --------------------------------------------------------------------------------------------

    def _sync_status(self, d: Obj, ro: _Rollout, now: float, event: str | None) -> None:
        meta, spec = d["metadata"], d["spec"]
        uid = meta["uid"]
        old = d.get("status") or {}
        replicas = int(spec.get("replicas", 1))
        rss = ro.all()

        def total(key: str) -> int:
            return sum(int(rs.get("status", {}).get(key, 0)) for rs in rss)

        available = total("availableReplicas")
        spec_total = sum(ro.replicas(rs) for rs in rss)
        status: Obj = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": total("replicas"),
            "updatedReplicas": int(ro.new.get("status", {}).get("replicas", 0)) if ro.new else 0,
            "readyReplicas": total("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(spec_total - available, 0),
        }
        if ro.collision_count:
            status["collisionCount"] = ro.collision_count
        # Zero counts are omitted on the wire by the real apiserver (omitempty), except replicas-ish fields
        # clients read with defaults anyway; keep them explicit, the Python client tolerates both.
        conds = {c["type"]: c for c in old.get("conditions") or []}
        stamp = now_iso()
        _, max_unavailable = fenceposts(d, replicas)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            max_unavailable = 0
        if available >= replicas - max_unavailable:
            avail = condition(conds.get("Available"), "Available", "True", "MinimumReplicasAvailable",
                               "Deployment has minimum availability.", stamp)
        else:
            avail = condition(conds.get("Available"), "Available", "False", "MinimumReplicasUnavailable",
                               "Deployment does not have minimum availability.", stamp)
        rs_name = ro.new["metadata"]["name"] if ro.new else ""
        prog_old = conds.get("Progressing")
        deadline = spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE)
        complete = (
            ro.new is not None
            and status["updatedReplicas"] == replicas
            and status["replicas"] == replicas
            and available == replicas
        )
        progressed = (
            status["updatedReplicas"] > int(old.get("updatedReplicas", 0))
            or status["replicas"] - status["updatedReplicas"]
            < int(old.get("replicas", 0)) - int(old.get("updatedReplicas", 0))
            or status["readyReplicas"] > int(old.get("readyReplicas", 0))
            or available > int(old.get("availableReplicas", 0))
        )
        prog = prog_old
        if spec.get("paused"):
            prog = condition(prog_old, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", stamp)
            self._progress_at.pop(uid, None)
        elif prog_old and prog_old.get("reason") == "DeploymentPaused":
            prog = condition(prog_old, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", stamp)
            self._progress_at[uid] = now
        elif event == "NewReplicaSetCreated":
            prog = condition(prog_old, "Progressing", "True", event, f'Created new replica set "{rs_name}"', stamp)
            self._progress_at[uid] = now
        elif event == "FoundNewReplicaSet":
            prog = condition(prog_old, "Progressing", "True", event, f'Found new replica set "{rs_name}"', stamp)
            self._progress_at[uid] = now
        elif complete:
            prog = condition(prog_old, "Progressing", "True", "NewReplicaSetAvailable",
                              f'ReplicaSet "{rs_name}" has successfully progressed.', stamp)
            self._progress_at.pop(uid, None)
        elif progressed or prog_old is None:
            prog = condition(prog_old, "Progressing", "True", "ReplicaSetUpdated",
                              f'ReplicaSet "{rs_name}" is progressing.', stamp, touch=True)
            self._progress_at[uid] = now
        elif deadline is not None and (prog_old or {}).get("reason") != "ProgressDeadlineExceeded":
            since = self._progress_at.setdefault(uid, now)
            if now - since > float(deadline):
                prog = condition(prog_old, "Progressing", "False", "ProgressDeadlineExceeded",
                                  f'ReplicaSet "{rs_name}" has timed out progressing.', stamp)
            else:
                self._syncs.due[uid] = since + float(deadline) + 1e-6
                self._wakeups.note(meta["namespace"], self._syncs.due[uid])
        status["conditions"] = [c for c in (avail, prog) if c]
        if status != old:
            write_status(self.store, DEPLOYMENTS, d, status)

