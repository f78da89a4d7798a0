"""Graceful pod termination, as the kubelet plays it: a deleted pod turns not ready at once (so it leaves
Endpoints), runs its containers' preStop hooks, then its containers stop; the pod object goes when its grace
period ends.

A preStop hook's duration is what the simulator can know of it: a `sleep` action's seconds, a `sleep N` in an
`exec` command, or, for any hook (httpGet included), the `sim.deployflow.io/prestop-seconds` annotation, which
wins. The longest container's hook is the pod's. A hook longer than the grace period is cut at its end.
"""

from __future__ import annotations

import copy
import re

from deployflow.sim.controllers.lifecycle import ANNOTATION_PREFIX
from deployflow.sim.store import Obj

PRESTOP_SECONDS = ANNOTATION_PREFIX + "prestop-seconds"
_SLEEP = re.compile(r"\bsleep\s+(\d+(?:\.\d+)?)")


def prestop_seconds(pod: Obj) -> float:
    """Simulated seconds the pod's preStop hooks keep its containers serving after the delete."""
    annotated = (pod.get("metadata", {}).get("annotations") or {}).get(PRESTOP_SECONDS)
    if annotated is not None:
        try:
            return max(float(annotated), 0.0)
        except ValueError:
            return 0.0
    longest = 0.0
    for container in pod.get("spec", {}).get("containers") or []:
        hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
        if isinstance(hook.get("sleep"), dict):
            longest = max(longest, float(hook["sleep"].get("seconds") or 0))
        command = " ".join(str(part) for part in (hook.get("exec") or {}).get("command") or [])
        if match := _SLEEP.search(command):
            longest = max(longest, float(match.group(1)))
    return longest


def terminating_status(pod: Obj, stopped: bool, stamp: str) -> Obj:
    """The status of a pod being deleted: not ready; once its preStop hooks are done, its containers exited."""
    status = copy.deepcopy(pod.get("status") or {})
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Ready", "ContainersReady") and cond.get("status") != "False":
            cond.update(status="False", lastTransitionTime=stamp, reason="PodTerminating",
                        message="the pod is being deleted")
    for cs in status.get("containerStatuses") or []:
        cs["ready"] = False
        if stopped and "terminated" not in (cs.get("state") or {}):
            started = ((cs.get("state") or {}).get("running") or {}).get("startedAt", stamp)
            cs["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                          "finishedAt": stamp}}
            cs["started"] = False
    return status


def containers_stopped(pod: Obj) -> bool:
    """Whether a pod's containers have all exited (a terminating pod past its preStop hooks)."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all("terminated" in (cs.get("state") or {}) for cs in statuses)
