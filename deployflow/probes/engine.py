"""The HTTP probe engine: one request path, one set of expectations, one result, for smoke tests and HTTP hooks.

A probe goes either to a Service through the API server's proxy (the worker needs no network route into the
cluster, only `services/proxy` in RBAC) or to a URL under the outbound policy. It is sent up to `requests` times:
`until_pass` probes (smoke tests) stop at the first answer that meets the expectations; the others (HTTP hooks)
send every request and pass when no more than `max_failures` of them failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import urllib3
from kubernetes.client import ApiClient
from pydantic import AliasChoices, BaseModel, Field

from deployflow import kube
from deployflow.probes.proxy import service_proxy_path
from deployflow.security import outbound
from deployflow.security.outbound import OutboundRefused
from deployflow.security.redact import BODY_EXCERPT, Redactor

MAX_BODY = 1 << 20  # enough for any health page; a larger answer is judged on its first MiB
SAMPLES = 3


class ProbeRefused(Exception):
    """The probe may not be sent as configured (a path leaving the proxy, a URL the policy refuses)."""


@dataclass(frozen=True)
class ServiceEndpoint:
    cluster: str
    namespace: str
    service: str
    port: int | str | None
    path: str = "/"

    def describe(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"service {self.namespace}/{self.service}{port}{self.path}"


@dataclass(frozen=True)
class Expect:
    statuses: tuple[int, ...] = ()  # empty: any 2xx
    body_contains: str | None = None

    def problem(self, status: int, body: bytes, redactor: Redactor) -> str:
        """Why the answer does not meet the expectations ('' when it does), quoting a capped, masked excerpt."""
        ok = status in self.statuses if self.statuses else 200 <= status < 300
        if not ok:
            wanted = "/".join(str(s) for s in self.statuses) or "2xx"
            return f"expected {wanted}, got {status}{_quoted(body, redactor)}"
        if self.body_contains is not None and self.body_contains not in body.decode("utf-8", "replace"):
            return f"expected the body to contain {self.body_contains!r}{_quoted(body, redactor)}"
        return ""


@dataclass(frozen=True)
class Probe:
    name: str
    endpoint: ServiceEndpoint | str  # a Service, or an absolute URL
    expect: Expect = Expect()
    method: str = "GET"
    timeout: float = 5.0
    requests: int = 1
    interval: float = 0.0
    until_pass: bool = True
    max_failures: int = 0

    def where(self) -> str:
        if isinstance(self.endpoint, ServiceEndpoint):
            return self.endpoint.describe()
        return _url_shown(self.endpoint)


class ProbeResult(BaseModel):
    """The verdict of one probe. `test` is read as `name`: smoke results recorded before the engine was shared."""

    name: str = Field(validation_alias=AliasChoices("name", "test"))
    passed: bool
    attempts: int
    failures: int = 0
    status: int | None = None
    message: str
    samples: list[str] = Field(default_factory=list, description="the first failures, masked and capped")

    @property
    def summary(self) -> str:
        return f"{self.attempts - self.failures}/{self.attempts} requests passed"


@dataclass
class _Tally:
    attempts: int = 0
    failures: int = 0
    status: int | None = None
    last_problem: str = ""
    samples: list[str] = field(default_factory=list)


def run_probe(
    probe: Probe,
    *,
    redactor: Redactor | None = None,
    on_attempt: Callable[[int, str], None] = lambda attempt, outcome: None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Sends the probe; raises ProbeRefused, before any request, when it may not be sent at all."""
    redactor = redactor or Redactor()
    send = _sender(probe)
    tally = _Tally()
    for attempt in range(1, probe.requests + 1):
        tally.attempts = attempt
        try:
            tally.status, body = send()
            problem = probe.expect.problem(tally.status, body, redactor)
        except OutboundRefused as err:
            raise ProbeRefused(f"{probe.name}: {redactor(str(err))}") from None
        except (httpx.HTTPError, urllib3.exceptions.HTTPError, OSError) as err:
            tally.status, problem = None, f"request failed: {type(err).__name__}: {redactor(str(err))[:BODY_EXCERPT]}"
        tally.last_problem = problem
        on_attempt(attempt, problem or "passed")
        if problem:
            tally.failures += 1
            if len(tally.samples) < SAMPLES:
                tally.samples.append(problem)
        elif probe.until_pass:
            break
        if attempt < probe.requests:
            sleep(probe.interval)
    return _verdict(probe, tally)


def _verdict(probe: Probe, tally: _Tally) -> ProbeResult:
    if probe.until_pass:
        passed = not tally.last_problem
        message = (
            f"{probe.name}: {tally.status} as expected"
            if passed
            else f"smoke test {probe.name} {tally.last_problem} ({tally.attempts} of {probe.requests} attempts)"
        )
    else:
        passed = tally.failures <= probe.max_failures
        message = f"{probe.where()}: {tally.attempts - tally.failures}/{tally.attempts} requests passed"
        if not passed:
            message += (
                f" ({tally.failures} failed, {probe.max_failures} tolerated); last status {tally.status}; "
                f"first failures: {'; '.join(tally.samples)}"
            )
    return ProbeResult(
        name=probe.name, passed=passed, attempts=tally.attempts, failures=tally.failures, status=tally.status,
        message=message, samples=tally.samples,
    )


def _sender(probe: Probe) -> Callable[[], tuple[int, bytes]]:
    """The request, built (and checked) once; raises ProbeRefused when the path or URL is refused."""
    endpoint = probe.endpoint
    if isinstance(endpoint, ServiceEndpoint):
        try:
            path = service_proxy_path(endpoint.namespace, endpoint.service, endpoint.port, endpoint.path)
        except ValueError as err:
            raise ProbeRefused(f"{probe.name}: {err}") from None

        def via_proxy() -> tuple[int, bytes]:
            return _proxy_request(kube.api_client(endpoint.cluster), probe.method, path, probe.timeout)

        return via_proxy
    try:
        outbound.check_url(endpoint)
    except ValueError as err:
        raise ProbeRefused(f"{probe.name}: {_url_shown(endpoint)}: {err}") from None

    def to_url() -> tuple[int, bytes]:
        with outbound.client(probe.timeout) as http, http.stream(probe.method, endpoint) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= MAX_BODY:
                    break
            return response.status_code, body[:MAX_BODY]

    return to_url


def _proxy_request(api: ApiClient, method: str, path: str, timeout: float) -> tuple[int, bytes]:
    """One request through the client's authenticated connection pool that follows no redirect: a Service
    answering 3xx with an API path would otherwise have the worker fetch that path with its own token."""
    method, url, headers, _, _ = api.param_serialize(
        method, path, header_params={"Accept": "*/*"}, auth_settings=["BearerToken"]
    )
    response = api.rest_client.pool_manager.request(
        method, url, headers=headers, timeout=urllib3.Timeout(total=timeout), redirect=False, retries=False,
        preload_content=False,
    )
    try:
        return int(response.status), response.read(MAX_BODY) or b""
    finally:
        # Closed, not drained: a Service streaming without end must not hold the probe.
        response.close()
        response.release_conn()


def _quoted(body: bytes, redactor: Redactor) -> str:
    text = redactor.excerpt(body)
    return f" ({text})" if text else ""


def _url_shown(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "an invalid URL"
    return outbound.shown_url(parsed) + parsed.path
