"""Blue-green fixtures: a worker with every workflow and activity on the time-skipping server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.bluegreen_support import running_worker


@pytest.fixture
async def bluegreen_env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str]]:
    """The client and the task queue of a running worker."""
    async with running_worker(time_skipping_env.client) as task_queue:
        yield time_skipping_env.client, task_queue
