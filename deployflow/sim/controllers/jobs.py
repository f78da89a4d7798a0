"""Jobs (batch/v1): run a pod to completion, retry failed pods up to backoffLimit, report Complete or Failed."""

from __future__ import annotations

import math

from deployflow.sim.config import SimConfig
from deployflow.sim.controllers.base import Scope, in_scope, write_status
from deployflow.sim.controllers.events import EventRecorder
from deployflow.sim.controllers.pods import PodFactory, is_active
from deployflow.sim.controllers.replicasets import pods_by_controller
from deployflow.sim.resources import JOBS, PODS
from deployflow.sim.store import Obj, Store, StoreError, now_iso

DEFAULT_BACKOFF_LIMIT = 6


class JobController:
    name = "jobs"

    def __init__(self, store: Store, config: SimConfig, factory: PodFactory, events: EventRecorder) -> None:
        self.store = store
        self.config = config
        self.factory = factory
        self.events = events

    scoped = True

    def next_wakeup(self) -> float:
        return math.inf  # a job's pods change state on the pod controller's schedule, which wakes us too

    def due_namespaces(self, now: float) -> set[str]:
        return set()

    def reconcile(self, now: float, scope: Scope = None) -> None:
        jobs = list(in_scope(self.store, JOBS, scope))
        if not jobs:
            return
        owned = pods_by_controller(self.store, scope)
        for job in jobs:
            try:
                self._sync(job, owned.get(job["metadata"]["uid"], []))
            except StoreError:
                continue

    def _sync(self, job: Obj, pods: list[Obj]) -> None:
        meta, spec = job["metadata"], job.get("spec", {})
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        old = job.get("status") or {}
        if _finished(old):
            return
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else DEFAULT_BACKOFF_LIMIT)
        active = [p for p in pods if is_active(p)]
        succeeded = sum(1 for p in pods if p.get("status", {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if p.get("status", {}).get("phase") == "Failed")
        stamp = now_iso()
        status: Obj = {k: v for k, v in old.items() if k in ("startTime", "conditions")}
        status.setdefault("startTime", stamp)
        conditions = list(status.get("conditions") or [])
        if failed > backoff_limit:
            for p in active:  # the real controller kills what is still running once the job has failed
                self.store.delete(PODS, ns, p["metadata"]["name"])
            active = []
            message = "Job has reached the specified backoff limit"
            conditions += [_cond("FailureTarget", "BackoffLimitExceeded", message, stamp),
                           _cond("Failed", "BackoffLimitExceeded", message, stamp)]
            self.events.record(job, "Warning", "BackoffLimitExceeded", message, "job-controller")
        elif succeeded >= completions:
            status["completionTime"] = stamp
            conditions += [_cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded "
                                 "pods", stamp),
                           _cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods", stamp)]
            self.events.record(job, "Normal", "Completed", "Job completed", "job-controller")
        elif not spec.get("suspend"):
            want = min(parallelism, completions - succeeded) - len(active)
            template = spec.get("template") or {}
            labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                      "controller-uid": uid, "job-name": name}
            for _ in range(max(want, 0)):
                pod = self.factory.build(template, ns, job, extra_labels=labels)
                pod["spec"]["restartPolicy"] = (template.get("spec") or {}).get("restartPolicy", "Never")
                created = self.store.create(PODS, pod)
                active.append(created)
                self.events.record(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                                   "job-controller")
        if conditions:
            status["conditions"] = conditions
        status["active"] = len(active)
        status["ready"] = sum(
            1 for p in active
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in p.get("status", {}).get(
                "conditions") or [])
        )
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        if succeeded:
            status["succeeded"] = succeeded
        if failed:
            status["failed"] = failed
        if status != old:
            write_status(self.store, JOBS, job, status)


def _finished(status: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _cond(ctype: str, reason: str, message: str, stamp: str) -> Obj:
    return {"type": ctype, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": stamp, "lastTransitionTime": stamp}
