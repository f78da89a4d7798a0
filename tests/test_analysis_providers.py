"""Analysis providers: Prometheus answers parsed, a web endpoint measured and judged (baseline, no data, errors,
headers from the environment or a Secret), and the kubernetes provider against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from activities.analysis import MeasureInput, measure
from deployflow.analysis.providers.prometheus import parse_result
from deployflow.spec.analysis import Metric
from deployflow.spec.common import Target
from tests.http_support import json_server

TARGET = Target(cluster="sim", namespace="shop", app="web")


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

    def answer(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        answers.seen.append((path, headers))
        return answers.routes.get(path.split("?")[0], (404, {"error": "not found"}))

    with json_server(answer) as base:
        yield base, answers


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
