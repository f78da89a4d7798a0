"""Activities that run hooks: one per hook kind, each a thin wrapper over deployflow.hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deployflow.errors import ErrorType
from deployflow.hooks import job as jobs
from deployflow.hooks.webhook import ConfirmConfigError, ask
from deployflow.kube import KubeError
from deployflow.probes.engine import Expect, Probe, ProbeRefused, ServiceEndpoint, run_probe
from deployflow.spec.common import Target
from deployflow.spec.hooks import ConfirmHook, HookContext, HttpHook, JobHook

HOOK_FAILED: str = ErrorType.HOOK_FAILED
HOOK_TIMED_OUT: str = ErrorType.HOOK_TIMED_OUT
HOOK_MISCONFIGURED: str = ErrorType.HOOK_MISCONFIGURED


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
    outcome = await jobs.wait_job(
        target.cluster, target.namespace, name, (deadline - datetime.now(UTC)).total_seconds()
    )
    if outcome.state == "succeeded":
        return JobHookResult(job=name, duration_seconds=(datetime.now(UTC) - started).total_seconds())
    logs = await asyncio.to_thread(jobs.last_log_lines, target.cluster, target.namespace, name, hook.log_lines)
    if outcome.state == "failed":
        message = f"job hook {hook.name} (Job {target.namespace}/{name}) failed: {outcome.message}"
        kind = HOOK_FAILED
    else:
        # A Job left running could still finish its migration after we have given up and rolled back.
        await asyncio.to_thread(jobs.delete_job, target.cluster, target.namespace, name)
        message = f"job hook {hook.name} (Job {target.namespace}/{name}) did not finish in {hook.timeout_seconds}s"
        kind = HOOK_TIMED_OUT
    if logs:
        message += f"\nlast log lines:\n{logs}"
    raise ApplicationError(message, type=kind, non_retryable=True)


def http_probe(target: Target, hook: HttpHook) -> Probe:
    endpoint = (
        hook.url if hook.url is not None
        else ServiceEndpoint(target.cluster, target.namespace, str(hook.service), hook.port, hook.path)
    )
    return Probe(
        name=hook.name,
        endpoint=endpoint,
        expect=Expect(statuses=tuple(hook.expect_status), body_contains=hook.body_contains),
        method=hook.method,
        timeout=hook.timeout_seconds,
        requests=hook.requests,
        until_pass=False,
        max_failures=hook.max_failures,
    )


@activity.defn
async def run_http_hook(req: HttpHookInput) -> HttpHookResult:
    hook = req.hook
    try:
        result = await asyncio.to_thread(run_probe, http_probe(req.target, hook))
    except ProbeRefused as err:
        raise ApplicationError(f"http hook {err}", type=HOOK_MISCONFIGURED, non_retryable=True) from None
    if not result.passed:
        raise ApplicationError(f"http hook {hook.name} against {result.message}", type=HOOK_FAILED, non_retryable=True)
    return HttpHookResult(summary=result.message)


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
