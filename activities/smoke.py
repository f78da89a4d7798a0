"""Smoke test activity: HTTP checks of a Service through the API server's service proxy."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities._errors import api_for
from deployflow.errors import ErrorType
from deployflow.probes.engine import Expect, Probe, ProbeRefused, ProbeResult, ServiceEndpoint, run_probe
from deployflow.spec.common import SmokeTest, Target

# The result of one smoke test, shared with HTTP hooks; the old name stays importable.
SmokeTestResult = ProbeResult


class SmokeTestsInput(BaseModel):
    target: Target
    service: str
    port: int | str = 80
    tests: list[SmokeTest]


class SmokeReport(BaseModel):
    """The verdict is data, not an exception: the workflow decides to roll back and explains why."""

    passed: bool
    results: list[ProbeResult] = Field(default_factory=list)

    @property
    def failure(self) -> str:
        return "; ".join(r.message for r in self.results if not r.passed)


def smoke_probe(request: SmokeTestsInput, test: SmokeTest) -> Probe:
    endpoint = ServiceEndpoint(
        request.target.cluster, request.target.namespace, request.service, request.port, test.path
    )
    return Probe(
        name=test.label,
        endpoint=endpoint,
        expect=Expect(statuses=(test.expected_status,), body_contains=test.expected_body),
        timeout=test.timeout.total_seconds(),
        requests=test.attempts,
        interval=test.interval.total_seconds(),
        until_pass=True,
    )


def _pause(seconds: float) -> None:
    """Waits between attempts, but wakes at once when the activity is cancelled (an abort)."""
    activity.wait_for_cancelled_sync(seconds)
    if activity.is_cancelled():
        raise CancelledError("smoke tests cancelled")


@activity.defn(name="run_smoke_tests")
def run_smoke_tests(request: SmokeTestsInput) -> SmokeReport:
    """Runs each test in order and stops at the first failure (later tests would only repeat the verdict)."""
    api_for(request.target)  # an unknown cluster fails for good here, naming the contexts there are
    report = SmokeReport(passed=True)
    for test in request.tests:

        def on_attempt(attempt: int, outcome: str, label: str = test.label) -> None:
            activity.heartbeat(f"{label}: attempt {attempt}: {outcome}")
            if activity.is_cancelled():
                raise CancelledError(f"smoke tests stopped at {label}, attempt {attempt}")

        try:
            result = run_probe(smoke_probe(request, test), on_attempt=on_attempt, sleep=_pause)
        except ProbeRefused as err:
            raise ApplicationError(
                f"smoke test {err}", type=ErrorType.INVALID_SPEC, non_retryable=True
            ) from None
        report.results.append(result)
        if not result.passed:
            report.passed = False
            break
    return report
