"""One analysis runner for every strategy: measure, record, judge, and say what the verdict means for the release.

A strategy builds an `AnalysisRunner` with what it needs from the workflow (the `DeploymentControl` for the status,
events, waits and interruption; the target and the version measured) and awaits `run(analysis)`. Every metric is
measured on its own interval (`initial_delay`, then every `interval`, `count` times: once in a step by default,
until stopped in background analysis), each measurement lands in the status through one bounded history, the
judge's limits decide each metric (deployflow.analysis.judge), and the worst metric's verdict comes back.

What that verdict means is the same everywhere (`decide`): success goes on, failure or error rolls back, and
inconclusive waits for a person (promote goes on, abort rolls back) unless the analysis says
`on_inconclusive: fail`. `gate` applies it to a step analysis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.analysis import MeasureInput, measure
    from deployflow.spec.analysis import Analysis, Metric, OnInconclusive
    from deployflow.spec.common import Target
    from deployflow.status import Measurement

# Not passed through: the sandbox checks the judge, and the control is whichever copy the importing workflow uses.
from deployflow.analysis.judge import MetricVerdict, Verdict, judge_metric, judge_run
from workflows.control import DeploymentControl
from workflows.failure import AnalysisFailed
from workflows.options import MEASURE_RETRY

# The status (and so every query answer and the run's result payload) keeps the newest measurements only; the
# verdicts summarise the older ones.
MAX_MEASUREMENTS = 300


class Decision(StrEnum):
    GO_ON = "go on"
    WAIT = "wait for a person"
    ROLL_BACK = "roll back"


def decide(verdict: MetricVerdict | None, on_inconclusive: OnInconclusive) -> Decision:
    """What an analysis' verdict means for the release. No metrics, or nothing judged bad yet, goes on."""
    if verdict is None or verdict.verdict.severity <= Verdict.RUNNING.severity:
        return Decision.GO_ON
    if verdict.verdict == Verdict.INCONCLUSIVE and on_inconclusive == "pause":
        return Decision.WAIT
    return Decision.ROLL_BACK


def keep_recent(history: Sequence[Measurement], new: Measurement, limit: int = MAX_MEASUREMENTS) -> list[Measurement]:
    """The history with `new` appended, cut to the newest `limit` measurements."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return [*history, new][-limit:]


def measurement_count(metric: Metric, *, background: bool) -> int | None:
    """How many measurements make a metric's verdict: its `count`; else one in a step, unbounded in background."""
    if metric.count is not None:
        return metric.count
    return None if background else 1


def failure_message(verdict: MetricVerdict, where: str = "") -> str:
    """Why a release rolls back after an analysis; `where` (e.g. "batch 2/4") when the caller's own message does
    not say it."""
    if not where:
        return verdict.message
    return f"{where}: analysis {verdict.verdict.value.lower()}: {verdict.message}"


@dataclass(frozen=True)
class MeasureOptions:
    """How each `measure` activity runs. `timeout=None`: twice the provider's own timeout plus 30 s.

    No heartbeat timeout: `measure` does not heartbeat, and one would cut a slow provider short of its own timeout.
    """

    retry: RetryPolicy
    cancellation: ActivityCancellationType
    timeout: timedelta | None = None

    def timeout_for(self, metric: Metric) -> timedelta:
        if self.timeout is not None:
            return self.timeout
        return timedelta(seconds=getattr(metric.provider, "timeout_seconds", 30) * 2 + 30)


MEASURE_OPTIONS = MeasureOptions(
    retry=MEASURE_RETRY,
    # A cancelled measurement is reported when it ends, never left running unseen (see DeploymentControl.interruptible).
    cancellation=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
)
# How rolling releases measured before this runner existed; only `legacy` runs use it, so their histories replay.
LEGACY_ROLLING_OPTIONS = MeasureOptions(
    retry=RetryPolicy(maximum_attempts=3),
    timeout=timedelta(seconds=60),
    cancellation=ActivityCancellationType.TRY_CANCEL,
)


