"""Activities of the rolling strategy: record, move pods batch by batch behind a health gate, finish, restore.

How a Deployment moves in batches (and why "between batches" means no pod changes)
---------------------------------------------------------------------------------
The Deployment is paused with its template set to the version it should end up at, so Kubernetes' deployment
controller stops rolling and only keeps the books. deployflow then drives the ReplicaSets itself, as Argo
Rollouts does: the ReplicaSet of the target template (created if missing, owned by the Deployment, found again by
template the way the deployment controller finds its "new" ReplicaSet) grows and the others shrink, within
maxSurge and maxUnavailable, until exactly `count` pods run the target template and every one of them is ready
and available. Then the activity returns: both ReplicaSets have fixed sizes and nothing changes until the next
batch. While deployflow drives, the Deployment's strategy is `Recreate`: a paused RollingUpdate Deployment still
"proportionally scales" ReplicaSets whose sizes do not add up to replicas + maxSurge, which would fight the
batches; a paused Recreate Deployment leaves them alone. The original strategy and pause flag are restored at the
end (`finish_rolling`), when the Deployment is unpaused and adopts the result as a completed rollout.

A rollback is the same movement with the recorded template as the target.

Two things to know on a real cluster: the recorded revision (template, strategy, pause flag) is kept in the
`deployflow.io/rollout` annotation while deployflow drives, so a later run (or a person) can always tell what to
restore; and nobody should unpause the Deployment by hand meanwhile, because under `Recreate` Kubernetes would then
replace every remaining old pod at once. With maxSurge 0 the very first move shrinks the old ReplicaSet before the
new one has any pod; a paused Deployment whose only active ReplicaSet is smaller than `replicas` gets it scaled
back once; the next look notices and corrects it, at the cost of recreating those pods and, for that moment,
exceeding maxSurge by the batch size. The simulator's controller does not do this; a real one may.

StatefulSets use their own mechanism: `updateStrategy.rollingUpdate.partition`. With partition = replicas -
count, the StatefulSet controller replaces exactly the `count` highest ordinals (one pod at a time) and leaves the
others alone, so between batches nothing changes either.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, Literal, cast

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import api_for, require_namespace
from deployflow.hooks import kubeapi
from deployflow.hooks.kubeapi import KubeError, Obj
from deployflow.spec.common import Target
from deployflow.spec.rolling import RollingRequest

# Looks come quickly while pods are changing and slow down while nothing does, which keeps the load on a
# large cluster's API server low during long waits (a slow image pull) without delaying a fast rollout.
POLL_MIN_SECONDS = 0.1
POLL_MAX_SECONDS = 2.0

WORKLOAD_NOT_FOUND = "WorkloadNotFound"
INVALID_WORKLOAD = "InvalidWorkload"
BATCH_UNHEALTHY = "BatchUnhealthy"
BATCH_TIMED_OUT = "BatchTimedOut"
NON_RETRYABLE = [WORKLOAD_NOT_FOUND, INVALID_WORKLOAD, BATCH_UNHEALTHY, BATCH_TIMED_OUT]

VERSION_LABEL = "app.kubernetes.io/version"
HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
ROLLOUT_ANNOTATION = "deployflow.io/rollout"
# Waiting reasons that mean "this pod will not become ready by waiting".
FATAL_WAITING = {
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}

Kind = Literal["Deployment", "StatefulSet"]


# ---- models -------------------------------------------------------------------------------------------------


class WorkloadRef(BaseModel):
    """Which workload a rollout changes."""

    target: Target
    kind: Kind
    name: str

    def path(self) -> str:
        plural = "deployments" if self.kind == "Deployment" else "statefulsets"
        return kubeapi.apps_path(self.target.namespace, plural, self.name)

    def describe(self) -> str:
        return f"{self.kind} {self.target.namespace}/{self.name}"


class RecordedRevision(BaseModel):
    """What ran before the rollout: restored on rollback."""

    template: dict[str, Any]
    replicas: int
    strategy: dict[str, Any] = Field(default_factory=dict)  # Deployment spec.strategy / StatefulSet updateStrategy
    paused: bool = False
    image: str = ""
    version: str | None = None
    revision: str = ""  # ReplicaSet or ControllerRevision name


class PrepareInput(BaseModel):
    request: RollingRequest


class PrepareResult(BaseModel):
    workload: WorkloadRef
    recorded: RecordedRevision
    template: dict[str, Any]  # the new pod template
    up_to_date: bool  # the workload already runs exactly this template


class BeginInput(BaseModel):
    workload: WorkloadRef
    template: dict[str, Any]
    replicas: int
    recorded: RecordedRevision | None = Field(
        default=None, description="kept on the workload (annotation) so an interrupted rollout can be undone"
    )


class MoveInput(BaseModel):
    workload: WorkloadRef
    count: int = Field(description="pods that must run the workload's current template when this returns")
    replicas: int
    surge: int
    unavailable: int
    timeout_seconds: float
    label: str = ""


class MoveResult(BaseModel):
    updated: int
    ready: int
    revision: str


class FinishInput(BaseModel):
    workload: WorkloadRef
    recorded: RecordedRevision
    replicas: int
    timeout_seconds: float = 300.0


class NativeInput(BaseModel):
    workload: WorkloadRef
    template: dict[str, Any]
    strategy: dict[str, Any]
    replicas: int
    timeout_seconds: float
    restore_strategy: dict[str, Any] | None = Field(default=None, description="the workload's strategy afterwards")


# ---- helpers --------------------------------------------------------------------------------------------------


def _non_retryable(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def _without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
        labels.pop("controller-revision-hash", None)
    return t


def _template_hash(template: Obj) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def _container(template: Obj, name: str) -> Obj | None:
    for c in (template.get("spec") or {}).get("containers") or []:
        if c.get("name") == name:
            return cast(Obj, c)
    return None


def new_template(old: Obj, request: RollingRequest) -> Obj:
    """The recorded template with the new image, version label, annotations, labels and env."""
    template = copy.deepcopy(old)
    meta = template.setdefault("metadata", {})
    labels = meta.setdefault("labels", {})
    labels.update(request.pod_labels)
    labels[VERSION_LABEL] = request.resolved_version
    if request.pod_annotations:
        meta.setdefault("annotations", {}).update(request.pod_annotations)
    container = _container(template, request.target.container_name)
    assert container is not None
    container["image"] = request.image
    if request.env:
        env = [e for e in container.get("env") or [] if e.get("name") not in {v.name for v in request.env}]
        container["env"] = env + [v.manifest() for v in request.env]
    return template


def _owned_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"]["uid"]
    return any(r.get("uid") == uid and r.get("controller") for r in obj["metadata"].get("ownerReferences") or [])


def _list(cluster: str, path: str, owner: Obj | None = None) -> list[Obj]:
    """Items at `path`; with `owner`, only those its selector matches (a smaller answer on busy namespaces)."""
    labels = ((owner or {}).get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(labels.items())))] if labels else None
    return list(kubeapi.request(cluster, "GET", path, query=query).get("items", []))


def _pod_problems(pods: list[Obj]) -> list[str]:
    problems = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_WAITING:
                message = waiting.get("message") or ""
                problems.append(
                    f"pod {pod['metadata']['name']}: {waiting['reason']}" + (f" ({message})" if message else "")
                )
    return problems


def _not_ready(pods: list[Obj]) -> list[str]:
    out = []
    for pod in pods:
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        if not ready:
            out.append(f"{pod['metadata']['name']} ({(pod.get('status') or {}).get('phase', 'Pending')})")
    return out


def _heartbeat(details: str) -> None:
    if activity.in_activity():
        activity.heartbeat(details)


async def _poll_until(check: Callable[[], tuple[bool, str]], timeout: float, what: str) -> str:
    """Runs a blocking `check` in a thread until it says done; heartbeats; raises after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    previous, interval = "", POLL_MIN_SECONDS
    while True:
        done, detail = await asyncio.to_thread(check)
        _heartbeat(detail)
        if done:
            return detail
        if time.monotonic() >= deadline:
            raise _non_retryable(f"{what} not healthy within {timeout:g}s: {detail}", BATCH_TIMED_OUT)
        interval = POLL_MIN_SECONDS if detail != previous else min(interval * 1.5, POLL_MAX_SECONDS)
        previous = detail
        await asyncio.sleep(interval)


