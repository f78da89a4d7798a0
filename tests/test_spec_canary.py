"""How canary `stages` expand into steps: measurements spread over the stage, the first after an initial delay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from deployflow.spec.analysis import Metric
from deployflow.spec.canary import AnalysisStep, CanaryRequest, PauseStep, SetWeightStep

PROMETHEUS = {"prometheus_address": "http://prometheus.monitoring:9090"}


def canary(stages: list[dict[str, Any]], **error_rate: Any) -> CanaryRequest:
    return CanaryRequest.model_validate({
        "target": {"cluster": "sim", "namespace": "shop", "app": "web"},
        "workload": {"image": "registry.example.com/web:v2"},
        "stages": stages,
        "error_rate": {**PROMETHEUS, **error_rate},
    })


def measured_at(metric: Metric) -> list[float]:
    """Seconds after the weight is set at which the stage's measurements are taken."""
    assert metric.count is not None
    first, every = metric.initial_delay.total_seconds(), metric.interval.total_seconds()
    return [first + k * every for k in range(metric.count)]


def stage_metric(request: CanaryRequest, index: int = 0, **kwargs: Any) -> Metric:
    steps = request.expanded_steps(**kwargs)
    weight, analysis = steps[2 * index], steps[2 * index + 1]
    assert isinstance(weight, SetWeightStep) and weight.set_weight == request.stages[index].weight
    assert isinstance(analysis, AnalysisStep) and len(analysis.analysis.metrics) == 1
    return analysis.analysis.metrics[0]


def test_a_stage_measures_from_one_interval_after_the_weight_change_to_its_end() -> None:
    request = canary([{"weight": 5, "duration": "5m", "max_error_rate": 0.02},
                      {"weight": 50, "duration": "90s", "max_error_rate": 0.01}])
    assert len(request.expanded_steps()) == 4
    first = stage_metric(request, 0)
    # Never at the moment the weight changes: Prometheus has not scraped the canary pods at that weight yet.
    assert measured_at(first) == [30, 60, 90, 120, 150, 180, 210, 240, 270, 300]
    assert first.failure_condition == "result > 0.02" and first.name == "error_rate"
    assert measured_at(stage_metric(request, 1)) == [30, 60, 90]


@pytest.mark.parametrize(("error_rate", "duration", "expected"), [
    ({"initial_delay": "1m"}, "5m", [60, 90, 120, 150, 180, 210, 240, 270, 300]),
    ({"initial_delay": "1m", "interval": "1m"}, "5m", [60, 120, 180, 240, 300]),
    # A duration off the measurement grid is rounded up: the weight is held at least as long as asked.
    ({"initial_delay": "45s"}, "90s", [45, 75, 105]),
    # A stage shorter than the delay still waits for it, and measures once.
    ({}, "0s", [30]),
    ({"initial_delay": "2m"}, "1m", [120]),
    # Below the default query's 30 s rate window, the interval alone would measure an unfilled window.
    ({"interval": "10s"}, "1m", [30, 40, 50, 60]),
    # An explicit delay is taken as given, zero included.
    ({"initial_delay": "0s"}, "1m", [0, 30, 60]),
])
def test_initial_delay_and_interval_place_the_measurements(
    error_rate: dict[str, Any], duration: str, expected: list[float]
) -> None:
    request = canary([{"weight": 25, "duration": duration, "max_error_rate": 0.02}], **error_rate)
    assert measured_at(stage_metric(request)) == expected


def test_runs_started_before_the_delay_keep_their_expansion() -> None:
    """What replaying workflows get: ceil(duration / interval) measurements from the moment the weight is set."""
    request = canary([{"weight": 5, "duration": "5m", "max_error_rate": 0.02}])
    legacy = stage_metric(request, delayed_measurements=False)
    assert legacy.initial_delay == timedelta(0)
    assert measured_at(legacy) == [0, 30, 60, 90, 120, 150, 180, 210, 240, 270]


def test_a_stage_without_an_error_rate_limit_is_a_pause() -> None:
    request = canary([{"weight": 10, "duration": "2m"}, {"weight": 20}])
    steps = request.expanded_steps()
    assert [type(s) for s in steps] == [SetWeightStep, PauseStep, SetWeightStep]
    assert isinstance(steps[1], PauseStep) and steps[1].pause.duration == timedelta(minutes=2)