@dataclass
class AnalysisRunner:
    """Runs analyses for one workflow.

    `baseline_value` replaces measuring the previous version as `baseline` (the post-promotion watch compares to
    the pre-deployment rate). `label` prefixes activity summaries. `legacy` is the rolling analysis as runs started
    before this runner recorded it: metrics one after another, each measurement interruptible on its own, waits
    that a pause extends, and LEGACY_ROLLING_OPTIONS. Everything else runs its metrics side by side on plain timers
    and is made interruptible as a whole by the caller.
    """

    control: DeploymentControl
    target: Target
    version: str
    baseline_value: float | None = None
    label: str = ""
    legacy: bool = False
    limit: int = MAX_MEASUREMENTS
    # The share of requests the measured version has now (percent), recorded beside each measurement so a verdict
    # reads against the exposure it was made at; default: the canary's actual weight in the status, if any.
    exposure: Callable[[], float | None] | None = None

    async def run(self, analysis: Analysis, *, background: bool = False) -> MetricVerdict | None:
        """Measures until every metric is judged, or until one is judged bad; returns the worst metric's verdict
        (None without metrics). Background analysis runs until cancelled unless its metrics set `count`."""
        if self.legacy:
            verdicts: list[MetricVerdict] = []
            for metric in analysis.metrics:
                verdicts.append(await self._metric(metric, analysis, background))
                if verdicts[-1].verdict.severity > Verdict.RUNNING.severity:
                    break
            return self._publish(judge_run(verdicts))

        # Lists, not sets: the order tasks are cancelled in becomes commands in history and must replay the same.
        tasks = [asyncio.create_task(self._metric(m, analysis, background)) for m in analysis.metrics]
        try:
            while pending := [t for t in tasks if not t.done()]:
                await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                worst = judge_run([t.result() for t in tasks if t.done()])
                if worst is not None and worst.verdict.severity > Verdict.RUNNING.severity:
                    return self._publish(worst)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
        return self._publish(judge_run([t.result() for t in tasks]))

    async def measure(
        self, metric: Metric, *, version: str | None = None, args: dict[str, str] | None = None,
        summary: str | None = None,
    ) -> Measurement:
        """One measurement of `metric` (of `version`, default the runner's), judged by its conditions."""
        options = LEGACY_ROLLING_OPTIONS if self.legacy else MEASURE_OPTIONS
        baseline_version = None if self.baseline_value is not None else self.control.status.previous_version
        step: Awaitable[Measurement] = workflow.execute_activity(
            measure,
            MeasureInput(
                target=self.target, metric=metric, version=version or self.version,
                baseline_version=baseline_version, baseline_value=self.baseline_value, args=args or {},
            ),
            start_to_close_timeout=options.timeout_for(metric),
            retry_policy=options.retry,
            cancellation_type=options.cancellation,
            summary=summary or (f"{self.label}: measure {metric.name}" if self.label else f"measure {metric.name}"),
        )
        return await (self.control.interruptible(step) if self.legacy else step)

    async def _metric(self, metric: Metric, analysis: Analysis, background: bool) -> MetricVerdict:
        count = measurement_count(metric, background=background)
        taken: list[Measurement] = []
        if metric.initial_delay > timedelta(0):
            await self._sleep(metric.initial_delay)
        while True:
            taken.append(await self.measure(metric, args=analysis.args))
            self._record(taken[-1])
            verdict = judge_metric(metric, taken, count)
            if verdict.verdict.done:
                return verdict
            await self._sleep(metric.interval)

    async def _sleep(self, duration: timedelta) -> Any:
        if self.legacy:
            return await self.control.wait(duration, promotable=False)
        return await workflow.sleep(duration)

    def _record(self, measurement: Measurement) -> None:
        status = self.control.status
        exposure = self.exposure() if self.exposure is not None else status.actual_weights.get("canary")
        measurement = measurement.model_copy(update={"weight": exposure})
        status.measurements = keep_recent(status.measurements, measurement, self.limit)
        status.details["last_measurement"] = f"{measurement.verdict}: {measurement.message}"
        self.control._publish_details()

    def _publish(self, verdict: MetricVerdict | None) -> MetricVerdict | None:
        if verdict is not None:
            self.control.status.details["last_verdict"] = f"{verdict.verdict.value}: {verdict.message}"
            self.control._publish_details()
        return verdict


async def gate(
    control: DeploymentControl, verdict: MetricVerdict | None, *, on_inconclusive: OnInconclusive, where: str = ""
) -> None:
    """Acts on a step's analysis: goes on, waits for promote (abort raises `Aborted`), or raises AnalysisFailed."""
    prefix = f"{where}: " if where else ""
    decision = decide(verdict, on_inconclusive)
    if decision is Decision.GO_ON:
        control.event(f"{prefix}analysis passed: {verdict.message if verdict else 'no metrics'}", kind="decision")
        return
    assert verdict is not None
    if decision is Decision.WAIT:
        control.event(f"{prefix}analysis inconclusive: {verdict.message}", kind="warning")
        await control.wait_for_promotion(
            None, message=f"{prefix}analysis inconclusive ({verdict.message}): promote to go on, or abort"
        )
        return
    raise AnalysisFailed(failure_message(verdict, where))