# ---- prepare ----------------------------------------------------------------------------------------------------


def _prepare(request: RollingRequest) -> PrepareResult:
    target = request.target
    workload = WorkloadRef(target=target, kind=request.kind, name=request.name)
    # The first look at the cluster: an unknown context or a missing namespace fails for good here, before any write.
    require_namespace(api_for(target), target)
    obj = kubeapi.get(target.cluster, workload.path())
    if obj is None:
        raise _non_retryable(
            f"{workload.describe()} does not exist: a rolling deployment updates an existing workload",
            WORKLOAD_NOT_FOUND,
        )
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    container = _container(template, target.container_name)
    if container is None:
        names = [c.get("name") for c in (template.get("spec") or {}).get("containers") or []]
        raise _non_retryable(
            f"target.container: {workload.describe()} has no container {target.container_name!r} (it has {names})",
            INVALID_WORKLOAD,
        )
    replicas = int(spec.get("replicas", 1))
    annotations = obj["metadata"].get("annotations") or {}
    in_flight = annotations.get(ROLLOUT_ANNOTATION)
    if request.kind == "Deployment":
        strategy = spec.get("strategy") or {"type": "RollingUpdate"}
        revision = ""
        rss = [
            rs for rs in _list(target.cluster, kubeapi.apps_path(target.namespace, "replicasets")) if _owned_by(rs, obj)
        ]
        active = [rs for rs in rss if int((rs.get("spec") or {}).get("replicas", 0)) > 0]
        matching = [rs for rs in rss if _without_hash(rs["spec"].get("template")) == template]
        if matching:
            revision = matching[0]["metadata"]["name"]
        if len(active) > 1 and not in_flight:
            raise _non_retryable(
                f"{workload.describe()} is in the middle of another rollout ({len(active)} active ReplicaSets); "
                "let it finish or undo it first",
                INVALID_WORKLOAD,
            )
    else:
        strategy = spec.get("updateStrategy") or {"type": "RollingUpdate"}
        status = obj.get("status") or {}
        revision = status.get("updateRevision", "")
        if status.get("currentRevision") != status.get("updateRevision") and not in_flight:
            raise _non_retryable(
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
            image=str(container.get("image", "")),
            version=((template.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL),
            revision=revision,
        )
    wanted = new_template(recorded.template, request)
    return PrepareResult(
        workload=workload,
        recorded=recorded,
        template=wanted,
        up_to_date=not in_flight and _without_hash(recorded.template) == _without_hash(wanted),
    )


@activity.defn
async def prepare_rolling(req: PrepareInput) -> PrepareResult:
    """Reads the workload, checks it can be rolled, and records the revision a rollback returns to."""
    try:
        return await asyncio.to_thread(_prepare, req.request)
    except KubeError as err:
        if err.status in (400, 401, 403, 422):
            raise _non_retryable(f"reading the workload: {err.message}", INVALID_WORKLOAD) from None
        raise


# ---- begin -------------------------------------------------------------------------------------------------------


def _begin(req: BeginInput) -> dict[str, Any]:
    w = req.workload
    cluster = w.target.cluster
    patch: Obj = {"spec": {}}
    if req.recorded is not None:
        patch["metadata"] = {"annotations": {ROLLOUT_ANNOTATION: req.recorded.model_dump_json()}}
    if w.kind == "Deployment":
        patch["spec"]["paused"] = True
        patch["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": None}
    else:
        patch["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": req.replicas}}
    # Frozen first, then the template: the controllers never see the new template on a workload free to roll.
    kubeapi.merge_patch(cluster, w.path(), patch)
    obj = kubeapi.replace_field(cluster, w.path(), "/spec/template", req.template)
    return dict(obj["spec"]["template"])


