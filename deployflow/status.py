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
    weights: dict[str, int] = Field(default_factory=dict)  # e.g. {"stable": 75, "canary": 25}
    details: dict[str, Any] = Field(default_factory=dict)  # strategy-specific facts (active colour, batch)
    measurements: list[Measurement] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
