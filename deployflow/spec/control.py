"""Inputs of the messages an operator sends to a running deployment (signals and updates of the same name).

Every field has a default so `temporal workflow signal --name pause` works without `--input`.
"""

from __future__ import annotations

from pydantic import Field

from deployflow.spec.common import StrictModel


class PauseRequest(StrictModel):
    reason: str = Field(default="paused by operator", max_length=1024)


class ResumeRequest(StrictModel):
    pass


class AbortRequest(StrictModel):
    reason: str = Field(default="aborted by operator", max_length=1024)


class PromoteRequest(StrictModel):
    full: bool = Field(default=False, description="skip every remaining step and go straight to 100%")


class RollbackRequest(StrictModel):
    reason: str = Field(default="rollback requested by operator", max_length=1024)


class ApproveRequest(StrictModel):
    approver: str = Field(default="unknown", min_length=1, max_length=256, description="who approved")
    comment: str = Field(default="", max_length=1024)
