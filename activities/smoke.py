"""Smoke test activity: HTTP checks of a Service through the API server's service proxy."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities._errors import api_for
from deployflow.smoke import run_smoke_test
from deployflow.spec.common import SmokeTest, Target


class SmokeTestsInput(BaseModel):
    target: Target
    service: str
    port: int = 80
    tests: list[SmokeTest]


class SmokeTestResult(BaseModel):
    test: str
    passed: bool
    attempts: int
    status: int | None = None
    message: str


class SmokeReport(BaseModel):
    """The verdict is data, not an exception: the workflow decides to roll back and explains why."""

    passed: bool
    results: list[SmokeTestResult] = Field(default_factory=list)

    @property
    def failure(self) -> str:
        return "; ".join(r.message for r in self.results if not r.passed)


def _pause(seconds: float) -> None:
    """Waits between attempts, but wakes at once when the activity is cancelled (an abort)."""
    activity.wait_for_cancelled_sync(seconds)
    if activity.is_cancelled():
        raise CancelledError("smoke tests cancelled")


@activity.defn(name="run_smoke_tests")
def run_smoke_tests(request: SmokeTestsInput) -> SmokeReport:
    """Runs each test in order and stops at the first failure (later tests would only repeat the verdict)."""
    api = api_for(request.target)
    report = SmokeReport(passed=True)
    for test in request.tests:

        def on_attempt(attempt: int, outcome: str, label: str = test.label) -> None:
            activity.heartbeat(f"{label}: attempt {attempt}: {outcome}")
            if activity.is_cancelled():
                raise CancelledError(f"smoke tests stopped at {label}, attempt {attempt}")

        result = run_smoke_test(
            api,
            request.target.namespace,
            request.service,
            request.port,
            test,
            on_attempt=on_attempt,
            sleep=_pause,
        )
        report.results.append(SmokeTestResult(**vars(result)))
        if not result.passed:
            report.passed = False
            break
    return report
