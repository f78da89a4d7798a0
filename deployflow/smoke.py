"""Smoke tests: HTTP checks of a Service through the API server's service proxy, exactly as `kubectl` reaches it.

Going through the API server means the worker needs no network route into the cluster, only API access
(`services/proxy` get in RBAC).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployflow import kube
from deployflow.spec.common import SmokeTest

BODY_EXCERPT = 200


@dataclass
class ProxyResponse:
    status: int
    body: str


@dataclass
class SmokeResult:
    test: str
    passed: bool
    attempts: int
    status: int | None
    message: str


def proxy_get(
    api: client.ApiClient, namespace: str, service: str, port: int, path: str, timeout: float
) -> ProxyResponse:
    """GET `path` on a Service through `/api/v1/namespaces/{ns}/services/{name}:{port}/proxy/...`."""
    # Built by hand: the generated client escapes '/' inside path parameters.
    resource = (
        f"/api/v1/namespaces/{quote(namespace)}/services/{quote(service)}:{port}/proxy/"
        f"{path.lstrip('/')}"
    )
    try:
        response = kube.request(api, "GET", resource, accept="*/*", timeout=timeout)
        return ProxyResponse(status=int(response.status), body=_text(response.read()))
    except ApiException as err:
        return ProxyResponse(status=int(err.status or 0), body=_text(err.body))


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def run_smoke_test(
    api: client.ApiClient,
    namespace: str,
    service: str,
    port: int,
    test: SmokeTest,
    *,
    on_attempt: Callable[[int, str], None] = lambda attempt, outcome: None,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeResult:
    """Tries a smoke test up to `test.attempts` times; passes on the first answer that meets the expectations."""
    last_status: int | None = None
    last_problem = ""
    for attempt in range(1, test.attempts + 1):
        try:
            response = proxy_get(api, namespace, service, port, test.path, test.timeout.total_seconds())
            last_status = response.status
            last_problem = _problem(test, response)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            last_status, last_problem = None, f"request failed: {err}"
        on_attempt(attempt, last_problem or "passed")
        if not last_problem:
            return SmokeResult(test.label, True, attempt, last_status, f"{test.label}: {last_status} as expected")
        if attempt < test.attempts:
            sleep(test.interval.total_seconds())
    return SmokeResult(
        test.label,
        False,
        test.attempts,
        last_status,
        f"smoke test {test.label} {last_problem} ({test.attempts} of {test.attempts} attempts)",
    )


def _problem(test: SmokeTest, response: ProxyResponse) -> str:
    if response.status != test.expected_status:
        return f"expected {test.expected_status}, got {response.status}{_excerpt(response.body)}"
    if test.expected_body is not None and test.expected_body not in response.body:
        return f"expected the body to contain {test.expected_body!r}{_excerpt(response.body)}"
    return ""


def _excerpt(body: str) -> str:
    body = body.strip()
    if not body:
        return ""
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), separators=(",", ":"))
    return f" ({body[:BODY_EXCERPT]}{'...' if len(body) > BODY_EXCERPT else ''})"
