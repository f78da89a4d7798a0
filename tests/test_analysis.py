"""Analysis: the condition language, Argo Rollouts' truth table, limits, "no data", provider errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from activities.analysis import MeasureInput, measure
from deployflow.analysis.conditions import ConditionError, EvaluationError, compile_condition
from deployflow.analysis.judge import Verdict, judge_measurement, judge_metric, judge_run
from deployflow.analysis.providers.prometheus import parse_result
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


# --- providers ----------------------------------------------------------------------------------------------


def test_prometheus_result_parsing() -> None:
    assert parse_result({"resultType": "vector", "result": []}) is None
    assert parse_result({"resultType": "vector", "result": [{"metric": {}, "value": [0, "NaN"]}]}) is None
    assert parse_result({"resultType": "vector", "result": [{"metric": {}, "value": [0, "0.25"]}]}) == 0.25
    two = [{"metric": {}, "value": [0, "1"]}, {"metric": {}, "value": [0, "2"]}]
    assert parse_result({"resultType": "vector", "result": two}) == [1.0, 2.0]
    assert parse_result({"resultType": "scalar", "result": [0, "3"]}) == 3.0


class _Answers:
    """What the tiny HTTP server answers, per path: (status, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []


@pytest.fixture(scope="module")
def web_server() -> Iterator[tuple[str, _Answers]]:
    answers = _Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            answers.seen.append((self.path, dict(self.headers)))
            status, body = answers.routes.get(self.path.split("?")[0], (404, {"error": "not found"}))
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers
    server.shutdown()


def web_metric(base: str, path: str, **fields: Any) -> Metric:
    return Metric.model_validate(
        {"name": "error_rate", "provider": {"kind": "web", "url": f"{base}{path}", "json_path": "$.data.rate"},
         "failure_condition": "result > 0.02", **fields}
    )


async def test_web_provider_measures_and_judges(web_server: tuple[str, _Answers]) -> None:
    base, answers = web_server
    answers.routes["/rates/v2"] = (200, {"data": {"rate": 0.183}})
    answers.routes["/rates/v1"] = (200, {"data": {"rate": 0.001}})
    m = web_metric(base, "/rates/{{ args.version }}")
    judged = await measure(MeasureInput(target=TARGET, metric=m, version="v2"))
    assert (judged.verdict, judged.value, judged.message) == ("Failed", 0.183, "error_rate 0.183 > 0.02")
    assert (await measure(MeasureInput(target=TARGET, metric=m, version="v1"))).verdict == "Successful"


async def test_web_provider_baseline_is_the_stable_version(web_server: tuple[str, _Answers]) -> None:
    base, answers = web_server
    answers.routes["/b/v2"] = (200, {"data": {"rate": 0.03}})
    answers.routes["/b/v1"] = (200, {"data": {"rate": 0.02}})
    m = web_metric(base, "/b/{{ args.version }}", failure_condition="result > max(2 * baseline, 0.01)",
                   baseline=True)
    judged = await measure(MeasureInput(target=TARGET, metric=m, version="v2", baseline_version="v1"))
    assert judged.verdict == "Successful"
    answers.routes["/b/v1"] = (200, {"data": {"rate": 0.01}})
    judged = await measure(MeasureInput(target=TARGET, metric=m, version="v2", baseline_version="v1"))
    assert judged.verdict == "Failed"
    # A pre-deployment baseline passed in is used instead of measuring.
    judged = await measure(MeasureInput(target=TARGET, metric=m, version="v2", baseline_value=0.02))
    assert judged.verdict == "Successful"


async def test_web_provider_no_data_and_errors(web_server: tuple[str, _Answers], monkeypatch: Any) -> None:
    base, answers = web_server
    answers.routes["/empty"] = (200, {"data": {}})
    answers.routes["/null"] = (200, {"data": {"rate": None}})
    answers.routes["/broken"] = (500, {"error": "down"})
    answers.routes["/text"] = (200, "not json")
    answers.routes["/word"] = (200, {"data": {"rate": "high"}})
    for path, verdict, words in [
        ("/empty", "Inconclusive", "no data"),
        ("/null", "Inconclusive", "no data"),
        ("/broken", "Error", "answered 500"),
        ("/text", "Error", "did not answer JSON"),
        ("/word", "Error", "not a number"),
        ("/{{ args.nope }}", "Error", "unknown template argument `nope`"),
    ]:
        judged = await measure(MeasureInput(target=TARGET, metric=web_metric(base, path), version="v2"))
        assert judged.verdict == verdict, path
        assert words in judged.message, judged.message
    unreachable = Metric.model_validate(
        {"name": "error_rate", "provider": {"kind": "web", "url": "http://127.0.0.1:9/x", "timeout_seconds": 1}}
    )
    judged = await measure(MeasureInput(target=TARGET, metric=unreachable, version="v2"))
    assert judged.verdict == "Error" and "failed" in judged.message


async def test_headers_come_from_the_environment_never_the_spec(
    web_server: tuple[str, _Answers], monkeypatch: Any
) -> None:
    base, answers = web_server
    answers.routes["/auth"] = (200, {"data": {"rate": 0.0}})
    m = Metric.model_validate(
        {"name": "error_rate",
         "provider": {"kind": "web", "url": f"{base}/auth", "json_path": "$.data.rate",
                      "headers": [{"name": "Authorization", "value_from": {"env": "DEPLOYFLOW_CRED_TEST_TOKEN"}}]}}
    )
    monkeypatch.delenv("DEPLOYFLOW_CRED_TEST_TOKEN", raising=False)
    judged = await measure(MeasureInput(target=TARGET, metric=m, version="v2"))
    assert judged.verdict == "Error" and "DEPLOYFLOW_CRED_TEST_TOKEN is not set" in judged.message
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_TOKEN", "Bearer abc")
    judged = await measure(MeasureInput(target=TARGET, metric=m, version="v2"))
    assert judged.verdict == "Successful"
    assert answers.seen[-1][1].get("Authorization") == "Bearer abc"
    assert "abc" not in m.model_dump_json()
    with pytest.raises(ValidationError):
        Metric.model_validate(
            {"name": "x", "provider": {"kind": "web", "url": "http://x",
                                       "headers": [{"name": "A", "value": "secret"}]}}
        )


async def test_prometheus_provider_errors_are_error_measurements(web_server: tuple[str, _Answers]) -> None:
    base, answers = web_server
    answers.routes["/api/v1/query"] = (400, {"status": "error", "error": "parse error at char 5"})
    m = Metric.model_validate(
        {"name": "error_rate", "provider": {"kind": "prometheus", "address": base, "query": "rate(x[1m]"},
         "failure_condition": "result > 0.02"}
    )
    judged = await measure(MeasureInput(target=TARGET, metric=m, version="v2"))
    assert judged.verdict == "Error" and "parse error" in judged.message


# --- the kubernetes provider, against the simulator -------------------------------------------------------------


async def test_kubernetes_provider_reads_the_measured_versions_pods(namespace: str) -> None:
    import asyncio

    from temporalio.testing import ActivityEnvironment

    from activities.traffic import TrackRequest, deploy_track
    from deployflow.spec.common import Workload

    target = Target(cluster="sim", namespace=namespace, app="web")
    env = ActivityEnvironment()
    await env.run(deploy_track, TrackRequest(target=target, track="stable", workload=Workload(image="web:v1"),
                                             replicas=3, timeout_seconds=30))
    crashing = Workload(image="web:v2", pod_annotations={"sim.deployflow.io/crash-loop": "true"})
    await env.run(deploy_track, TrackRequest(target=target, track="canary", workload=crashing, replicas=2,
                                             wait=False))

    def pods(measure_what: str, **fields: Any) -> Metric:
        return Metric.model_validate({"name": measure_what, "provider": {"kind": "kubernetes",
                                                                          "measure": measure_what}, **fields})

    ready = pods("ready-ratio", success_condition="result == 1")
    assert (await measure(MeasureInput(target=target, metric=ready, version="v1"))).verdict == "Successful"
    for _ in range(200):  # until the controller has created the canary's pods
        judged = await measure(MeasureInput(target=target, metric=ready, version="v2"))
        if judged.verdict != "Inconclusive":
            break
        await asyncio.sleep(0.05)
    assert judged.verdict == "Failed" and judged.value == 0.0, judged

    restarts = pods("restarts", failure_condition="result > 0")
    for _ in range(200):  # until the crash loop has restarted a container at least once
        judged = await measure(MeasureInput(target=target, metric=restarts, version="v2"))
        if judged.verdict != "Successful":
            break
        await asyncio.sleep(0.05)
    assert judged.verdict == "Failed" and judged.value is not None and judged.value >= 1, judged
    assert (await measure(MeasureInput(target=target, metric=restarts, version="v1"))).verdict == "Successful"
    nobody = await measure(MeasureInput(target=target, metric=restarts, version="v9"))
    assert nobody.verdict == "Inconclusive" and "no data" in nobody.message


async def test_header_from_a_secret(web_server: tuple[str, _Answers], namespace: str) -> None:
    import base64

    from kubernetes import client

    from deployflow.kube import api_client

    base, answers = web_server
    answers.routes["/secret-auth"] = (200, {"data": {"rate": 0.0}})
    client.CoreV1Api(api_client("sim")).create_namespaced_secret(namespace, {  # type: ignore[arg-type]
        "metadata": {"name": "metrics-token", "labels": {"deployflow.io/credential": "true"}},
        "data": {"token": base64.b64encode(b"Bearer from-secret").decode()},
    })
    target = Target(cluster="sim", namespace=namespace, app="web")

    def with_key(key: str) -> Metric:
        return Metric.model_validate(
            {"name": "error_rate",
             "provider": {"kind": "web", "url": f"{base}/secret-auth", "json_path": "$.data.rate",
                          "headers": [{"name": "Authorization",
                                       "value_from": {"secret": {"name": "metrics-token", "key": key}}}]}}
        )

    judged = await measure(MeasureInput(target=target, metric=with_key("token"), version="v2"))
    assert judged.verdict == "Successful", judged
    assert answers.seen[-1][1].get("Authorization") == "Bearer from-secret"
    judged = await measure(MeasureInput(target=target, metric=with_key("missing"), version="v2"))
    assert judged.verdict == "Error" and "has no key missing" in judged.message
