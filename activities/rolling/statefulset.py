"""StatefulSets in batches: `updateStrategy.rollingUpdate.partition` = replicas - count makes the StatefulSet
controller replace exactly the `count` highest ordinals (one pod at a time) and leave the others alone."""

from __future__ import annotations

from activities.rolling.common import MoveInput, not_ready, owned_by, patch
from deployflow.kube import Obj, health, wait


def statefulset_step(req: MoveInput, sts: Obj, snapshot: wait.Snapshot) -> tuple[bool, str]:
    """Sets the partition for this batch, then judges the pods it moves; True when the batch is done."""
    w = req.workload
    n = req.replicas
    partition = max(0, n - req.count)
    strategy = sts["spec"].get("updateStrategy") or {}
    if ((strategy.get("rollingUpdate") or {}).get("partition")) != partition:
        rolling = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}
        sts = patch(w, {"spec": {"updateStrategy": rolling}})
    status = sts.get("status") or {}
    update_rev = status.get("updateRevision")
    if int(status.get("observedGeneration", 0)) < int(sts["metadata"].get("generation", 1)) or not update_rev:
        return False, "waiting for the StatefulSet controller to observe the change"
    name = sts["metadata"]["name"]
    pods = {p["metadata"]["name"]: p for p in snapshot["pods"] if owned_by(p, sts)}
    moving = [pods[f"{name}-{i}"] for i in range(partition, n) if f"{name}-{i}" in pods]
    failure = health.fatal_problem(moving)
    if failure is not None:
        raise failure.error(req.label or "batch")
    updated = [p for p in moving if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == update_rev]
    waiting = not_ready(list(pods.values()))
    detail = (
        f"partition {partition}: {len(updated)}/{n - partition} pods at {update_rev}, "
        f"{len(pods) - len(waiting)}/{n} ready" + (f"; not ready: {', '.join(waiting[:5])}" if waiting else "")
    )
    done = len(updated) == n - partition and len(pods) == n and not waiting
    return done, detail
