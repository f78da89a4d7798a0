"""What the `status` query returns: the live picture of one deployment, shared by every strategy."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    WAITING_PROMOTION = "WaitingPromotion"  # a gate waits for promote/approve
    STANDBY = "Standby"  # promoted; previous version kept for instant rollback
    ROLLING_BACK = "RollingBack"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Event(BaseModel):
    time: datetime
    message: str
    kind: str = "info"  # info | warning | error | decision


class Measurement(BaseModel):
    """One analysis measurement: the number, the condition it was judged by, and the verdict."""

    time: datetime
    metric: str
    value: float | None = None
    condition: str = ""
    verdict: str  # Successful | Failed | Inconclusive | Error
    message: str = ""
    weight: float | None = Field(
        default=None,
        description="the share of requests (percent) the measured version really had when it was measured",
    )


class TrafficStep(BaseModel):
    """One change of the canary's weight: what was asked for and what it really got (None: not known)."""

    time: datetime
    requested: int
    actual: float | None = None
    observed: float | None = Field(
        default=None,
        description="the canary's share of requests Prometheus counted at this weight (percent), as last read",
    )


class DeploymentStatus(BaseModel):
    strategy: str
    app: str
    namespace: str
    cluster: str
    version: str
    previous_version: str | None = None
    phase: Phase = Phase.PENDING
    step: str = ""
    step_index: int = 0
    step_count: int = 0
    paused: bool = False
    message: str = ""
    weights: dict[str, int] = Field(default_factory=dict)  # requested, e.g. {"stable": 75, "canary": 25}
    actual_weights: dict[str, float] = Field(
        default_factory=dict,
        description="the shares the tracks really get, by the same names as `weights`: without a mesh the ratio of "
        "ready pods (1 canary pod beside 4 stable is 20%, whatever the step asked for), with one the route's "
        "weights; empty when unknown",
    )
    observed_weights: dict[str, float] = Field(
        default_factory=dict,
        description="the shares of requests each track really answered over the last interval, read from "
        "Prometheus at the current weight (see traffic.observed_query); empty when unknown",
    )
    traffic_history: list[TrafficStep] = Field(default_factory=list)  # each weight a canary's steps set, in order
    details: dict[str, Any] = Field(default_factory=dict)  # strategy-specific facts (active colour, batch)
    measurements: list[Measurement] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None


def format_percent(value: float) -> str:
    """A share as people read it: 20%, 12.5%, 14.3%."""
    return f"{value:.1f}".removesuffix(".0") + "%"


def actual_differs(status: DeploymentStatus) -> bool:
    """Whether the real split is known and is not the one requested."""
    actual = status.actual_weights
    return bool(actual) and any(abs(actual.get(k, float(v)) - v) >= 0.05 for k, v in status.weights.items())


def traffic_text(status: DeploymentStatus) -> str:
    """The split in one line, requested and actual: "stable 95%, canary 5% requested; actual stable 80%, canary 20%"
    (one split when they agree; the requested one alone when the real one is unknown), then the observed one when
    Prometheus counted it: "; observed stable 79.6%, canary 20.4%"."""
    requested = ", ".join(f"{name} {weight}%" for name, weight in status.weights.items())
    if not status.actual_weights:
        text = requested
    elif not actual_differs(status):
        text = f"{requested} (requested and actual)"
    else:
        text = f"{requested} requested; actual {split_text(status.actual_weights)}"
    if status.observed_weights:
        text += f"; observed {split_text(status.observed_weights)}"
    return text


def split_text(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {format_percent(weight)}" for name, weight in weights.items())


def step_text(status: DeploymentStatus) -> str:
    """The step as one line, numbered once: "2/3 pause until promoted". Runs that put the number into `step`
    themselves are not numbered twice."""
    if not status.step_count or not status.step_index:
        return status.step
    number = f"{status.step_index}/{status.step_count}"
    if status.step == number or status.step.startswith(number + " "):
        return status.step
    return f"{number} {status.step}".strip()
