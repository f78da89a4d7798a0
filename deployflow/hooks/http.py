"""HTTP smoke tests: requests to a Service (through the API server's service proxy) or to a URL."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from deployflow.hooks import kubeapi
from deployflow.spec.hooks import HttpHook


@dataclass
class SmokeResult:
    requests: int = 0
    failures: int = 0
    samples: list[str] = field(default_factory=list)  # the first failures, for the error message

    @property
    def summary(self) -> str:
        return f"{self.requests - self.failures}/{self.requests} requests passed"


def _judge(hook: HttpHook, status: int, body: str) -> str | None:
    ok = status in hook.expect_status if hook.expect_status else 200 <= status < 300
    if not ok:
        return f"status {status}: {body[:200].strip()}"
    if hook.body_contains is not None and hook.body_contains not in body:
        return f"status {status} without {hook.body_contains!r} in the body: {body[:200].strip()}"
    return None


def _service_request(cluster: str, namespace: str, hook: HttpHook) -> tuple[int, str]:
    name = f"{hook.service}:{hook.port}" if hook.port is not None else str(hook.service)
    path = kubeapi.core_path(namespace, "services", name) + "/proxy" + hook.path
    status, body = kubeapi.request_raw(cluster, hook.method, path, timeout=hook.timeout_seconds)
    return status, body.decode(errors="replace")


def smoke_test(cluster: str, namespace: str, hook: HttpHook) -> SmokeResult:
    result = SmokeResult()
    with httpx.Client(timeout=hook.timeout_seconds) as http:
        for _ in range(hook.requests):
            result.requests += 1
            try:
                if hook.url is not None:
                    response = http.request(hook.method, hook.url)
                    problem = _judge(hook, response.status_code, response.text)
                else:
                    problem = _judge(hook, *_service_request(cluster, namespace, hook))
            except (httpx.HTTPError, OSError) as err:
                problem = f"{type(err).__name__}: {err}"
            if problem:
                result.failures += 1
                if len(result.samples) < 3:
                    result.samples.append(problem)
    return result
