"""Temporal plumbing of the commands: connecting, finding a deployment by app name, asking it for its status."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from deployflow.cli.base import ENCRYPTED_HINT, EXIT_BAD_INPUT, fail, is_encrypted_payload_error
from deployflow.status import DeploymentStatus

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle


async def connect_client() -> Client:
    from deployflow.codec import CodecConfigError
    from deployflow.temporal import ConnectionSettings, connect

    try:
        settings = ConnectionSettings.from_env()
    except CodecConfigError as err:
        fail(f"payload encryption is misconfigured: {err}", EXIT_BAD_INPUT)
    try:
        return await asyncio.wait_for(connect(settings), timeout=15)
    except Exception as err:  # the SDK raises plain RuntimeError for every transport failure
        fail(
            f"cannot connect to Temporal at {settings.address} (namespace {settings.namespace}): {err}\n"
            "Start a local stack with `deployflow dev`, or point TEMPORAL_ADDRESS (and TEMPORAL_NAMESPACE, "
            "TEMPORAL_API_KEY or TEMPORAL_TLS_*) at your Temporal service."
        )


def task_queue() -> str:
    from deployflow.temporal import DEFAULT_TASK_QUEUE

    return os.environ.get("DEPLOYFLOW_TASK_QUEUE", DEFAULT_TASK_QUEUE)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def resolve_workflow_id(client: Client, ref: str, namespace: str | None = None) -> str:
    """A workflow id as given, or the most recent deployment of an app found through the search attributes."""
    if "/" in ref:
        return ref
    query = f"DeployApp = {_quote(ref)}"
    if namespace:
        query += f" AND DeployNamespace = {_quote(namespace)}"
    found: list[tuple[str, bool]] = []
    async for wf in client.list_workflows(query, limit=50):
        from temporalio.client import WorkflowExecutionStatus

        found.append((wf.id, wf.status == WorkflowExecutionStatus.RUNNING))
    if not found:
        fail(f"no deployment found for app {ref!r}" + (f" in namespace {namespace!r}" if namespace else ""))
    running = list(dict.fromkeys(i for i, r in found if r))
    if len(running) > 1:
        fail(f"app {ref!r} has several running deployments; name one: " + ", ".join(running))
    return running[0] if running else found[0][0]


async def has_pollers(client: Client, queue: str) -> bool:
    """Whether a worker polls the task queue now (False when it cannot be told)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    try:
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue),
                                     task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
        )
    except Exception:
        return True  # not allowed to look (e.g. a restricted API key): do not warn on a guess
    return len(resp.pollers) > 0


async def query_status(handle: WorkflowHandle[Any, Any]) -> DeploymentStatus:
    try:
        return await handle.query("status", result_type=DeploymentStatus)
    except KeyError as err:
        if is_encrypted_payload_error(err):
            fail(ENCRYPTED_HINT)
        raise
