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

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any, Literal, cast

from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

from deployflow import errors, kube
from deployflow.errors import ErrorType
from deployflow.kube import Obj, health, label_selector, wait
from deployflow.kube.wait import blocking
from deployflow.spec.common import Target
from deployflow.spec.rolling import RollingRequest

WORKLOAD_NOT_FOUND = ErrorType.WORKLOAD_NOT_FOUND.value
INVALID_WORKLOAD = ErrorType.INVALID_WORKLOAD.value
BATCH_UNHEALTHY = ErrorType.BATCH_UNHEALTHY.value
BATCH_TIMED_OUT = ErrorType.BATCH_TIMED_OUT.value
# The retry policies' list: every failure deployflow.errors calls permanent (fatal pod states included). Sorted, so
# the policy a workflow records is the same on every worker.
NON_RETRYABLE: list[str] = sorted(errors.NON_RETRYABLE)

VERSION_LABEL = "app.kubernetes.io/version"
HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
ROLLOUT_ANNOTATION = "deployflow.io/rollout"

Kind = Literal["Deployment", "StatefulSet"]
Step = Callable[[Obj, wait.Snapshot], tuple[bool, str]]


# ---- models -------------------------------------------------------------------------------------------------


class WorkloadRef(BaseModel):
    """Which workload a rollout changes."""

    target: Target
    kind: Kind
    name: str

    def path(self) -> str:
        plural = "deployments" if self.kind == "Deployment" else "statefulsets"
        return kube.apps_path(self.target.namespace, plural, self.name)

    def collection(self) -> str:
        plural = "deployments" if self.kind == "Deployment" else "statefulsets"
        return kube.apps_path(self.target.namespace, plural)

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



class PauseInput(BaseModel):
    workload: WorkloadRef
    paused: bool


# ---- helpers --------------------------------------------------------------------------------------------------


def non_retryable(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def read(w: WorkloadRef) -> Obj | None:
    return kube.get(w.target.cluster, w.path())


def patch(w: WorkloadRef, body: Obj) -> Obj:
    """A merge patch of the workload (None values delete fields)."""
    return kube.merge_patch(w.target.cluster, w.path(), body)


def set_template(w: WorkloadRef, template: Obj) -> Obj:
    """Replaces the pod template whole, so fields the new one lacks go."""
    return kube.replace_field(w.target.cluster, w.path(), "/spec/template", template)


def deleted(w: WorkloadRef) -> ApplicationError:
    return non_retryable(f"{w.describe()} was deleted during the rollout", WORKLOAD_NOT_FOUND)


def without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
        labels.pop("controller-revision-hash", None)
    return t


def template_hash(template: Obj) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def container(template: Obj, name: str) -> Obj | None:
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
    found = container(template, request.target.container_name)
    assert found is not None
    found["image"] = request.image
    if request.env:
        env = [e for e in found.get("env") or [] if e.get("name") not in {v.name for v in request.env}]
        found["env"] = env + [v.manifest() for v in request.env]
    return template


def owned_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"]["uid"]
    return any(r.get("uid") == uid and r.get("controller") for r in obj["metadata"].get("ownerReferences") or [])


def match_labels(owner: Obj) -> dict[str, str]:
    return dict(((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def selected(owner: Obj) -> list[tuple[str, str]] | None:
    """The label query of what `owner` selects: a smaller answer on busy namespaces."""
    labels = match_labels(owner)
    return [("labelSelector", label_selector(labels))] if labels else None


def not_ready(pods: list[Obj]) -> list[str]:
    return [
        f"{pod['metadata']['name']} ({(pod.get('status') or {}).get('phase', 'Pending')})"
        for pod in pods
        if not health.pod_ready(pod)
    ]


async def follow(
    w: WorkloadRef, step: Step, timeout: float, what: str, *, replicasets: bool = False, pods: bool = True
) -> str:
    """Runs `step(workload, snapshot)` on every change of the workload (and its ReplicaSets and pods) until it says
    done: the watches of `kube.wait` rather than polling. A step may change the cluster (it runs in a thread);
    BatchTimedOut after `timeout` seconds."""
    cluster, ns = w.target.cluster, w.target.namespace
    wait.heartbeat(f"{what}: reading {w.name}")  # alive before the first call, however long it queues
    obj = await blocking(read, w)
    if obj is None:
        raise deleted(w)
    labels = match_labels(obj) or None
    watches = {"workload": kube.watch_events(cluster, w.collection(), name=w.name)}
    if replicasets:
        watches["replicasets"] = kube.watch_events(cluster, kube.apps_path(ns, "replicasets"), labels=labels)
    if pods:
        watches["pods"] = kube.watch_events(cluster, kube.core_path(ns, "pods"), labels=labels)

    async def check(snapshot: wait.Snapshot) -> tuple[bool, str]:
        if not snapshot["workload"]:
            raise deleted(w)
        return await blocking(step, snapshot["workload"][0], snapshot)

    def timed_out(detail: str) -> ApplicationError:
        return non_retryable(f"{what} not healthy within {timeout:g}s: {detail}", BATCH_TIMED_OUT)

    return await wait.wait_until(watches, check, timeout=timeout, on_timeout=timed_out)
