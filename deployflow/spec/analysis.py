"""Analysis: which numbers decide whether a new version may take more traffic.

A metric is measured `count` times, `interval` apart, by a provider (Prometheus, an HTTP JSON endpoint, or the
canary pods' own health). Each measurement is judged by `success_condition` / `failure_condition`, small
expressions over `result` (and `baseline`, the same measurement of the stable version) checked when the spec is
read, so a typo fails before anything in a cluster changes.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Annotated, Literal

from jsonpath_ng.ext import parse as parse_json_path
from pydantic import Field, field_validator, model_validator
from temporalio import workflow

from deployflow.analysis.conditions import ConditionError, compile_condition
from deployflow.security import secrets
from deployflow.security.credentials import check_env_name
from deployflow.spec.common import MAX_DURATION, Duration, FetchableUrl, PositiveDuration, StrictModel

MAX_MEASUREMENTS = 10_000


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


class SecretKeyRef(StrictModel):
    name: str = Field(min_length=1, description="Secret in the target namespace")
    key: str = Field(min_length=1)


class HeaderValueFrom(StrictModel):
    """Where a header's value comes from: never the spec itself, which lands in workflow history."""

    env: str | None = Field(
        default=None, description="environment variable of the worker; must start with DEPLOYFLOW_CRED_"
    )
    secret: SecretKeyRef | None = Field(
        default=None, description="a Secret labelled deployflow.io/credential=true in the target namespace"
    )

    @field_validator("env")
    @classmethod
    def _credential_env(cls, value: str | None) -> str | None:
        return None if value is None else check_env_name(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> HeaderValueFrom:
        if (self.env is None) == (self.secret is None):
            raise ValueError("set exactly one of 'env' or 'secret'")
        return self


class Header(StrictModel):
    name: str = Field(min_length=1)
    value_from: HeaderValueFrom


class PrometheusProvider(StrictModel):
    kind: Literal["prometheus"] = "prometheus"
    address: FetchableUrl = Field(min_length=1, description="base URL of the Prometheus HTTP API, e.g. http://prometheus:9090")
    query: str = Field(
        min_length=1,
        description="PromQL instant query; {{ args.namespace }}, {{ args.app }}, {{ args.version }} are filled in",
    )
    headers: list[Header] = Field(default_factory=list)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class WebProvider(StrictModel):
    kind: Literal["web"] = "web"
    url: FetchableUrl = Field(min_length=1, description="URL answering JSON; {{ args.* }} are filled in")
    json_path: str = Field(default="$", max_length=1024, description="JSONPath of the value, e.g. $.data.error_rate")
    headers: list[Header] = Field(default_factory=list)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("json_path")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        try:
            _parse_json_path(value)
        except Exception as err:
            raise ValueError(f"not a valid JSONPath: {err}") from None
        return value


def _parse_json_path(value: str) -> object:
    # The parser (ply) looks itself up in sys.modules and touches os.path, which the workflow sandbox does not
    # allow. Inside a workflow the spec was already checked by whoever started it, and the activity that
    # measures parses the path again, so the check is skipped there.
    if workflow.in_workflow() or workflow.unsafe.in_sandbox():
        return None
    return parse_json_path(value)


class KubernetesProvider(StrictModel):
    """The canary pods' own health, read from the Kubernetes API."""

    kind: Literal["kubernetes"] = "kubernetes"
    measure: Literal["restarts", "ready-ratio"] = Field(
        description="restarts: container restarts summed over the canary pods; ready-ratio: ready pods / pods"
    )


Provider = Annotated[PrometheusProvider | WebProvider | KubernetesProvider, Field(discriminator="kind")]

_METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")


class Metric(StrictModel):
    name: str = Field(description="shown in measurements and failure messages, e.g. error_rate")
    provider: Provider
    interval: PositiveDuration = Field(default=timedelta(seconds=30), description="time between measurements")
    count: int | None = Field(
        default=None, ge=1, le=MAX_MEASUREMENTS,
        description="measurements to take; default 1 in a step, unbounded in background analysis",
    )
    initial_delay: Duration = Field(default=timedelta(0), description="wait before the first measurement")
    success_condition: str | None = Field(default=None, max_length=1024, description="e.g. result < 0.02")
    failure_condition: str | None = Field(
        default=None, max_length=1024, description="e.g. result > max(2 * baseline, 0.01)"
    )
    failure_limit: int = Field(default=0, ge=-1, description="failed measurements tolerated; -1: no limit")
    inconclusive_limit: int = Field(default=0, ge=-1, description="inconclusive measurements tolerated; -1: no limit")
    consecutive_error_limit: int = Field(
        default=4, ge=0,
        description="provider errors in a row tolerated before the metric is an Error; a finished window with any "
        "error is Inconclusive, never a pass",
    )
    baseline: bool = Field(
        default=False,
        description="also measure the stable version (args.version = the stable version) and expose it as `baseline`",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _METRIC_NAME.match(value):
            raise ValueError("must start with a letter and hold only letters, digits, '_', '-', '.'")
        return value

    @field_validator("success_condition", "failure_condition")
    @classmethod
    def _valid_condition(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compile_condition(value)
        except ConditionError as err:
            raise ValueError(str(err)) from None
        except RecursionError:
            raise ValueError("the condition is nested too deeply") from None
        return value

    @model_validator(mode="after")
    def _baseline_used(self) -> Metric:
        uses = any("baseline" in (c or "") for c in (self.success_condition, self.failure_condition))
        if uses and not self.baseline:
            raise ValueError("a condition uses `baseline`: set baseline: true so the stable version is measured")
        if self.count is not None and self.initial_delay + (self.count - 1) * self.interval > MAX_DURATION:
            raise ValueError(
                f"count: {self.count} measurements {format_duration(self.interval)} apart (after "
                f"{format_duration(self.initial_delay)}) would take longer than 365d; take fewer or closer ones"
            )
        return self


OnInconclusive = Literal["pause", "fail"]


class Analysis(StrictModel):
    metrics: list[Metric] = Field(min_length=1)
    args: dict[str, str] = Field(
        default_factory=dict, description="extra {{ args.NAME }} values for queries and URLs"
    )
    on_inconclusive: OnInconclusive = Field(
        default="pause",
        description="what an inconclusive verdict (no data, or neither condition holds beyond inconclusive_limit) "
        "does to the release: pause waits for a person, promote goes on and abort rolls back (background analysis "
        "pauses the release until resumed); fail rolls back as a failed analysis does",
    )

    @field_validator("args")
    @classmethod
    def _no_literal_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        secrets.check_mapping(value, "")
        return value

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, value: list[Metric]) -> list[Metric]:
        names = [m.name for m in value]
        dupes = sorted(n for n, seen in Counter(names).items() if seen > 1)  # linear: lists may be long
        if dupes:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(dupes)}")
        return value
