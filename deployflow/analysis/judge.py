"""The judge: Argo Rollouts' truth table per measurement, limits per metric, and the worst metric decides the run.

Measurement (one number, judged by the metric's conditions):
  neither condition set           -> Successful
  only success_condition          -> Successful when true, Failed when false
  only failure_condition          -> Failed when true, Successful when false
  both set                        -> Failed if failure is true, Successful if success is true, else Inconclusive
  no data (empty result, NaN)     -> Inconclusive: never a silent pass or fail
  provider or evaluation error    -> Error

Metric (all its measurements so far): Failed when failed > failure_limit, Inconclusive when inconclusive >
inconclusive_limit, Error when errors in a row > consecutive_error_limit, Successful when `count` measurements
are in and none of those hold, else Running.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from deployflow.analysis.conditions import EvaluationError, compile_condition, format_value, render
from deployflow.spec.analysis import Metric
from deployflow.status import Measurement


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    RUNNING = "Running"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"
    FAILED = "Failed"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def done(self) -> bool:
        return self is not Verdict.RUNNING


_SEVERITY = {
    Verdict.SUCCESSFUL: 0,
    Verdict.RUNNING: 1,
    Verdict.INCONCLUSIVE: 2,
    Verdict.ERROR: 3,
    Verdict.FAILED: 4,
}

Value = float | list[float] | None


def no_data(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return len(value) == 0 or all(isinstance(v, float) and math.isnan(v) for v in value)
    return isinstance(value, float) and math.isnan(value)


def judge_measurement(
    metric: Metric,
    value: Value,
    *,
    time: datetime,
    baseline: Value = None,
    error: str | None = None,
) -> Measurement:
    """One measurement, judged by the truth table; the message says why in words a person can act on."""
    condition = metric.failure_condition or metric.success_condition or ""
    number = _first(value)

    def measurement(verdict: Verdict, message: str, shown: str = condition) -> Measurement:
        return Measurement(
            time=time, metric=metric.name, value=number, condition=shown, verdict=verdict.value, message=message
        )

    if error is not None:
        return measurement(Verdict.ERROR, f"{metric.name}: {error}")
    if no_data(value):
        return measurement(Verdict.INCONCLUSIVE, f"{metric.name}: no data")
    if metric.baseline and no_data(baseline):
        return measurement(Verdict.INCONCLUSIVE, f"{metric.name} {format_value(value)}: no baseline data")

    variables = {"result": value, "baseline": _first(baseline) if isinstance(baseline, list) else baseline}
    try:
        failed = (
            compile_condition(metric.failure_condition).evaluate(variables) if metric.failure_condition else None
        )
        succeeded = (
            compile_condition(metric.success_condition).evaluate(variables) if metric.success_condition else None
        )
    except EvaluationError as err:
        return measurement(Verdict.ERROR, f"{metric.name} {format_value(value)}: {err}")

    base = variables["baseline"] if metric.baseline else None
    if failed:
        assert metric.failure_condition is not None
        return measurement(
            Verdict.FAILED, render(metric.failure_condition, metric.name, value, base), metric.failure_condition
        )
    if succeeded is False and failed is None:
        assert metric.success_condition is not None
        text = render(metric.success_condition, metric.name, value, base)
        return measurement(Verdict.FAILED, f"not ({text})", metric.success_condition)
    if succeeded is False:
        # both conditions set and neither holds
        return measurement(
            Verdict.INCONCLUSIVE,
            f"{metric.name} {format_value(value)}: neither `{metric.success_condition}` "
            f"nor `{metric.failure_condition}` holds",
        )
    return measurement(Verdict.SUCCESSFUL, f"{metric.name} {format_value(value)}: ok")


def _first(value: Any) -> float | None:
    if isinstance(value, list):
        return _first(value[0]) if value else None
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


@dataclass(frozen=True)
class MetricVerdict:
    metric: str
    verdict: Verdict
    message: str
    taken: int
    failed: int
    inconclusive: int
    errors_in_a_row: int


def judge_metric(metric: Metric, measurements: Sequence[Measurement], count: int | None) -> MetricVerdict:
    """The state of one metric after its measurements so far; `count=None` means it runs until stopped."""
    mine = [m for m in measurements if m.metric == metric.name]
    failed = sum(1 for m in mine if m.verdict == Verdict.FAILED)
    inconclusive = sum(1 for m in mine if m.verdict == Verdict.INCONCLUSIVE)
    errors_in_a_row = 0
    for m in reversed(mine):
        if m.verdict != Verdict.ERROR:
            break
        errors_in_a_row += 1
    taken = len(mine)

    def last(verdict: Verdict) -> str:
        return next((m.message for m in reversed(mine) if m.verdict == verdict), "")

    def result(verdict: Verdict, message: str) -> MetricVerdict:
        return MetricVerdict(metric.name, verdict, message, taken, failed, inconclusive, errors_in_a_row)

    plural = "measurement" if taken == 1 else "measurements"
    if metric.failure_limit >= 0 and failed > metric.failure_limit:
        return result(Verdict.FAILED, f"{last(Verdict.FAILED)}, {failed} of {taken} {plural} failed")
    if metric.inconclusive_limit >= 0 and inconclusive > metric.inconclusive_limit:
        return result(
            Verdict.INCONCLUSIVE, f"{last(Verdict.INCONCLUSIVE)}, {inconclusive} of {taken} {plural} inconclusive"
        )
    if errors_in_a_row > metric.consecutive_error_limit:
        return result(Verdict.ERROR, f"{last(Verdict.ERROR)}, {errors_in_a_row} errors in a row")
    if count is not None and taken >= count:
        # A measurement that could not be taken is missing data, not a pass: a window with any of them never
        # promotes on its own; it waits for a person, as no data does.
        errors = sum(1 for m in mine if m.verdict == Verdict.ERROR)
        if errors:
            return result(
                Verdict.INCONCLUSIVE,
                f"{last(Verdict.ERROR)}, {errors} of {taken} {plural} could not be taken",
            )
        return result(Verdict.SUCCESSFUL, f"{metric.name}: {taken - failed} of {taken} {plural} passed")
    return result(Verdict.RUNNING, f"{metric.name}: {taken} {plural} so far")


def judge_run(verdicts: Sequence[MetricVerdict]) -> MetricVerdict | None:
    """The worst metric decides; None when there are no metrics."""
    if not verdicts:
        return None
    return max(verdicts, key=lambda v: v.verdict.severity)
