"""The rolling request: replace the pods of an existing Deployment or StatefulSet batch by batch, with gates.

A rolling deployment changes an existing workload named `workload_name` (default: the app name) in place: the
container `target.container` gets the new image, the pods the version label and any extra annotations, labels
and environment. Batches are counts or percentages of the replicas; after each batch a health gate checks that
the new pods are ready and available and none crash-loops or cannot pull its image, optionally an analysis runs,
optionally the rollout bakes for a while or waits for an approval. Abort, a failed gate or a failed hook rolls
back to the revision recorded before the rollout started.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, Field, model_validator

from deployflow.spec.analysis import Analysis
from deployflow.spec.common import (
    SOURCE_DESCRIPTION,
    DnsLabel,
    Duration,
    EnvVar,
    ImageReference,
    LabelValue,
    PositiveDuration,
    QualifiedName,
    Source,
    StrictModel,
    Target,
    check_annotations,
    image_tag,
    shown,
)
from deployflow.spec.hooks import Hooks
from deployflow.spec.notify import Notifier

_PERCENT = re.compile(r"^(\d{1,3})%$")


def _count_or_percent(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _PERCENT.match(value.strip())
    if not match or int(match.group(1)) > 100:
        raise ValueError(f"{shown(value)} is neither a count nor a percentage between 0% and 100% (e.g. 2 or '25%')")
    return value.strip()


CountOrPercent = Annotated[int | str, AfterValidator(_count_or_percent)]


def resolve(value: int | str, total: int, round_up: bool) -> int:
    """A count, or a percentage of `total` (rounded up for sizes and surge, down for unavailability)."""
    if isinstance(value, int):
        return value
    raw = int(value[:-1]) * total / 100
    return math.ceil(raw) if round_up else math.floor(raw)


class ApprovalGate(StrictModel):
    """A manual gate: the rollout waits for `approve` (or `promote`) from an operator, who is recorded."""

    after_batch: int = Field(
        default=1, ge=0, description="wait after this many batches; 0 waits before the first batch changes anything"
    )
    timeout: PositiveDuration | None = Field(
        default=None, description="roll back if nobody approves within this time; default: wait for ever"
    )


class RollingRequest(StrictModel):
    """Input of the RollingDeployment workflow."""

    strategy: Literal["rolling"] = "rolling"
    target: Target
    kind: Literal["Deployment", "StatefulSet"] = Field(default="Deployment", description="kind of the workload")
    workload_name: DnsLabel | None = Field(default=None, description="name of the workload; defaults to target.app")
    image: ImageReference = Field(description="new image of target.container")
    version: LabelValue | None = Field(
        default=None, description="version label (app.kubernetes.io/version); defaults to the image tag"
    )
    pod_annotations: dict[QualifiedName, str] = Field(default_factory=dict, description="added to the new pods")
    pod_labels: dict[QualifiedName, LabelValue] = Field(default_factory=dict, description="added to the new pods")
    env: list[EnvVar] = Field(default_factory=list, description="set on the container (by name) in the new pods")

    mode: Literal["batches", "native"] = Field(
        default="batches",
        description="batches: deployflow moves the pods batch by batch and holds between batches; native: "
        "Kubernetes' own RollingUpdate (Deployment only), watched until done",
    )
    batch_size: CountOrPercent = Field(default="25%", description="pods per batch: a count or a percentage")
    max_surge: CountOrPercent = Field(
        default=1, description="extra pods allowed above the replica count while a batch moves (Deployment only)"
    )
    max_unavailable: CountOrPercent = Field(
        default=0, description="pods allowed out of service while a batch moves (StatefulSet: at least 1)"
    )
    batch_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10), description="how long one batch may take to become healthy"
    )
    bake: Duration = Field(
        default=timedelta(0), description="wait after each healthy batch before the next; `promote` skips it"
    )
    analysis: Analysis | None = Field(default=None, description="judged after each batch; a failure rolls back")
    approval: ApprovalGate | None = None
    rollback: Literal["all-at-once", "batches"] = Field(
        default="all-at-once",
        description="all-at-once: bring the recorded revision back at full size, then remove the new pods; "
        "batches: move back batch by batch",
    )
    hooks: Hooks = Field(default_factory=Hooks)
    # Named like the other strategies' field; `notify` (its first name) is still read, so runs started with it
    # replay and old specs keep working.
    notifications: list[Notifier] = Field(
        default_factory=list, max_length=20, validation_alias=AliasChoices("notifications", "notify")
    )
    source: Source | None = Field(default=None, description=SOURCE_DESCRIPTION)

    @model_validator(mode="after")
    def _consistent(self) -> RollingRequest:
        if self.resolved_version is None:
            raise ValueError(
                "version: required when the image has no tag that is a valid label value (set version explicitly)"
            )
        if self.kind == "StatefulSet":
            # max_surge does not apply (pods are replaced in place) and max_unavailable is at least 1; neither is
            # an error, so a spec survives the round trip through workflow history unchanged.
            if self.mode == "native":
                raise ValueError("mode: 'native' drives a Deployment's RollingUpdate; StatefulSets roll in batches")
        elif self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("max_surge: max_surge and max_unavailable cannot both be 0, or no pod could move")
        if self.batch_size in (0, "0%"):
            raise ValueError("batch_size: must move at least one pod per batch")
        reserved = {"app.kubernetes.io/version", "pod-template-hash", "controller-revision-hash"} & set(self.pod_labels)
        if reserved:
            raise ValueError(f"pod_labels: {sorted(reserved)} are managed and cannot be set")
        check_annotations(self.pod_annotations, "pod_annotations")
        if self.approval is not None and self.mode == "native" and self.approval.after_batch > 0:
            raise ValueError("approval.after_batch: native mode has no batches; use after_batch: 0")
        return self

    @property
    def name(self) -> str:
        return self.workload_name or self.target.app

    @property
    def resolved_version(self) -> str | None:
        if self.version:
            return self.version
        tag = image_tag(self.image)
        if tag and len(tag) <= 63 and re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", tag):
            return tag
        return None

    def batch_plan(self, replicas: int) -> list[int]:
        """How many pods run the new version after each batch, e.g. 10 replicas in 25% batches: 3, 6, 9, 10."""
        if replicas <= 0:
            return [0]
        size = max(1, resolve(self.batch_size, replicas, round_up=True))
        plan = list(range(size, replicas, size)) + [replicas]
        return plan

    def surge_and_unavailable(self, replicas: int) -> tuple[int, int]:
        if self.kind == "StatefulSet":
            return 0, max(1, resolve(self.max_unavailable, replicas, round_up=False))
        surge = resolve(self.max_surge, replicas, round_up=True)
        unavailable = resolve(self.max_unavailable, replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1  # e.g. 10% of 3 replicas rounds down to 0: let one pod move, as Kubernetes does
        return surge, unavailable
