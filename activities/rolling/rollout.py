"""The rolling strategy's activities: record, freeze, move pods batch by batch behind a health gate, hand back.

How the pods move is in `common` (the mechanism), `deployment` and `statefulset` (one step per workload kind).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from temporalio import activity

from activities._errors import api_for, require_namespace
from activities.rolling.common import (
    INVALID_WORKLOAD,
    ROLLOUT_ANNOTATION,
    VERSION_LABEL,
    WORKLOAD_NOT_FOUND,
    BeginInput,
    FinishInput,
    MoveInput,
    MoveResult,
    PauseInput,
    PrepareInput,
    PrepareResult,
    RecordedRevision,
    WorkloadRef,
    container,
    deleted,
    follow,
    new_template,
    non_retryable,
    owned_by,
    patch,
    read,
    selected,
    set_template,
    without_hash,
)
from activities.rolling.deployment import deployment_step
from activities.rolling.statefulset import statefulset_step
from deployflow import kube
from deployflow.kube import KubeError, Obj, wait
from deployflow.kube.wait import blocking
from deployflow.spec.rolling import RollingRequest

# ---- prepare ----------------------------------------------------------------------------------------------------


def _prepare(request: RollingRequest) -> PrepareResult:
    target = request.target
    workload = WorkloadRef(target=target, kind=request.kind, name=request.name)
    # The first look at the cluster: an unknown context or a missing namespace fails for good here, before any write.
    require_namespace(api_for(target), target)
    obj = read(workload)
    if obj is None:
        raise non_retryable(
            f"{workload.describe()} does not exist: a rolling deployment updates an existing workload",
            WORKLOAD_NOT_FOUND,
        )
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    main = container(template, target.container_name)
    if main is None:
        names = [c.get("name") for c in (template.get("spec") or {}).get("containers") or []]
        raise non_retryable(
            f"target.container: {workload.describe()} has no container {target.container_name!r} (it has {names})",
            INVALID_WORKLOAD,
        )
    replicas = int(spec.get("replicas", 1))
    annotations = obj["metadata"].get("annotations") or {}
    in_flight = annotations.get(ROLLOUT_ANNOTATION)
    if request.kind == "Deployment":
        strategy = spec.get("strategy") or {"type": "RollingUpdate"}
        revision = ""
        listed = kube.request_json(
            target.cluster, "GET", kube.apps_path(target.namespace, "replicasets"), query=selected(obj)
        )
        rss = [rs for rs in listed.get("items") or [] if owned_by(rs, obj)]
        active = [rs for rs in rss if int((rs.get("spec") or {}).get("replicas", 0)) > 0]
        matching = [rs for rs in rss if without_hash(rs["spec"].get("template")) == template]
        if matching:
            revision = matching[0]["metadata"]["name"]
        if len(active) > 1 and not in_flight:
            raise non_retryable(
                f"{workload.describe()} is in the middle of another rollout ({len(active)} active ReplicaSets); "
                "let it finish or undo it first",
                INVALID_WORKLOAD,
            )
    else:
        strategy = spec.get("updateStrategy") or {"type": "RollingUpdate"}
        status = obj.get("status") or {}
        revision = status.get("updateRevision", "")
        if status.get("currentRevision") != status.get("updateRevision") and not in_flight:
            raise non_retryable(
                f"{workload.describe()} is in the middle of another update (current revision "
                f"{status.get('currentRevision')}, update revision {status.get('updateRevision')})",
                INVALID_WORKLOAD,
            )
    paused = bool(spec.get("paused", False))
    if in_flight:
        # A previous run of this rollout already paused the workload: what it recorded is the truth.
        recorded = RecordedRevision.model_validate_json(in_flight)
    else:
        recorded = RecordedRevision(
            template=template,
            replicas=replicas,
            strategy=strategy,
            paused=paused,
            image=str(main.get("image", "")),
            version=((template.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL),
            revision=revision,
        )
    wanted = new_template(recorded.template, request)
    return PrepareResult(
        workload=workload,
        recorded=recorded,
        template=wanted,
        up_to_date=not in_flight and without_hash(recorded.template) == without_hash(wanted),
    )


@activity.defn
async def prepare_rolling(req: PrepareInput) -> PrepareResult:
    """Reads the workload, checks it can be rolled, and records the revision a rollback returns to."""
    try:
        return await blocking(_prepare, req.request)
    except KubeError as err:
        if err.status in (400, 401, 403, 422):
            raise non_retryable(f"reading the workload: {err.message}", INVALID_WORKLOAD) from None
        raise

# ---- begin -------------------------------------------------------------------------------------------------------


def _begin(req: BeginInput) -> dict[str, Any]:
    w = req.workload
    body: Obj = {"spec": {}}
    if req.recorded is not None:
        body["metadata"] = {"annotations": {ROLLOUT_ANNOTATION: req.recorded.model_dump_json()}}
    if w.kind == "Deployment":
        body["spec"]["paused"] = True
        body["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": None}
    else:
        body["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": req.replicas}}
    # Frozen first, then the template: the controllers never see the new template on a workload free to roll.
    patch(w, body)
    obj = set_template(w, req.template)
    return dict(obj["spec"]["template"])


@activity.defn
async def begin_rolling(req: BeginInput) -> dict[str, Any]:
    """Freezes the workload at its current pods with `template` as the target (no pod changes yet).

    Deployment: paused, strategy Recreate (see `activities.rolling.common`), template set. StatefulSet: partition =
    replicas, template set. Returns the template as the API server stored it (with defaults).
    """
    return await blocking(_begin, req)


# ---- move ---------------------------------------------------------------------------------------------------------


@activity.defn
async def move_pods(req: MoveInput) -> MoveResult:
    """Moves pods until exactly `count` run the workload's template, all ready: the batch and its health gate.

    Fails as soon as a new pod cannot start (`kube.health`: crash loop, image pull, missing ConfigMap), with
    BatchTimedOut when the pods are not ready and available within the timeout. Follows the workload on watches;
    cancelling it leaves the ReplicaSets where they are.
    """
    if req.workload.kind == "Deployment":
        step = functools.partial(deployment_step, req)
        detail = await follow(req.workload, step, req.timeout_seconds, req.label or "batch", replicasets=True)
    else:
        step = functools.partial(statefulset_step, req)
        detail = await follow(req.workload, step, req.timeout_seconds, req.label or "batch")
    return MoveResult(updated=req.count, ready=req.replicas, revision=detail.split(":", 1)[0])


# ---- finish -------------------------------------------------------------------------------------------------------


def _hand_back(req: FinishInput) -> None:
    """Restores the recorded strategy and pause flag and drops the rollout annotation (once: it marks the undone)."""
    w = req.workload
    obj = read(w)
    if obj is None:
        raise deleted(w)
    annotations = obj["metadata"].get("annotations") or {}
    if ROLLOUT_ANNOTATION in annotations:
        body: Obj = {"metadata": {"annotations": {ROLLOUT_ANNOTATION: None}}, "spec": {}}
        if w.kind == "Deployment":
            strategy = copy.deepcopy(req.recorded.strategy)
            if strategy.get("type") == "Recreate":
                strategy["rollingUpdate"] = None
            body["spec"] = {"paused": req.recorded.paused, "strategy": strategy}
        else:
            strategy = copy.deepcopy(req.recorded.strategy)
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
            body["spec"] = {"updateStrategy": strategy}
        patch(w, body)


def finished(req: FinishInput, obj: Obj, _snapshot: wait.Snapshot) -> tuple[bool, str]:
    """Whether Kubernetes has adopted the handed-back workload as a completed rollout."""
    w = req.workload
    status = obj.get("status") or {}
    observed = int(status.get("observedGeneration", 0)) >= int(obj["metadata"].get("generation", 1))
    n = req.replicas
    if w.kind == "Deployment":
        if req.recorded.paused:
            return observed, "left paused, as it was"
        done = (
            observed
            and int(status.get("updatedReplicas", 0)) == n
            and int(status.get("replicas", 0)) == n
            and int(status.get("availableReplicas", 0)) >= n
        )
        return done, (
            f"updated {status.get('updatedReplicas', 0)}/{n}, available {status.get('availableReplicas', 0)}/{n}, "
            f"total {status.get('replicas', 0)}"
        )
    done = observed and int(status.get("readyReplicas", 0)) == n
    return done, f"ready {status.get('readyReplicas', 0)}/{n}, revision {status.get('currentRevision')}"


@activity.defn
async def finish_rolling(req: FinishInput) -> str:
    """Hands the workload back to Kubernetes: original strategy and pause flag, no rollout annotation."""
    await blocking(_hand_back, req)
    what = f"handing {req.workload.describe()} back"
    return await follow(req.workload, functools.partial(finished, req), req.timeout_seconds, what, pods=False)


@activity.defn
async def set_paused(req: PauseInput) -> None:
    """Pauses or resumes a Deployment's own rollout (native mode): Kubernetes stops moving pods where they are."""
    w = req.workload
    await blocking(patch, w, {"spec": {"paused": req.paused}})