@activity.defn
async def begin_rolling(req: BeginInput) -> dict[str, Any]:
    """Freezes the workload at its current pods with `template` as the target (no pod changes yet).

    Deployment: paused, strategy Recreate (see the module docstring), template set. StatefulSet: partition =
    replicas, template set. Returns the template as the API server stored it (with defaults).
    """
    return await asyncio.to_thread(_begin, req)


# ---- move ---------------------------------------------------------------------------------------------------------


def _scale_rs(cluster: str, namespace: str, rs: Obj, replicas: int) -> None:
    kubeapi.merge_patch(
        cluster, kubeapi.apps_path(namespace, "replicasets", rs["metadata"]["name"]), {"spec": {"replicas": replicas}}
    )
    rs["spec"]["replicas"] = replicas


def _ensure_rs(cluster: str, deploy: Obj, rss: list[Obj]) -> Obj:
    """The ReplicaSet of the Deployment's template: found by template (ignoring the hash label), else created."""
    template = deploy["spec"]["template"]
    for rs in rss:
        if _without_hash(rs["spec"].get("template")) == _without_hash(template):
            return rs
    meta = deploy["metadata"]
    h = _template_hash(template)
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
    return kubeapi.create(cluster, kubeapi.apps_path(meta["namespace"], "replicasets"), rs)


