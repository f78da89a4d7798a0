"""Activities that run hooks: one per hook kind, each a thin wrapper over deployflow.hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deployflow.hooks import job as jobs
from deployflow.hooks.http import smoke_test
from deployflow.hooks.kubeapi import KubeError
from deployflow.hooks.webhook import ConfirmConfigError, ask
from deployflow.spec.common import Target
from deployflow.spec.hooks import ConfirmHook, HookContext, HttpHook, JobHook

HOOK_FAILED = "HookFailed"
HOOK_TIMED_OUT = "HookTimedOut"
HOOK_MISCONFIGURED = "HookMisconfigured"

POLL_SECONDS = 0.5


class JobHookInput(BaseModel):
    target: Target
    hook: JobHook
    context: HookContext


class JobHookResult(BaseModel):
    job: str
    duration_seconds: float


class HttpHookInput(BaseModel):
    target: Target
    hook: HttpHook
    context: HookContext


class HttpHookResult(BaseModel):
    summary: str


class ConfirmInput(BaseModel):
    target: Target
    hook: ConfirmHook
    context: HookContext
    attempt: int = 1


class ConfirmResult(BaseModel):
    confirmed: bool
    detail: str


def _created_at(job: dict) -> datetime:
    stamp = job.get("metadata", {}).get("creationTimestamp")
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


@activity.defn
async def run_job_hook(req: JobHookInput) -> JobHookResult:
    """Creates the hook's Job (or finds it, on a retry) and waits for it to end, heartbeating."""
    target, hook = req.target, req.hook
    manifest = jobs.job_manifest(target, hook, req.context)
    name = manifest["metadata"]["name"]
    try:
        job = await asyncio.to_thread(jobs.ensure_job, target.cluster, manifest)
    except KubeError as err:
        if 400 <= err.status < 500 and err.status not in (408, 409, 429):
            raise ApplicationError(
                f"job hook {hook.name}: the API refused the Job: {err.message}", type=HOOK_MISCONFIGURED,
                non_retryable=True,
            ) from None
        raise
    # The deadline runs from the Job's creation, so a retried attempt does not grant itself a fresh timeout.
    deadline = _created_at(job) + timedelta(seconds=hook.timeout_seconds)
    started = datetime.now(UTC)
    while True:
        outcome = await asyncio.to_thread(jobs.job_outcome, target.cluster, target.namespace, name)
        activity.heartbeat(outcome.state)
        if outcome.state == "succeeded":
            return JobHookResult(job=name, duration_seconds=(datetime.now(UTC) - started).total_seconds())
        if outcome.state == "failed":
            logs = await asyncio.to_thread(jobs.last_log_lines, target.cluster, target.namespace, name, hook.log_lines)
            message = f"job hook {hook.name} (Job {target.namespace}/{name}) failed: {outcome.message}"
            if logs:
                message += f"\nlast log lines:\n{logs}"
            raise ApplicationError(message, type=HOOK_FAILED, non_retryable=True)
        if datetime.now(UTC) >= deadline:
            logs = await asyncio.to_thread(jobs.last_log_lines, target.cluster, target.namespace, name, hook.log_lines)
            # A Job left running could still finish its migration after we have given up and rolled back.
            await asyncio.to_thread(jobs.delete_job, target.cluster, target.namespace, name)
            message = f"job hook {hook.name} (Job {target.namespace}/{name}) did not finish in {hook.timeout_seconds}s"
            if logs:
                message += f"\nlast log lines:\n{logs}"
            raise ApplicationError(message, type=HOOK_TIMED_OUT, non_retryable=True)
        await asyncio.sleep(POLL_SECONDS)


@activity.defn
async def run_http_hook(req: HttpHookInput) -> HttpHookResult:
    hook = req.hook
    result = await asyncio.to_thread(smoke_test, req.target.cluster, req.target.namespace, hook)
    where = hook.url or f"service {req.target.namespace}/{hook.service}{hook.path}"
    if result.failures > hook.max_failures:
        raise ApplicationError(
            f"http hook {hook.name} against {where}: {result.summary} "
            f"({result.failures} failed, {hook.max_failures} tolerated); first failures: {'; '.join(result.samples)}",
            type=HOOK_FAILED,
            non_retryable=True,
        )
    return HttpHookResult(summary=f"{where}: {result.summary}")


@activity.defn
async def ask_confirmation(req: ConfirmInput) -> ConfirmResult:
    """Asks the confirmation webhook once; the workflow asks again on a durable timer until its timeout."""
    ctx = req.context
    body = {
        "name": req.hook.name,
        "point": ctx.point.value,
        "attempt": req.attempt,
        "workflow_id": ctx.workflow_id,
        "strategy": ctx.strategy,
        "cluster": req.target.cluster,
        "namespace": req.target.namespace,
        "app": req.target.app,
        "version": ctx.version,
        "previous_version": ctx.previous_version,
        "metadata": req.hook.metadata,
    }
    try:
        answer = await ask(req.hook, body)
    except ConfirmConfigError as err:
        raise ApplicationError(
            f"confirm hook {req.hook.name}: {err}", type=HOOK_MISCONFIGURED, non_retryable=True
        ) from None
    return ConfirmResult(confirmed=answer.confirmed, detail=answer.detail)


HOOK_ACTIVITIES: list[Callable[..., Any]] = [run_job_hook, run_http_hook, ask_confirmation]
