"""Deployments in batches: deployflow drives the ReplicaSets of a paused Deployment (see `common`), or lets
Kubernetes' own RollingUpdate run (native mode) and follows it."""

from __future__ import annotations

import copy
import functools

from temporalio import activity

from activities.rolling.common import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    MoveInput,
    NativeInput,
    follow,
    owned_by,
    patch,
    set_template,
    template_hash,
    without_hash,
)
from deployflow import kube
from deployflow.kube import Obj, health, wait
from deployflow.kube.wait import blocking


def _scale_rs(cluster: str, namespace: str, rs: Obj, replicas: int) -> None:
    kube.merge_patch(
        cluster, kube.apps_path(namespace, "replicasets", rs["metadata"]["name"]), {"spec": {"replicas": replicas}}
    )
    rs["spec"]["replicas"] = replicas


def _ensure_rs(cluster: str, deploy: Obj, rss: list[Obj]) -> Obj:
    """The ReplicaSet of the Deployment's template: found by template (ignoring the hash label), else created."""
    template = deploy["spec"]["template"]
    for rs in rss:
        if without_hash(rs["spec"].get("template")) == without_hash(template):
            return rs
    meta = deploy["metadata"]
    h = template_hash(template)
    revision = max(
        (int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0") or 0) for rs in rss), default=0
    )
    rs_template = copy.deepcopy(template)
    rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
    selector = copy.deepcopy(deploy["spec"]["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = h
    replicas = int(deploy["spec"].get("replicas", 1))
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{h}",
            "namespace": meta["namespace"],
            "labels": dict(rs_template["metadata"]["labels"]),
            "annotations": {
                REVISION_ANNOTATION: str(revision + 1),
                "deployment.kubernetes.io/desired-replicas": str(replicas),
                "deployment.kubernetes.io/max-replicas": str(replicas),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": int(deploy["spec"].get("minReadySeconds") or 0),
            "selector": selector,
            "template": rs_template,
        },
    }
    return kube.create(cluster, kube.apps_path(meta["namespace"], "replicasets"), rs)


def deployment_step(req: MoveInput, deploy: Obj, snapshot: wait.Snapshot) -> tuple[bool, str]:
    """One look at the Deployment's ReplicaSets and one move towards the goal; True when the batch is done."""
    cluster, ns = req.workload.target.cluster, req.workload.target.namespace
    rss = [rs for rs in snapshot["replicasets"] if owned_by(rs, deploy)]
    target = _ensure_rs(cluster, deploy, rss)
    others = [
        rs for rs in rss if rs["metadata"]["name"] != target["metadata"]["name"] and int(rs["spec"].get("replicas", 0))
    ]
    target_pods = [p for p in health.live(snapshot["pods"]) if owned_by(p, target)]
    failure = health.fatal_problem(target_pods)
    if failure is not None:
        raise failure.error(req.label or "batch")

    def avail(rs: Obj) -> int:
        status = rs.get("status") or {}
        return min(int(status.get("availableReplicas", 0)), int(rs["spec"].get("replicas", 0)))

    n = req.replicas
    t_spec = int(target["spec"].get("replicas", 0))
    # Pods already at the target template stay: a rollback that finds more old pods than its plan expected keeps
    # them serving rather than removing one to match the plan.
    count = max(req.count, min(t_spec, n))
    want_other = n - count
    o_spec = sum(int(rs["spec"]["replicas"]) for rs in others)
    t_avail = avail(target)
    o_avail = sum(avail(rs) for rs in others)
    revision = target["metadata"]["name"]

    t_status = target.get("status") or {}
    settled = (
        t_spec == count
        and o_spec == want_other
        and t_avail >= count
        and int(t_status.get("replicas", -1)) == count
        and len(target_pods) == count
        and all(int((rs.get("status") or {}).get("replicas", 0)) == int(rs["spec"]["replicas"]) for rs in others)
    )
    detail = f"{revision}: {t_avail}/{count} new available; others {o_avail} available of {o_spec} (want {want_other})"
    if settled:
        return True, detail
    # Grow the target within maxSurge.
    if t_spec < count:
        room = n + req.surge - (t_spec + o_spec)
        if room > 0:
            _scale_rs(cluster, ns, target, t_spec + min(room, count - t_spec))
    # Shrink the others without dropping below replicas - maxUnavailable available pods.
    if o_spec > want_other:
        min_available = n - req.unavailable
        unavailable_others = o_spec - o_avail  # removing these costs no availability
        allowed = max(0, t_avail + o_avail - min_available) + unavailable_others
        cut = min(o_spec - want_other, allowed)
        for rs in sorted(others, key=lambda r: int(r["spec"]["replicas"]) - avail(r), reverse=True):
            if cut <= 0:
                break
            have = int(rs["spec"]["replicas"])
            take = min(have, cut)
            _scale_rs(cluster, ns, rs, have - take)
            cut -= take
    return False, detail


def native_step(req: NativeInput, deploy: Obj, snapshot: wait.Snapshot) -> tuple[bool, str]:
    """Kubernetes' own RollingUpdate, judged: done when every replica is updated and available."""
    status = deploy.get("status") or {}
    failure = health.progress_deadline(deploy)
    if failure is not None:
        raise failure.error(req.workload.describe())
    rss = [rs for rs in snapshot["replicasets"] if owned_by(rs, deploy)]
    current = [
        rs for rs in rss if without_hash(rs["spec"].get("template")) == without_hash(deploy["spec"]["template"])
    ]
    if current:
        failure = health.fatal_problem(p for p in snapshot["pods"] if owned_by(p, current[0]))
        if failure is not None:
            raise failure.error(req.workload.describe())
    n = req.replicas
    observed = int(status.get("observedGeneration", 0)) >= int(deploy["metadata"].get("generation", 1))
    done = (
        observed
        and int(status.get("updatedReplicas", 0)) == n
        and int(status.get("replicas", 0)) == n
        and int(status.get("availableReplicas", 0)) >= n
    )
    return done, f"updated {status.get('updatedReplicas', 0)}/{n}, available {status.get('availableReplicas', 0)}/{n}"


def _start_native(req: NativeInput) -> None:
    w = req.workload
    set_template(w, req.template)
    patch(w, {"spec": {"strategy": req.strategy, "paused": False}})


@activity.defn
async def native_rollout(req: NativeInput) -> str:
    """Sets the template and lets Kubernetes' RollingUpdate replace the pods; follows it to the end."""
    w = req.workload
    await blocking(_start_native, req)
    detail = await follow(
        w, functools.partial(native_step, req), req.timeout_seconds, w.describe(), replicasets=True
    )
    if req.restore_strategy:
        strategy = copy.deepcopy(req.restore_strategy)
        if strategy.get("type") == "Recreate":
            strategy["rollingUpdate"] = None
        await blocking(patch, w, {"spec": {"strategy": strategy}})
    return detail