def _deployment_step(req: MoveInput) -> tuple[bool, str]:
    """One look at the Deployment's ReplicaSets and one move towards the goal; True when the batch is done."""
    w = req.workload
    cluster, ns = w.target.cluster, w.target.namespace
    deploy = kubeapi.get(cluster, w.path())
    if deploy is None:
        raise _non_retryable(f"{w.describe()} was deleted during the rollout", WORKLOAD_NOT_FOUND)
    rss = [rs for rs in _list(cluster, kubeapi.apps_path(ns, "replicasets"), deploy) if _owned_by(rs, deploy)]
    target = _ensure_rs(cluster, deploy, rss)
    others = [
        rs for rs in rss if rs["metadata"]["name"] != target["metadata"]["name"] and int(rs["spec"].get("replicas", 0))
    ]
    pods = _list(cluster, kubeapi.core_path(ns, "pods"), deploy)
    target_pods = [p for p in pods if _owned_by(p, target) and not p["metadata"].get("deletionTimestamp")]
    problems = _pod_problems(target_pods)
    if problems:
        raise _non_retryable(
            f"{req.label or 'batch'}: new pods are failing: {'; '.join(problems[:5])}", BATCH_UNHEALTHY
        )

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


def _statefulset_step(req: MoveInput) -> tuple[bool, str]:
    w = req.workload
    cluster, ns = w.target.cluster, w.target.namespace
    sts = kubeapi.get(cluster, w.path())
    if sts is None:
        raise _non_retryable(f"{w.describe()} was deleted during the rollout", WORKLOAD_NOT_FOUND)
    n = req.replicas
    partition = max(0, n - req.count)
    strategy = sts["spec"].get("updateStrategy") or {}
    if ((strategy.get("rollingUpdate") or {}).get("partition")) != partition:
        sts = kubeapi.merge_patch(
            cluster,
            w.path(),
            {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}}},
        )
    status = sts.get("status") or {}
    update_rev = status.get("updateRevision")
    if int(status.get("observedGeneration", 0)) < int(sts["metadata"].get("generation", 1)) or not update_rev:
        return False, "waiting for the StatefulSet controller to observe the change"
    name = sts["metadata"]["name"]
    pods = {p["metadata"]["name"]: p for p in _list(cluster, kubeapi.core_path(ns, "pods"), sts) if _owned_by(p, sts)}
    moving = [pods[f"{name}-{i}"] for i in range(partition, n) if f"{name}-{i}" in pods]
    problems = _pod_problems(moving)
    if problems:
        raise _non_retryable(f"{req.label or 'batch'}: pods are failing: {'; '.join(problems[:5])}", BATCH_UNHEALTHY)
    updated = [p for p in moving if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == update_rev]
    not_ready = _not_ready(list(pods.values()))
    detail = (
        f"partition {partition}: {len(updated)}/{n - partition} pods at {update_rev}, "
        f"{len(pods) - len(not_ready)}/{n} ready" + (f"; not ready: {', '.join(not_ready[:5])}" if not_ready else "")
    )
    done = len(updated) == n - partition and len(pods) == n and not not_ready
    return done, detail


@activity.defn
async def move_pods(req: MoveInput) -> MoveResult:
    """Moves pods until exactly `count` run the workload's template, all ready: the batch and its health gate.

    Raises BatchUnhealthy as soon as a new pod crash-loops or cannot pull its image, BatchTimedOut when the
    pods are not ready and available within the timeout. Cancelling it leaves the ReplicaSets where they are.
    """
    step = _deployment_step if req.workload.kind == "Deployment" else _statefulset_step
    detail = await _poll_until(lambda: step(req), req.timeout_seconds, req.label or "batch")
    return MoveResult(updated=req.count, ready=req.replicas, revision=detail.split(":", 1)[0])


# ---- finish -------------------------------------------------------------------------------------------------------


