"""Pods: what the scheduler and the kubelet do, plus the failures the pod template asks for.

A pod's whole life is a pure function of its behaviour (read from annotations) and its age in simulated
seconds: `lifecycle()` (in `lifecycle`). The controller only writes the status that function gives whenever it
changes, so any workload controller (ReplicaSets, Jobs, StatefulSets) gets the same behaviour by building
pods with `PodFactory` and asking `PodController` when a pod became ready.
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
from collections.abc import Mapping
from typing import Any

from deployflow.sim.config import SimConfig
from deployflow.sim.controllers.base import Scope, TimedController, Wakeups, in_scope, write_status
from deployflow.sim.controllers.events import EventRecorder
from deployflow.sim.controllers.lifecycle import (
    CRASH_LOOP,
    IMAGE_PULL_ERROR,
    JOB_FAIL,
    JOB_LOG,
    LOG,
    NEVER_READY,
    PodBehaviour,
    PodState,
    lifecycle,
)
from deployflow.sim.controllers.termination import prestop_seconds, terminating_status
from deployflow.sim.resources import PODS
from deployflow.sim.store import Obj, Store, StoreError, now_iso

VERSION_LABELS = ("app.kubernetes.io/version", "version", "pod-template-hash")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s rand.String alphabet: no vowels, no look-alikes

# The failure annotations and the lifecycle are part of what this module offers its users (tests name the
# failures they inject from here).
__all__ = [
    "CRASH_LOOP", "IMAGE_PULL_ERROR", "JOB_FAIL", "JOB_LOG", "LOG", "NEVER_READY", "PodBehaviour", "PodController",
    "PodFactory", "PodState", "controller_uid", "is_active", "is_ready", "is_terminal", "lifecycle", "owner_reference",
    "pod_version", "random_suffix",
]


# ---- small facts about pod objects, shared by controllers and traffic ---------------------------------


def pod_version(labels: Mapping[str, str] | None) -> str:
    """The version a pod reports in traffic metrics."""
    labels = labels or {}
    for key in VERSION_LABELS:
        if labels.get(key):
            return str(labels[key])
    return "unknown"


def is_ready(pod: Obj) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def is_terminal(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def is_active(pod: Obj) -> bool:
    return not is_terminal(pod) and not pod.get("metadata", {}).get("deletionTimestamp")


def controller_uid(obj: Obj) -> str | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owner_reference(owner: Obj) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def random_suffix(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice(_NAME_CHARS) for _ in range(n))


class PodFactory:
    """Builds pods from templates the way workload controllers do: owner reference, generated name, a node."""

    def __init__(self, rng: random.Random, nodes: int = 3) -> None:
        self.rng = rng
        self.nodes = [f"sim-node-{i}" for i in range(1, nodes + 1)]
        self._next_node = 0

    def build(
        self,
        template: Obj,
        namespace: str,
        owner: Obj,
        *,
        name: str | None = None,
        extra_labels: Mapping[str, str] | None = None,
        log: str | None = None,
    ) -> Obj:
        """A pod for `template`; `name` defaults to `<owner>-<5 random chars>` (the ReplicaSet style)."""
        meta_t = template.get("metadata") or {}
        labels = dict(meta_t.get("labels") or {})
        labels.update(extra_labels or {})
        annotations = dict(meta_t.get("annotations") or {})
        spec = copy.deepcopy(template.get("spec") or {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("nodeName", self.nodes[self._next_node % len(self.nodes)])
        self._next_node += 1
        if log is None:
            log = _default_log(labels, annotations, spec)
        annotations[LOG] = log
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name or f"{owner['metadata']['name']}-{random_suffix(self.rng)}",
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner_reference(owner)],
            },
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }


def _default_log(labels: Mapping[str, str], annotations: Mapping[str, str], spec: Obj) -> str:
    if JOB_LOG in annotations:
        return str(annotations[JOB_LOG])
    image = ((spec.get("containers") or [{}])[0]).get("image", "")
    return f"starting {image}\nserving version {pod_version(labels)} on :8080\n"


# ---- the controller -------------------------------------------------------------------------------------


def _running(pod: Obj) -> bool:
    return any("running" in (cs.get("state") or {}) for cs in pod.get("status", {}).get("containerStatuses") or [])


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


class PodController(TimedController):
    """Schedules pods onto simulated nodes and plays each one's lifecycle against the simulated clock."""

    name = "pods"

    def __init__(self, store: Store, config: SimConfig, events: EventRecorder) -> None:
        self.store = store
        self.config = config
        self.events = events
        self._born: dict[str, float] = {}  # pod uid -> simulated time it was first seen (scheduled)
        self._ready_since: dict[str, float] = {}
        self._key: dict[str, tuple[Any, ...]] = {}
        self._next: dict[str, float] = {}
        self._ips: dict[str, str] = {}
        self._ns: dict[str, str] = {}
        self._ip_counter = 0
        self._wakeups = Wakeups()
        self._terminating: dict[str, float] = {}  # pod uid -> simulated time its deletion was first seen

    def born(self, uid: str) -> float | None:
        return self._born.get(uid)

    def ready_since(self, uid: str) -> float | None:
        """Simulated time at which the pod became Ready (None: not ready)."""
        return self._ready_since.get(uid)

    def available(self, pod: Obj, now: float, min_ready_seconds: float) -> bool:
        """Ready for at least minReadySeconds, the meaning of `availableReplicas`."""
        if not is_ready(pod):
            return False
        since = self._ready_since.get(pod["metadata"]["uid"])
        return since is not None and now - since >= min_ready_seconds

    def reconcile(self, now: float, scope: Scope = None) -> None:
        self._wakeups.reset(scope)
        seen: set[str] = set()
        for pod in list(in_scope(self.store, PODS, scope)):
            uid = pod["metadata"]["uid"]
            ns = self._ns[uid] = pod["metadata"].get("namespace", "")
            seen.add(uid)
            born = self._born.get(uid)
            if born is None:
                born = self._born[uid] = now
            if pod["metadata"].get("deletionTimestamp"):
                self._wakeups.note(ns, self._terminate(pod, now))
                continue
            due = self._next.get(uid, -math.inf)
            if due > now and uid in self._key:
                self._wakeups.note(ns, due)
                continue
            try:
                self._wakeups.note(ns, self._sync(pod, born, now))
            except StoreError:
                continue  # deleted meanwhile
        gone = [u for u, ns in self._ns.items() if u not in seen and (scope is None or ns in scope)]
        for uid in gone:
            for table in (self._born, self._ready_since, self._key, self._next, self._ips, self._ns,
                          self._terminating):
                table.pop(uid, None)
            self.events.forget(uid)

    def _sync(self, pod: Obj, born: float, now: float) -> float:
        meta = pod["metadata"]
        uid = meta["uid"]
        behaviour = PodBehaviour.of(meta.get("annotations"), self.config.ready_delay_seconds)
        run_to_completion = pod.get("spec", {}).get("restartPolicy") in ("Never", "OnFailure") or any(
            ref.get("kind") == "Job" for ref in meta.get("ownerReferences") or []
        )
        state = lifecycle(behaviour, now - born, run_to_completion)
        if state.ready and state.ready_at is not None:
            self._ready_since.setdefault(uid, born + state.ready_at)
        else:
            self._ready_since.pop(uid, None)
        next_at = born + state.next_change
        self._next[uid] = next_at
        if self._key.get(uid) == state.key and "conditions" in pod.get("status", {}):
            return next_at
        previous = self._key.get(uid)
        ip = self._ips.get(uid) or pod.get("status", {}).get("podIP") or self._allocate_ip(uid)
        self._ips[uid] = ip
        status = self._status(pod, state, ip)
        write_status(self.store, PODS, pod, status)
        self._key[uid] = state.key
        self._record_events(pod, state, previous, behaviour)
        return next_at

    def _terminate(self, pod: Obj, now: float) -> float:
        """Plays a deleted pod's grace period; returns when it next changes by itself."""
        meta = pod["metadata"]
        uid = meta["uid"]
        first = uid not in self._terminating
        since = self._terminating.setdefault(uid, now)
        self._ready_since.pop(uid, None)
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        # A pod with no running container (completed, crash-looping, never started) has nothing to stop: the
        # kubelet confirms its deletion at once.
        if now >= since + grace or (first and not _running(pod)):
            self.store.finish_termination(PODS, meta.get("namespace"), meta["name"])
            return math.inf
        stop = since + min(prestop_seconds(pod), grace)
        status = terminating_status(pod, now >= stop, now_iso())
        if status != pod.get("status"):
            write_status(self.store, PODS, pod, status)
        return stop if now < stop else since + grace

    def _allocate_ip(self, uid: str) -> str:
        self._ip_counter += 1
        n = self._ip_counter
        return f"10.244.{(n // 250) % 256}.{n % 250 + 2}"

    def _status(self, pod: Obj, state: PodState, ip: str) -> Obj:
        old = pod.get("status", {})
        stamp = now_iso()
        old_conds = {c.get("type"): c for c in old.get("conditions") or []}
        containers = pod.get("spec", {}).get("containers") or [{"name": "app", "image": ""}]
        names = ", ".join(c.get("name", "") for c in containers)

        def cond(ctype: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
            status = "True" if ok else "False"
            prev = old_conds.get(ctype)
            c: Obj = {"type": ctype, "status": status, "lastProbeTime": None}
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == status else stamp
            if not ok and reason:
                c["reason"] = reason
                c["message"] = message or ""
            return c

        done = state.terminated_code is not None
        not_ready_reason = "PodCompleted" if done else "ContainersNotReady"
        not_ready_msg = "" if done else f"containers with unready status: [{names}]"
        node = pod.get("spec", {}).get("nodeName") or "sim-node-1"
        host_ip = f"192.168.49.{(sum(map(ord, node)) % 250) + 2}"
        start_time = old.get("startTime") or stamp
        statuses = [self._container_status(pod, c, state, old, stamp) for c in containers]
        return {
            "phase": state.phase,
            "conditions": [
                cond("PodReadyToStartContainers", True),
                cond("Initialized", True),
                cond("Ready", state.ready, not_ready_reason, not_ready_msg),
                cond("ContainersReady", state.ready, not_ready_reason, not_ready_msg),
                cond("PodScheduled", True),
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": start_time,
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass", "BestEffort"),
        }

    def _container_status(self, pod: Obj, container: Obj, state: PodState, old: Obj, stamp: str) -> Obj:
        meta = pod["metadata"]
        name = container.get("name", "app")
        image = container.get("image", "")
        prev: Obj = next((c for c in old.get("containerStatuses") or [] if c.get("name") == name), {})
        cs: Obj = {
            "name": name,
            "image": image,
            "imageID": "" if state.waiting in ("ContainerCreating", "ErrImagePull", "ImagePullBackOff")
            else f"docker.io/library/{image.split(':')[0]}@sha256:{_digest(image)}",
            "ready": state.ready,
            "started": state.running,
            "restartCount": state.restart_count,
            "lastState": {},
            "state": {},
        }
        if state.running or state.terminated_code is not None or state.crashed_before:
            cs["containerID"] = f"containerd://{_digest(meta['uid'], name, str(state.restart_count))[:64]}"
        if state.running:
            started = (prev.get("state", {}).get("running") or {}).get("startedAt")
            same_run = prev.get("restartCount") == state.restart_count
            cs["state"] = {"running": {"startedAt": started if started and same_run else stamp}}
        elif state.terminated_code is not None:
            code = state.terminated_code
            cs["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                          "startedAt": old.get("startTime") or stamp, "finishedAt": stamp,
                                          "containerID": cs.get("containerID", "")}}
        elif state.waiting:
            cs["state"] = {"waiting": {"reason": state.waiting, "message": _waiting_message(state, pod, name, image)}}
        if state.crashed_before:
            # lastState describes the latest crash: it changes exactly when the container exits again.
            prev_last = (prev.get("lastState") or {}).get("terminated")
            prev_running = (prev.get("state") or {}).get("running")
            if prev_last and not (state.waiting and prev_running):
                cs["lastState"] = {"terminated": prev_last}
            else:
                started = (prev_running or {}).get("startedAt") or stamp
                cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started,
                                                  "finishedAt": stamp, "containerID": cs.get("containerID", "")}}
        return cs

    def _record_events(self, pod: Obj, state: PodState, previous: tuple[Any, ...] | None, b: PodBehaviour) -> None:
        image = ((pod.get("spec", {}).get("containers") or [{}])[0]).get("image", "")
        name = ((pod.get("spec", {}).get("containers") or [{}])[0]).get("name", "app")
        if state.waiting == "ErrImagePull":
            self.events.record(pod, "Warning", "Failed", f'Failed to pull image "{image}": rpc error: code = '
                               f'NotFound desc = failed to pull and unpack image "{image}": not found', "kubelet")
        elif state.waiting == "ImagePullBackOff":
            self.events.record(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', "kubelet")
        elif state.waiting == "CrashLoopBackOff":
            self.events.record(pod, "Warning", "BackOff", f"Back-off restarting failed container {name} in pod "
                               f"{pod['metadata']['name']}_{pod['metadata'].get('namespace', '')}", "kubelet")
        elif state.running and not state.ready and b.never_ready and previous is not None:
            self.events.record(pod, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with "
                               "statuscode: 503", "kubelet")


def _waiting_message(state: PodState, pod: Obj, container: str, image: str) -> str:
    if state.waiting == "ErrImagePull":
        return f'failed to pull and unpack image "{image}": not found'
    if state.waiting == "ImagePullBackOff":
        return f'Back-off pulling image "{image}"'
    if state.waiting == "CrashLoopBackOff":
        meta = pod["metadata"]
        return (f"back-off {int(state.backoff)}s restarting failed container={container} "
                f"pod={meta['name']}_{meta.get('namespace', '')}({meta['uid']})")
    return ""
