"""`deployflow worker` as its own process, the way the CLI tests and the temporal-CLI tests meet a worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator

from temporalio.testing import WorkflowEnvironment

STARTUP = 60.0  # bounds a hang while the worker starts; not a speed assertion


@contextlib.asynccontextmanager
async def worker_process(dev_env: WorkflowEnvironment, kubeconfig: str, prefix: str) -> AsyncIterator[str]:
    """Runs a worker on a task queue of its own until the block ends; yields the queue once the worker polls it."""
    from deployflow.cli import has_pollers

    queue = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "DEPLOYFLOW_TASK_QUEUE": queue, "KUBECONFIG": kubeconfig, "DEPLOYFLOW_SHUTDOWN_SECONDS": "5"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "deployflow.cli", "worker", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP
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