def _finish(req: FinishInput) -> tuple[bool, str]:
    w = req.workload
    cluster = w.target.cluster
    obj = kubeapi.get(cluster, w.path())
    if obj is None:
        raise _non_retryable(f"{w.describe()} was deleted during the rollout", WORKLOAD_NOT_FOUND)
    annotations = obj["metadata"].get("annotations") or {}
    if ROLLOUT_ANNOTATION in annotations:
        patch: Obj = {"metadata": {"annotations": {ROLLOUT_ANNOTATION: None}}, "spec": {}}
        if w.kind == "Deployment":
            strategy = copy.deepcopy(req.recorded.strategy)
            if strategy.get("type") == "Recreate":
                strategy["rollingUpdate"] = None
            patch["spec"] = {"paused": req.recorded.paused, "strategy": strategy}
        else:
            strategy = copy.deepcopy(req.recorded.strategy)
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
            patch["spec"] = {"updateStrategy": strategy}
        obj = kubeapi.merge_patch(cluster, w.path(), patch)
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
    return await _poll_until(lambda: _finish(req), req.timeout_seconds, f"handing {req.workload.describe()} back")


# ---- native -------------------------------------------------------------------------------------------------------


def _native_step(req: NativeInput, started: list[bool]) -> tuple[bool, str]:
    w = req.workload
    cluster, ns = w.target.cluster, w.target.namespace
    if not started:
        kubeapi.replace_field(cluster, w.path(), "/spec/template", req.template)
        kubeapi.merge_patch(cluster, w.path(), {"spec": {"strategy": req.strategy, "paused": False}})
        started.append(True)
    deploy = kubeapi.get(cluster, w.path())
    if deploy is None:
        raise _non_retryable(f"{w.describe()} was deleted during the rollout", WORKLOAD_NOT_FOUND)
    status = deploy.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise _non_retryable(
                f"{w.describe()}: {cond.get('message', 'progress deadline exceeded')}", BATCH_TIMED_OUT
            )
    rss = [rs for rs in _list(cluster, kubeapi.apps_path(ns, "replicasets"), deploy) if _owned_by(rs, deploy)]
    current = [
        rs for rs in rss if _without_hash(rs["spec"].get("template")) == _without_hash(deploy["spec"]["template"])
    ]
    if current:
        pods = [p for p in _list(cluster, kubeapi.core_path(ns, "pods"), deploy) if _owned_by(p, current[0])]
        problems = _pod_problems(pods)
        if problems:
            raise _non_retryable(f"new pods are failing: {'; '.join(problems[:5])}", BATCH_UNHEALTHY)
    n = req.replicas
    observed = int(status.get("observedGeneration", 0)) >= int(deploy["metadata"].get("generation", 1))
    done = (
        observed
        and int(status.get("updatedReplicas", 0)) == n
        and int(status.get("replicas", 0)) == n
        and int(status.get("availableReplicas", 0)) >= n
    )
    return done, f"updated {status.get('updatedReplicas', 0)}/{n}, available {status.get('availableReplicas', 0)}/{n}"


@activity.defn
async def native_rollout(req: NativeInput) -> str:
    """Sets the template and lets Kubernetes' RollingUpdate replace the pods; watches it to the end."""
    started: list[bool] = []
    detail = await _poll_until(lambda: _native_step(req, started), req.timeout_seconds, req.workload.describe())
    if req.restore_strategy:
        strategy = copy.deepcopy(req.restore_strategy)
        if strategy.get("type") == "Recreate":
            strategy["rollingUpdate"] = None
        w = req.workload
        await asyncio.to_thread(kubeapi.merge_patch, w.target.cluster, w.path(), {"spec": {"strategy": strategy}})
    return detail


class PauseInput(BaseModel):
    workload: WorkloadRef
    paused: bool


@activity.defn
async def set_paused(req: PauseInput) -> None:
    """Pauses or resumes a Deployment's own rollout (native mode): Kubernetes stops moving pods where they are."""
    w = req.workload
    await asyncio.to_thread(kubeapi.merge_patch, w.target.cluster, w.path(), {"spec": {"paused": req.paused}})


ROLLING_ACTIVITIES: list[Callable[..., Any]] = [
    prepare_rolling,
    begin_rolling,
    move_pods,
    finish_rolling,
    native_rollout,
    set_paused,
]
