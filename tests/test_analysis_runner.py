"""The analysis runner every strategy uses: what a verdict means for the release, the bounded measurement history,
and, in a small workflow with a scripted `measure`, how metrics are paced and when a run stops."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.analysis import MeasureInput
from deployflow.analysis.judge import MetricVerdict, Verdict, judge_measurement
from deployflow.spec.analysis import Analysis
from deployflow.spec.common import Target
from deployflow.status import DeploymentStatus, Measurement
from workflows.analysis import (
    MAX_MEASUREMENTS,
    AnalysisRunner,
    Decision,
    decide,
    failure_message,
    keep_recent,
    measurement_count,
)
from workflows.control import DeploymentControl

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = Target(cluster="sim", namespace="shop", app="web")


def verdict(kind: Verdict, message: str = "error_rate 0.2 > 0.05") -> MetricVerdict:
    return MetricVerdict("error_rate", kind, message, taken=1, failed=0, inconclusive=0, errors_in_a_row=0)


def numbered(n: int) -> Measurement:
    return Measurement(time=T0 + timedelta(seconds=n), metric="m", value=float(n), verdict="Successful")


# --- decisions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "pause", "fail"),
    [
        (Verdict.SUCCESSFUL, Decision.GO_ON, Decision.GO_ON),
        (Verdict.RUNNING, Decision.GO_ON, Decision.GO_ON),
        (Verdict.INCONCLUSIVE, Decision.WAIT, Decision.ROLL_BACK),
        (Verdict.ERROR, Decision.ROLL_BACK, Decision.ROLL_BACK),
        (Verdict.FAILED, Decision.ROLL_BACK, Decision.ROLL_BACK),
    ],
)
def test_a_verdict_means_the_same_for_every_strategy(kind: Verdict, pause: Decision, fail: Decision) -> None:
    assert decide(verdict(kind), "pause") is pause
    assert decide(verdict(kind), "fail") is fail


def test_an_analysis_without_metrics_goes_on() -> None:
    assert decide(None, "pause") is Decision.GO_ON
    assert decide(None, "fail") is Decision.GO_ON


def test_failure_message_says_where_only_when_asked() -> None:
    failed = verdict(Verdict.FAILED)
    assert failure_message(failed) == "error_rate 0.2 > 0.05"
    assert failure_message(failed, "batch 2/4") == "batch 2/4: analysis failed: error_rate 0.2 > 0.05"
    assert failure_message(verdict(Verdict.INCONCLUSIVE, "no data"), "batch 1/2") == (
        "batch 1/2: analysis inconclusive: no data"
    )


def test_a_step_measures_once_by_default_and_background_until_stopped() -> None:
    metric = Analysis.model_validate(
        {"metrics": [{"name": "m", "provider": {"kind": "kubernetes", "measure": "restarts"}}]}
    ).metrics[0]
    assert measurement_count(metric, background=False) == 1
    assert measurement_count(metric, background=True) is None
    counted = metric.model_copy(update={"count": 7})
    assert measurement_count(counted, background=False) == measurement_count(counted, background=True) == 7


# --- the bounded history --------------------------------------------------------------------------------------


@pytest.mark.parametrize("existing", [0, 1, 4, 5, 6, 40])
@pytest.mark.parametrize("limit", [1, 5, 30])
def test_history_keeps_the_newest_in_order_and_never_exceeds_the_limit(existing: int, limit: int) -> None:
    history = [numbered(n) for n in range(existing)]
    kept = keep_recent(history, numbered(existing), limit)
    assert [m.value for m in kept] == [float(n) for n in range(existing + 1)][-limit:]
    assert len(history) == existing  # the old history is not changed in place


def test_history_bound_is_shared_and_refuses_nonsense() -> None:
    full = [numbered(n) for n in range(MAX_MEASUREMENTS)]
    kept = keep_recent(full, numbered(MAX_MEASUREMENTS))
    assert len(kept) == MAX_MEASUREMENTS and kept[0].value == 1.0 and kept[-1].value == float(MAX_MEASUREMENTS)
    with pytest.raises(ValueError, match="at least 1"):
        keep_recent([], numbered(0), 0)


# --- the runner in a workflow ---------------------------------------------------------------------------------

# What the scripted provider answers, per metric name, one value per measurement (the last one repeats); and
# every call, in order, with the time the server scheduled it.
SCRIPT: dict[str, list[float | None]] = {}
CALLS: list[tuple[str, datetime]] = []


@activity.defn(name="measure")
async def scripted_measure(request: MeasureInput) -> Measurement:
    name = request.metric.name
    taken = sum(1 for called, _ in CALLS if called == name)
    CALLS.append((name, activity.info().scheduled_time))
    answers = SCRIPT[name]
    return judge_measurement(request.metric, answers[min(taken, len(answers) - 1)], time=datetime.now(UTC))


class ProbeInput(BaseModel):
    analysis: Analysis
    legacy: bool = False
    background: bool = False
    limit: int = MAX_MEASUREMENTS


@workflow.defn(name="AnalysisProbe")
class AnalysisProbe(DeploymentControl):
    @workflow.init
    def __init__(self, request: ProbeInput) -> None:
        self._init_control(strategy="probe", target=TARGET, version="v2")

    @workflow.run
    async def run(self, request: ProbeInput) -> DeploymentStatus:
        runner = AnalysisRunner(self, TARGET, "v2", legacy=request.legacy, limit=request.limit)
        result = await runner.run(request.analysis, background=request.background)
        self._status.message = result.verdict.value if result else "none"
        return self._status


@pytest.fixture
async def probe(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[str]:
    SCRIPT.clear()
    CALLS.clear()
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    # Unsandboxed: the probe lives in this test module, whose imports the sandbox would refuse.
    async with Worker(
        time_skipping_env.client, task_queue=queue, workflows=[AnalysisProbe], activities=[scripted_measure],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield queue


async def run_probe(env: WorkflowEnvironment, queue: str, metrics: list[dict[str, Any]], **fields: Any) -> Any:
    for m in metrics:
        m.setdefault("provider", {"kind": "kubernetes", "measure": "restarts"})
    request = ProbeInput(analysis=Analysis.model_validate({"metrics": metrics}), **fields)
    handle: WorkflowHandle[Any, DeploymentStatus] = await env.client.start_workflow(
        AnalysisProbe.run, request, id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue
    )
    return await handle.result(), handle


def seconds_after_start(name: str) -> list[int]:
    """When the server scheduled each measurement of `name`, on its skipped clock, in whole seconds."""
    start = min(when for _, when in CALLS)
    return [round((when - start).total_seconds()) for called, when in CALLS if called == name]


async def started_timers(handle: WorkflowHandle[Any, Any]) -> list[float]:
    timers = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timers.append(event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds())
    return sorted(timers)


async def test_each_metric_is_measured_on_its_own_interval(time_skipping_env: WorkflowEnvironment, probe: str) -> None:
    SCRIPT.update(fast=[0.0], slow=[0.0])
    metrics = [
        {"name": "fast", "interval": "10s", "count": 3, "success_condition": "result < 1"},
        {"name": "slow", "interval": "25s", "count": 2, "initial_delay": "5s", "success_condition": "result < 1"},
    ]
    status, handle = await run_probe(time_skipping_env, probe, metrics)
    assert status.message == "Successful"
    assert [m.metric for m in status.measurements].count("fast") == 3
    assert [m.metric for m in status.measurements].count("slow") == 2
    # Side by side: the slow metric's delay and interval run while the fast one measures.
    assert await started_timers(handle) == [5, 10, 10, 25]
    assert seconds_after_start("fast") == [0, 10, 20]
    assert seconds_after_start("slow") == [5, 30]
    assert status.details["last_verdict"].startswith("Successful: ")


async def test_a_bad_metric_stops_the_others_at_once(time_skipping_env: WorkflowEnvironment, probe: str) -> None:
    SCRIPT.update(bad=[0.0, 0.0, 5.0], slow=[0.0])
    metrics = [
        {"name": "bad", "interval": "10s", "count": 5, "failure_condition": "result > 1"},
        {"name": "slow", "interval": "1h", "count": 3, "success_condition": "result < 1"},
    ]
    status, _ = await run_probe(time_skipping_env, probe, metrics)
    assert status.message == "Failed"
    assert [name for name, _ in CALLS].count("bad") == 3
    assert [name for name, _ in CALLS].count("slow") == 1  # its next measurement was an hour away
    assert status.details["last_verdict"].startswith("Failed: bad 5 > 1")


async def test_measurements_in_the_status_never_exceed_the_bound(
    time_skipping_env: WorkflowEnvironment, probe: str
) -> None:
    SCRIPT.update(m=[float(n) for n in range(12)])
    metrics = [{"name": "m", "interval": "1s", "count": 12, "success_condition": "result < 100"}]
    status, _ = await run_probe(time_skipping_env, probe, metrics, limit=5)
    assert len(CALLS) == 12
    assert [m.value for m in status.measurements] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert status.details["last_measurement"] == "Successful: m 11: ok"


async def test_background_analysis_without_count_runs_until_a_metric_is_judged_bad(
    time_skipping_env: WorkflowEnvironment, probe: str
) -> None:
    SCRIPT.update(m=[0.0, 0.0, 0.0, None])
    metrics = [{"name": "m", "interval": "1m", "success_condition": "result < 1"}]
    status, _ = await run_probe(time_skipping_env, probe, metrics, background=True)
    assert status.message == "Inconclusive"
    assert [m.verdict for m in status.measurements] == ["Successful"] * 3 + ["Inconclusive"]


async def test_legacy_runs_measure_one_metric_after_another(
    time_skipping_env: WorkflowEnvironment, probe: str
) -> None:
    """The shape rolling releases recorded before the runner: replays of those runs depend on it."""
    SCRIPT.update(first=[0.0], second=[0.0])
    metrics = [
        {"name": "first", "interval": "10s", "count": 2, "success_condition": "result < 1"},
        {"name": "second", "interval": "10s", "count": 2, "success_condition": "result < 1"},
    ]
    status, _ = await run_probe(time_skipping_env, probe, metrics, legacy=True)
    assert status.message == "Successful"
    assert [name for name, _ in CALLS] == ["first", "first", "second", "second"]
    assert seconds_after_start("second") == [10, 20]
