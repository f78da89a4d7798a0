"""The one HTTP probe engine: Service-proxy paths that cannot leave the proxy, expectations, attempts, results."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.hooks import HttpHookInput, run_http_hook
from activities.smoke import SmokeReport, SmokeTestsInput, run_smoke_tests
from deployflow import kube
from deployflow.probes.engine import Expect, Probe, ProbeRefused, ProbeResult, ServiceEndpoint, run_probe
from deployflow.probes.proxy import PATH_RULE, check_path, check_port, service_proxy_path
from deployflow.security.outbound import ALLOWED_HOSTS_SETTING
from deployflow.security.redact import Redactor
from deployflow.sim.server import Simulator
from deployflow.spec.common import SmokeTest, Target
from deployflow.spec.hooks import HookContext, HookPoint, Hooks, HttpHook
from tests.rolling_support import CLUSTER, create_deployment, wait_ready
from tests.security_support import Server, serve

SECRET_VALUE = "s3cr3t-db-password-do-not-leak"
TRAVERSALS = [
    "/../../secrets/db",
    "/healthz/../../../../secrets/db",
    "/%2e%2e/%2e%2e/secrets/db",
    "/%2E%2E%2F%2E%2E%2Fsecrets%2Fdb",
    "/%252e%252e/%252e%252e/secrets/db",
    "/..%5c..%5csecrets",
    "/..\\..\\secrets",
    "//kubernetes.default/api/v1/secrets",
    "http://10.0.0.1/api/v1/namespaces/x/secrets",
    "/./healthz",
]


@pytest.fixture
def server() -> Iterator[Server]:
    with serve() as s:
        yield s


def no_pause(_: float) -> None:
    pass


def with_secret(namespace: str) -> None:
    kube.create(CLUSTER, kube.core_path(namespace, "secrets"), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": namespace},
        "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
    })


# --- paths and ports ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_leaving_the_proxy_are_refused_with_the_rule(path: str) -> None:
    with pytest.raises(ValueError, match="must stay under the Service's proxy prefix"):
        service_proxy_path("shop", "web", 80, path)


def test_ordinary_paths_are_kept_and_normalised() -> None:
    assert service_proxy_path("shop", "web", 80, "/healthz") == "/api/v1/namespaces/shop/services/web:80/proxy/healthz"
    assert service_proxy_path("shop", "web", "http", "/") == "/api/v1/namespaces/shop/services/web:http/proxy/"
    assert service_proxy_path("shop", "web", None, "/a") == "/api/v1/namespaces/shop/services/web/proxy/a"
    assert check_path("/a//b/c.txt?next=../x") == "/a/b/c.txt?next=../x"  # the query is not routed on
    assert check_path("/v1/items%20list") == "/v1/items%20list"


@pytest.mark.parametrize("port", [0, 65536, -1, "HTTP", "http_x", "a" * 16, "8080/x", "1-", "80:81"])
def test_bad_ports_are_refused(port: int | str) -> None:
    with pytest.raises(ValueError, match="port"):
        check_port(port)


def test_good_ports_are_numbers_or_names() -> None:
    assert [check_port(p) for p in (80, "8080", "http", "metrics-1", None)] == [80, 8080, "http", "metrics-1", None]


def test_http_hook_spec_refuses_traversal_and_bad_ports_naming_the_field() -> None:
    for path in ("/../../secrets/db", "/%2e%2e/secrets"):
        with pytest.raises(ValidationError) as err:
            Hooks.model_validate({"pre_promote": [{"kind": "http", "name": "s", "service": "web", "path": path}]})
        assert "pre_promote.0.http.path" in str(err.value) and PATH_RULE in str(err.value)
    with pytest.raises(ValidationError, match="pre_promote.0.http.port"):
        Hooks.model_validate({"pre_promote": [{"kind": "http", "name": "s", "service": "web", "port": "x/../y"}]})


# --- traversal attempts at run time fail closed ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/../../secrets/db", "/%2e%2e/%2e%2e/secrets/db"])
def test_smoke_test_traversal_fails_closed(namespace: str, path: str) -> None:
    with_secret(namespace)
    # The spec refuses such a path when it is read; the activity refuses it again, for a spec that reached the worker
    # without being read through the model (model_construct skips validators).
    with pytest.raises(ValueError, match="proxy prefix"):
        SmokeTest(path=path)
    request = SmokeTestsInput(target=Target(cluster=CLUSTER, namespace=namespace, app="web"), service="web",
                              tests=[SmokeTest.model_construct(path=path, attempts=1)])
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(run_smoke_tests, request)
    assert err.value.type == "InvalidSpec" and err.value.non_retryable
    assert PATH_RULE in err.value.message
    assert SECRET_VALUE not in err.value.message and base64.b64encode(SECRET_VALUE.encode()).decode() not in str(
        err.value
    )


async def test_http_hook_traversal_that_skipped_validation_fails_closed(namespace: str) -> None:
    with_secret(namespace)
    # As if the spec reached the worker without being read through the model (model_construct skips validators).
    hook = HttpHook.model_construct(name="smoke", service="web", path="/../../secrets/db", requests=1)
    context = HookContext(point=HookPoint.PRE_PROMOTE, workflow_id="w", run_id="r")
    request = HttpHookInput(target=Target(cluster=CLUSTER, namespace=namespace, app="web"), hook=hook,
                            context=context)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(run_http_hook, request)
    assert err.value.type == "HookMisconfigured" and PATH_RULE in err.value.message
    assert SECRET_VALUE not in err.value.message


# --- the engine through the Service proxy -----------------------------------------------------------------------


async def test_smoke_tests_and_hooks_reach_a_service_through_the_same_engine(
    sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=1)
    await wait_ready(sim, namespace, 1)
    target = Target(cluster=CLUSTER, namespace=namespace, app="web")
    report = ActivityEnvironment().run(
        run_smoke_tests, SmokeTestsInput(target=target, service="web", tests=[SmokeTest(path="/healthz")])
    )
    assert report.passed and report.results[0].attempts == 1 and report.results[0].status == 200
    assert report.results[0].message == "GET /healthz: 200 as expected"
    context = HookContext(point=HookPoint.PRE_PROMOTE, workflow_id="w", run_id="r")
    hook = HttpHook(name="smoke", service="web", path="/healthz", requests=2)
    result = await ActivityEnvironment().run(run_http_hook, HttpHookInput(target=target, hook=hook, context=context))
    assert result.summary == f"service {namespace}/web/healthz: 2/2 requests passed"


def test_a_missing_service_is_a_failed_probe_not_a_leak(namespace: str) -> None:
    probe = Probe(name="GET /", endpoint=ServiceEndpoint(CLUSTER, namespace, "nowhere", 80), requests=2)
    result = run_probe(probe, sleep=no_pause)
    assert not result.passed and result.attempts == 2 and result.status == 404
    assert result.message.startswith("smoke test GET / expected 2xx, got 404") and "(2 of 2 attempts)" in result.message


# --- expectations, attempts and messages, against a URL ----------------------------------------------------------


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1")


def scripted(server: Server, path: str, answers: list[tuple[int, bytes]]) -> None:
    script = iter(answers)
    server.routes[path] = lambda _p, _h: (lambda a: (a[0], {}, a[1]))(next(script))


@pytest.mark.usefixtures("local")
def test_until_pass_stops_at_the_first_good_answer(server: Server) -> None:
    scripted(server, "/h", [(503, b"warming up"), (503, b"warming up"), (200, b"ok"), (200, b"ok")])
    pauses: list[float] = []
    probe = Probe(name="GET /h", endpoint=f"{server.url}/h", expect=Expect((200,)), requests=5, interval=2.0)
    result = run_probe(probe, sleep=pauses.append)
    assert result.passed and result.attempts == 3 and result.failures == 2 and pauses == [2.0, 2.0]
    assert len(server.seen) == 3


@pytest.mark.usefixtures("local")
def test_counted_requests_tolerate_max_failures(server: Server) -> None:
    scripted(server, "/c", [(500, b"a"), (200, b"ok"), (200, b"ok"), (500, b"b")])
    probe = Probe(name="c", endpoint=f"{server.url}/c", requests=4, until_pass=False, max_failures=2)
    result = run_probe(probe, sleep=no_pause)
    assert result.passed and result.summary == "2/4 requests passed" and len(server.seen) == 4
    scripted(server, "/c", [(500, b"a"), (500, b"b"), (200, b"ok")])
    result = run_probe(Probe(name="c", endpoint=f"{server.url}/c", requests=3, until_pass=False, max_failures=1),
                       sleep=no_pause)
    assert not result.passed and "(2 failed, 1 tolerated); last status 200" in result.message
    assert result.samples == ["expected 2xx, got 500 (a)", "expected 2xx, got 500 (b)"]


@pytest.mark.usefixtures("local")
def test_body_expectation_and_capped_masked_excerpt(server: Server) -> None:
    token = "tok-" + "z" * 40
    body = (f"error for {token}: " + "x" * 500).encode()
    server.routes["/b"] = lambda _p, _h: (200, {}, body)
    redactor = Redactor()
    redactor.add(token)
    probe = Probe(name="b", endpoint=f"{server.url}/b", expect=Expect(body_contains="ready"), requests=1)
    result = run_probe(probe, redactor=redactor, sleep=no_pause)
    assert not result.passed and "expected the body to contain 'ready'" in result.message
    assert token not in result.message and "error for ***: xxx" in result.message
    excerpt = re.search(r"\((error for \*\*\*: x+)\.\.\.\)", result.message)
    assert excerpt is not None and len(excerpt.group(1)) == 200, result.message


@pytest.mark.usefixtures("local")
def test_status_list_is_honoured(server: Server) -> None:
    server.routes["/gone"] = lambda _p, _h: (410, {}, b"")
    result = run_probe(Probe(name="g", endpoint=f"{server.url}/gone", expect=Expect((404, 410))), sleep=no_pause)
    assert result.passed and result.status == 410


def test_a_refused_url_sends_nothing(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOWED_HOSTS_SETTING, raising=False)
    with pytest.raises(ProbeRefused, match="loopback address"):
        run_probe(Probe(name="p", endpoint=f"{server.url}/x", requests=3), sleep=no_pause)
    with pytest.raises(ProbeRefused, match="only http:// and https://"):
        run_probe(Probe(name="p", endpoint="file:///etc/passwd"), sleep=no_pause)
    assert server.seen == []


def test_results_recorded_before_the_shared_engine_still_read() -> None:
    old = {"passed": True, "results": [{"test": "GET /health", "passed": True, "attempts": 1, "status": 200,
                                        "message": "GET /health: 200 as expected"}]}
    report = SmokeReport.model_validate(old)
    assert report.results[0] == ProbeResult(name="GET /health", passed=True, attempts=1, status=200,
                                             message="GET /health: 200 as expected")


def test_smoke_probe_timing_comes_from_the_test() -> None:
    from activities.smoke import smoke_probe

    request = SmokeTestsInput(target=Target(cluster=CLUSTER, namespace="shop", app="web"), service="web-preview",
                              port=8080, tests=[])
    probe = smoke_probe(request, SmokeTest(path="/h", attempts=4, interval=timedelta(seconds=3),
                                           timeout=timedelta(seconds=7), expected_status=204))
    assert (probe.requests, probe.interval, probe.timeout, probe.expect.statuses) == (4, 3.0, 7.0, (204,))
    assert probe.endpoint == ServiceEndpoint(CLUSTER, "shop", "web-preview", 8080, "/h")


def test_a_service_redirecting_to_the_api_is_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Service answering 302 with an API path: following it would fetch a Secret with the worker's token."""
    from kubernetes import client

    from deployflow import kube

    with serve() as api_server:
        proxy = "/api/v1/namespaces/shop/services/web:80/proxy/healthz"
        api_server.redirect(proxy, "/api/v1/namespaces/shop/secrets/db")
        api_server.json("/api/v1/namespaces/shop/secrets/db", 200, {"data": {"password": b64(SECRET_VALUE)}})
        config = client.Configuration(host=api_server.url)
        config.api_key = {"authorization": "worker-token"}
        config.api_key_prefix = {"authorization": "Bearer"}
        monkeypatch.setattr(kube, "api_client", lambda cluster: client.ApiClient(config))
        probe = Probe(name="GET /healthz", endpoint=ServiceEndpoint(CLUSTER, "shop", "web", 80, "/healthz"))
        result = run_probe(probe, sleep=no_pause)
    assert not result.passed and result.status == 302
    assert [s.path for s in api_server.seen] == [proxy]
    assert api_server.seen[0].headers["authorization"] == "Bearer worker-token"  # the token did go to the proxy


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
