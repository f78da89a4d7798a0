"""The blue-green request: two colours of one app, a preview Service to test the idle one, an instant switch."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from deployflow.spec.common import (
    SOURCE_DESCRIPTION,
    DnsLabel,
    Duration,
    PositiveDuration,
    SmokeTest,
    Source,
    StrictModel,
    Target,
    Workload,
)
from deployflow.spec.hooks import Hooks
from deployflow.spec.notify import Notifier

COLORS = ("blue", "green")


class PromotionGate(StrictModel):
    """When traffic switches to the new colour once it is healthy and its smoke tests pass.

    - `auto`: at once.
    - `after`: after `delay`, unless an operator promotes earlier or aborts.
    - `manual`: only on `promote`/`approve`; with `timeout`, the release is rolled back if nobody decides in time.
    """

    mode: Literal["auto", "after", "manual"] = "auto"
    delay: Duration | None = Field(default=None, description="for mode 'after': how long to wait before switching")
    timeout: PositiveDuration | None = Field(
        default=None, description="for mode 'manual': roll back if nobody promotes within this time"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PromotionGate:
        if self.mode == "after" and self.delay is None:
            raise ValueError("delay: required when mode is 'after'")
        if self.mode != "after" and self.delay is not None:
            raise ValueError(f"delay: only meaningful when mode is 'after' (mode is {self.mode!r})")
        if self.mode != "manual" and self.timeout is not None:
            raise ValueError(f"timeout: only meaningful when mode is 'manual' (mode is {self.mode!r})")
        return self


class BlueGreenRequest(StrictModel):
    """Input of the BlueGreenDeployment workflow.

    The app runs as two Deployments, `<app>-blue` and `<app>-green`. The new version goes to the idle colour, is
    checked through the preview Service, then the active Service's selector switches to it in one step. The old
    colour stays up for `standby` so a rollback is instant, then scales to zero.
    """

    strategy: Literal["blue-green"] = "blue-green"
    target: Target
    workload: Workload
    active_service: DnsLabel | None = Field(default=None, description="Service users reach; defaults to <app>")
    preview_service: DnsLabel | None = Field(
        default=None, description="Service that reaches the new colour before the switch; defaults to <app>-preview"
    )
    smoke_tests: list[SmokeTest] = Field(default_factory=list, max_length=50)
    promotion: PromotionGate = Field(default_factory=PromotionGate)
    standby: Duration = Field(
        default=timedelta(hours=1),
        description="how long the old colour keeps running after the switch, for an instant rollback",
    )
    hooks: Hooks = Field(
        default_factory=Hooks,
        description="pre_deploy before anything changes, pre_promote before the switch, post_deploy after it "
        "(during standby, so a failure switches back), on_rollback after a rollback",
    )
    notifications: list[Notifier] = Field(default_factory=list, max_length=20)
    source: Source | None = Field(default=None, description=SOURCE_DESCRIPTION)

    @model_validator(mode="after")
    def _services_differ(self) -> BlueGreenRequest:
        preview = self.preview_service_name
        if len(preview) > 63:
            raise ValueError(
                f"preview_service: the default {preview!r} is longer than 63 characters; set preview_service"
            )
        if self.active_service_name == preview:
            raise ValueError(f"preview_service: must differ from active_service (both are {preview!r})")
        for color in COLORS:
            if len(f"{self.target.app}-{color}") > 63:
                raise ValueError(f"target.app: {self.target.app!r}-{color} would be longer than 63 characters")
        return self

    @property
    def active_service_name(self) -> str:
        return self.active_service or self.target.app

    @property
    def preview_service_name(self) -> str:
        return self.preview_service or f"{self.target.app}-preview"

    @property
    def version(self) -> str:
        return self.workload.resolved_version(self.target.container_name) or ""
