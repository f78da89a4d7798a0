"""One judgement of pod health for every strategy: healthy, still progressing, or failed for good, and why.

A pod whose container waits for a reason in `deployflow.errors.FATAL_WAITING_REASONS` (a crash loop, an image that
cannot be pulled, a missing ConfigMap or Secret) will not become ready by waiting, and neither will a Deployment
whose progress deadline passed. Every wait fails fast on those with the same error type (the reason) and the same
sentence (`fatal_waiting_message`), whichever strategy waits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from temporalio.exceptions import ApplicationError

from deployflow.errors import FATAL_WAITING_REASONS, ErrorType, fatal_waiting_message

Obj = dict[str, Any]


class State(StrEnum):
    HEALTHY = "healthy"
    PROGRESSING = "progressing"
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    """How a workload's pods stand; `reason` (an ErrorType value) and `message` say why when it failed."""

    state: State
    ready: int = 0
    want: int = 0
    updated: int = 0
    reason: str | None = None
    message: str = ""
    problems: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.state is State.FAILED

    @property
    def healthy(self) -> bool:
        return self.state is State.HEALTHY

    def summary(self) -> str:
        text = f"{self.ready}/{self.want} ready, {self.updated} updated"
        if self.problems:
            text += "; " + "; ".join(self.problems[:3])
        return text

    def error(self, context: str) -> ApplicationError:
        """The non-retryable failure of a wait that found this verdict: `context` says what was waited for."""
        assert self.reason is not None, "only a failed verdict is an error"
        return ApplicationError(f"{context}: {self.message}", type=self.reason, non_retryable=True)


def live(pods: Iterable[Obj]) -> list[Obj]:
    """Pods not being deleted: a terminating pod neither serves nor counts towards a rollout."""
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def runs(pod: Obj, image: str | None) -> bool:
    """Whether the pod runs `image` in one of its containers (any pod does when `image` is None)."""
    if image is None:
        return True
    return any(c.get("image") == image for c in (pod.get("spec") or {}).get("containers") or [])


def _statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def fatal_problem(
    pods: Iterable[Obj], image: str | None = None, reasons: frozenset[str] = FATAL_WAITING_REASONS
) -> Verdict | None:
    """The first live pod that cannot start, as a failed verdict; None when no pod is broken for good.

    With `image`, containers reporting another image belong to an older template on its way out and are ignored.
    """
    for pod in live(pods):
        for cs in _statuses(pod):
            if image is not None and cs.get("image") not in (image, None, ""):
                continue
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason not in reasons:
                continue
            restarts = int(cs.get("restartCount") or 0)
            detail = "; ".join(
                part for part in (waiting.get("message"), f"{restarts} restarts" if restarts else None) if part
            )
            name = str((pod.get("metadata") or {}).get("name"))
            return Verdict(State.FAILED, reason=str(reason), message=fatal_waiting_message(name, reason, detail))
    return None


def waiting_problems(pods: Iterable[Obj]) -> tuple[str, ...]:
    """Why live pods are not running yet ("pod x: ContainerCreating"), for progress reports."""
    out = []
    for pod in live(pods):
        for cs in _statuses(pod):
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if reason:
                out.append(f"pod {(pod.get('metadata') or {}).get('name')}: {reason}")
    return tuple(out)


def progress_deadline(workload: Obj) -> Verdict | None:
    """A Deployment whose controller gave up progressing (its `progressDeadlineSeconds` passed), as a failure."""
    for condition in (workload.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == ErrorType.PROGRESS_DEADLINE_EXCEEDED:
            name = (workload.get("metadata") or {}).get("name", "the workload")
            detail = str(condition.get("message") or f"{name} exceeded its progress deadline").rstrip(".")
            return Verdict(
                State.FAILED,
                reason=ErrorType.PROGRESS_DEADLINE_EXCEEDED,
                message=f"{ErrorType.PROGRESS_DEADLINE_EXCEEDED} ({detail})",
            )
    return None


def judge(workload: Obj, pods: list[Obj], *, replicas: int | None = None, image: str | None = None) -> Verdict:
    """Judges a Deployment, ReplicaSet or StatefulSet from its status and its pods.

    Healthy means: the controller has seen the current spec, `replicas` (default: the spec's) pods run the current
    template and are Ready, and no pod of another template is left. Ready pods are counted from the pods
    themselves as well as from the status, because pod readiness is what puts a pod behind a Service, and status
    counts can lag it. A fatal pod state or a passed progress deadline fails it whatever else holds.
    """
    meta, spec, status = workload.get("metadata") or {}, workload.get("spec") or {}, workload.get("status") or {}
    want = int(spec.get("replicas", 1) if replicas is None else replicas)
    pods_now = live(pods)
    ready = max(int(status.get("readyReplicas") or 0), sum(1 for p in pods_now if runs(p, image) and pod_ready(p)))
    # A ReplicaSet has no updatedReplicas: every one of its pods runs its template.
    updated = int(status.get("updatedReplicas", status.get("replicas", 0)) or 0)
    problems = waiting_problems(pods_now)
    failure = fatal_problem(pods_now, image) or progress_deadline(workload)
    if failure is not None:
        return Verdict(
            State.FAILED, ready, want, updated, failure.reason, failure.message, problems
        )
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    settled = (
        observed
        and updated >= want
        and ready >= want
        and int(status.get("replicas") or 0) <= want
        and len(pods_now) <= want
    )
    return Verdict(State.HEALTHY if settled else State.PROGRESSING, ready, want, updated, problems=problems)
