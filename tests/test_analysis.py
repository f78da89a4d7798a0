"""Analysis: the condition language, Argo Rollouts' truth table, limits, "no data" (the providers: in
test_analysis_providers.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from deployflow.analysis.conditions import ConditionError, EvaluationError, compile_condition
from deployflow.analysis.judge import Verdict, judge_measurement, judge_metric, judge_run
from deployflow.spec.analysis import Analysis, Metric
from deployflow.spec.common import Target, describe_validation_error

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = Target(cluster="sim", namespace="shop", app="web")


def metric(**fields: Any) -> Metric:
    fields.setdefault("provider", {"kind": "web", "url": "http://127.0.0.1:1/x"})
    return Metric.model_validate({"name": "error_rate", **fields})


# --- the condition language ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "variables", "expected"),
    [
        ("result < 0.02", {"result": 0.01}, True),
        ("result < 0.02", {"result": 0.02}, False),
        ("result[0] >= 0.95", {"result": [0.96, 0.1]}, True),
        ("result <= 2 * baseline", {"result": 0.05, "baseline": 0.02}, False),
        ("result > max(2 * baseline, 0.01)", {"result": 0.015, "baseline": 0.001}, True),
        ("result > max(2 * baseline, 0.01)", {"result": 0.005, "baseline": 0.001}, False),
        ("result > 0.1 and result < 0.5", {"result": 0.3}, True),
        ("result > 0.1 && result < 0.2", {"result": 0.3}, False),
        ("result < 0.1 || result > 0.2", {"result": 0.3}, True),
        ("not (result > 1)", {"result": 0.3}, True),
        ("len(result) == 2 and min(result) > 0", {"result": [1.0, 2.0]}, True),
        ("isNaN(result)", {"result": float("nan")}, True),
        ("0 < result < 1", {"result": 1.5}, False),
        ("result - baseline <= 0.01", {"result": 0.021, "baseline": 0.02}, True),
    ],
)
def test_conditions_evaluate(condition: str, variables: dict[str, Any], expected: bool) -> None:
    assert compile_condition(condition).evaluate(variables) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "__import__('os').system('true')",
        "result.__class__",
        "open('/etc/passwd')",
        "[x for x in result]",
        "lambda: 1",
        "result if True else 0",
        "unknown_name > 1",
        "result > 'a'",
        "result >",
        "",
        "result ** 100000",
    ],
)
def test_conditions_refuse_anything_else_when_read(condition: str) -> None:
    with pytest.raises(ConditionError):
        compile_condition(condition)


def test_condition_that_is_not_boolean_is_an_evaluation_error() -> None:
    with pytest.raises(EvaluationError):
        compile_condition("result + 1").evaluate({"result": 1.0})
    with pytest.raises(EvaluationError):
        compile_condition("result[3] > 1").evaluate({"result": [1.0]})


def test_bad_condition_names_the_field_in_the_spec() -> None:
    with pytest.raises(ValidationError) as err:
        Analysis.model_validate(
            {"metrics": [{"name": "error_rate", "provider": {"kind": "web", "url": "http://x"},
                          "failure_condition": "result >> 2"}]}
        )
    assert err.value.errors()[0]["loc"] == ("metrics", 0, "failure_condition")


def test_baseline_in_a_condition_requires_baseline_measurement() -> None:
    with pytest.raises(ValidationError, match="baseline: true"):
        metric(failure_condition="result > 2 * baseline")


def test_inconclusive_pauses_by_default_and_fail_is_a_choice() -> None:
    plain = {"metrics": [{"name": "error_rate", "provider": {"kind": "web", "url": "http://x"}}]}
    assert Analysis.model_validate(plain).on_inconclusive == "pause"
    assert Analysis.model_validate({**plain, "on_inconclusive": "fail"}).on_inconclusive == "fail"
    with pytest.raises(ValidationError) as err:
        Analysis.model_validate({**plain, "on_inconclusive": "ignore"})
    assert describe_validation_error(err.value).startswith("on_inconclusive: ")
    described = Analysis.model_json_schema()["properties"]["on_inconclusive"]
    assert described["enum"] == ["pause", "fail"] and "promote" in described["description"]


# --- the truth table ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("success", "failure", "value", "expected"),
    [
        (None, None, 0.5, Verdict.SUCCESSFUL),  # neither condition: success
        ("result < 0.02", None, 0.01, Verdict.SUCCESSFUL),
        ("result < 0.02", None, 0.05, Verdict.FAILED),  # only success: fail when false
        (None, "result > 0.02", 0.05, Verdict.FAILED),
        (None, "result > 0.02", 0.01, Verdict.SUCCESSFUL),  # only failure: success when false
        ("result < 0.01", "result > 0.05", 0.005, Verdict.SUCCESSFUL),
        ("result < 0.01", "result > 0.05", 0.08, Verdict.FAILED),
        ("result < 0.01", "result > 0.05", 0.03, Verdict.INCONCLUSIVE),  # both set, neither true
        ("result[5] < 0.01", None, 0.03, Verdict.ERROR),  # evaluation error
    ],
)
def test_truth_table(success: str | None, failure: str | None, value: float, expected: Verdict) -> None:
    m = metric(success_condition=success, failure_condition=failure)
    assert judge_measurement(m, value, time=NOW).verdict == expected


@pytest.mark.parametrize("value", [None, [], float("nan"), [float("nan")]])
def test_no_data_is_inconclusive_never_a_pass_or_fail(value: Any) -> None:
    for m in (metric(failure_condition="result > 0.02"), metric(success_condition="result < 0.02"), metric()):
        judged = judge_measurement(m, value, time=NOW)
        assert judged.verdict == Verdict.INCONCLUSIVE
        assert "no data" in judged.message


def test_provider_error_is_an_error_measurement() -> None:
    judged = judge_measurement(metric(failure_condition="result > 0.02"), None, time=NOW, error="timeout")
    assert judged.verdict == Verdict.ERROR and "timeout" in judged.message


def test_baseline_comparison_with_floor() -> None:
    m = metric(failure_condition="result > max(2 * baseline, 0.01)", baseline=True)
    assert judge_measurement(m, 0.03, time=NOW, baseline=0.02).verdict == Verdict.SUCCESSFUL  # under 2x
    assert judge_measurement(m, 0.05, time=NOW, baseline=0.02).verdict == Verdict.FAILED  # over 2x
    assert judge_measurement(m, 0.005, time=NOW, baseline=0.0).verdict == Verdict.SUCCESSFUL  # under the floor
    failed = judge_measurement(m, 0.02, time=NOW, baseline=0.0)
    assert failed.verdict == Verdict.FAILED
    assert failed.message == "error_rate 0.02 > max(2 * baseline(0), 0.01)"
    assert judge_measurement(m, 0.02, time=NOW, baseline=None).verdict == Verdict.INCONCLUSIVE


def test_failure_message_quotes_value_and_condition() -> None:
    judged = judge_measurement(metric(failure_condition="result > 0.02"), 0.183, time=NOW)
    assert judged.message == "error_rate 0.183 > 0.02"
    assert judged.value == 0.183 and judged.condition == "result > 0.02"


# --- limits and the run's verdict ---------------------------------------------------------------------------


def run(m: Metric, values: list[Any], count: int | None) -> Verdict:
    measurements = [
        judge_measurement(m, None if v == "error" else v, time=NOW, error="boom" if v == "error" else None)
        for v in values
    ]
    return judge_metric(m, measurements, count).verdict


def test_failure_limit() -> None:
    m0 = metric(failure_condition="result > 0.02")
    assert run(m0, [0.01, 0.05], 3) == Verdict.FAILED  # default limit 0: the first failure decides
    m2 = metric(failure_condition="result > 0.02", failure_limit=2)
    assert run(m2, [0.05, 0.05], 5) == Verdict.RUNNING
    assert run(m2, [0.05, 0.01, 0.05], 3) == Verdict.SUCCESSFUL  # two failures tolerated, count reached
    assert run(m2, [0.05, 0.05, 0.05], 5) == Verdict.FAILED
    unlimited = metric(failure_condition="result > 0.02", failure_limit=-1)
    assert run(unlimited, [0.05] * 6, 6) == Verdict.SUCCESSFUL


def test_inconclusive_limit() -> None:
    m = metric(success_condition="result < 0.01", failure_condition="result > 0.05", inconclusive_limit=1)
    assert run(m, [0.03], 3) == Verdict.RUNNING
    assert run(m, [0.03, 0.001, 0.03], 3) == Verdict.INCONCLUSIVE
    assert run(metric(failure_condition="result > 1"), [None], 3) == Verdict.INCONCLUSIVE  # default limit 0


def test_consecutive_error_limit() -> None:
    m = metric(failure_condition="result > 0.02")  # default limit 4
    assert run(m, ["error"] * 4, 10) == Verdict.RUNNING
    assert run(m, ["error"] * 5, 10) == Verdict.ERROR
    assert run(m, ["error"] * 4 + [0.01] + ["error"] * 4, 10) == Verdict.RUNNING  # a success resets the streak
    strict = metric(failure_condition="result > 0.02", consecutive_error_limit=0)
    assert run(strict, ["error"], 10) == Verdict.ERROR


def test_a_window_with_measurements_that_could_not_be_taken_never_passes() -> None:
    m = metric(failure_condition="result > 0.02")  # errors within the consecutive limit (4)
    assert run(m, ["error", "error"], 2) == Verdict.INCONCLUSIVE  # a provider down for the whole window
    assert run(m, [0.01, "error", 0.01], 3) == Verdict.INCONCLUSIVE  # one gap is still missing data
    assert run(m, [0.01, 0.01, 0.01], 3) == Verdict.SUCCESSFUL
    measurements = [judge_measurement(m, None, time=NOW, error="connection refused")] * 2
    assert judge_metric(m, measurements, 2).message.endswith("2 of 2 measurements could not be taken")


def test_count_and_unbounded_runs() -> None:
    m = metric(failure_condition="result > 0.02")
    assert run(m, [0.01, 0.01], 3) == Verdict.RUNNING
    assert run(m, [0.01, 0.01, 0.01], 3) == Verdict.SUCCESSFUL
    assert run(m, [0.01] * 50, None) == Verdict.RUNNING  # background analysis runs until stopped


def test_failed_metric_summary_counts_measurements() -> None:
    m = metric(failure_condition="result > 0.02", failure_limit=2)
    measurements = [judge_measurement(m, v, time=NOW) for v in (0.15, 0.17, 0.183)]
    verdict = judge_metric(m, measurements, 3)
    assert verdict.verdict == Verdict.FAILED
    assert verdict.message == "error_rate 0.183 > 0.02, 3 of 3 measurements failed"


def test_worst_metric_decides() -> None:
    good = metric(failure_condition="result > 0.02")
    bad = metric(name="latency", failure_condition="result > 0.5")
    nodata = metric(name="saturation", failure_condition="result > 0.9")
    verdicts = [
        judge_metric(good, [judge_measurement(good, 0.01, time=NOW)], 1),
        judge_metric(nodata, [judge_measurement(nodata, None, time=NOW)], 1),
    ]
    run_verdict = judge_run(verdicts)
    assert run_verdict is not None and run_verdict.verdict == Verdict.INCONCLUSIVE
    verdicts.append(judge_metric(bad, [judge_measurement(bad, 0.9, time=NOW)], 1))
    run_verdict = judge_run(verdicts)
    assert run_verdict is not None and run_verdict.verdict == Verdict.FAILED and run_verdict.metric == "latency"
    assert judge_run([]) is None
