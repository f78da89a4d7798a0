"""`run_hooks`: runs the hooks of one point (see deployflow.spec.hooks for what a failure means at each point).

Callable from any deployment workflow::

    await run_hooks(HookPoint.PRE_DEPLOY, request.hooks, request.target, version=..., strategy="rolling")

Raises `ApplicationError(type="HookFailed", non_retryable=True)` naming the point and the hook, with the cause
(a failed Job's last log lines, the smoke test's failed answers, the webhook that never confirmed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.hooks import (
        ConfirmInput,
        HttpHookInput,
        JobHookInput,
        ask_confirmation,
        run_http_hook,
        run_job_hook,
    )
    from deployflow.errors import ErrorType
    from deployflow.spec.common import Target
    from deployflow.spec.hooks import ConfirmHook, HookContext, HookPoint, Hooks, HttpHook, JobHook

from workflows.failure import explain, failure
from workflows.options import READS, activity, retry

EventSink = Callable[[str, str], None]  # (message, kind), e.g. DeploymentControl.event


async def run_hooks(
    point: HookPoint | str,
    hooks: Hooks | None,
    target: Target,
    *,
    version: str = "",
    previous_version: str | None = None,
    strategy: str = "",
    on_event: EventSink | None = None,
) -> None:
    """Runs the hooks of `point` in order; the first failure stops and raises."""
    if hooks is None:
        return
    point = HookPoint(point)
    info = workflow.info()
    context = HookContext(
        point=point,
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        strategy=strategy,
        version=version,
        previous_version=previous_version,
    )
    for hook in hooks.at(point):
        label = f"{point.value} hook {hook.name} ({hook.kind})"
        if on_event:
            on_event(f"{label}: running", "info")
        try:
            detail = await _run_one(hook, target, context)
        except ApplicationError as err:
            raise failure(f"{label} failed: {err.message}", ErrorType.HOOK_FAILED) from err
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            raise failure(f"{label} failed: {explain(err)}", ErrorType.HOOK_FAILED) from err
        if on_event:
            on_event(f"{label}: passed{': ' + detail if detail else ''}", "info")


async def _run_one(hook: JobHook | HttpHook | ConfirmHook, target: Target, context: HookContext) -> str:
    if isinstance(hook, JobHook):
        # The Job changes the cluster (migrations): a rollback must not start while it is still being handled.
        job = await activity(
            run_job_hook,
            JobHookInput(target=target, hook=hook, context=context),
            timeout=timedelta(seconds=hook.timeout_seconds + 120),
            heartbeat=timedelta(seconds=60),
            retry_policy=retry(5),
            summary=f"{context.point.value}: job {hook.name}",
        )
        return f"Job {job.job} completed"
    if isinstance(hook, HttpHook):
        smoke = await activity(
            run_http_hook,
            HttpHookInput(target=target, hook=hook, context=context),
            timeout=timedelta(seconds=hook.requests * hook.timeout_seconds + 30),
            retry_policy=retry(3),
            cancellation=READS,
            summary=f"{context.point.value}: smoke test {hook.name}",
        )
        return smoke.summary
    return await _confirm(hook, target, context)


async def _confirm(hook: ConfirmHook, target: Target, context: HookContext) -> str:
    """Asks until the webhook answers 2xx; the waits are durable timers, so a long confirmation costs nothing."""
    deadline = workflow.now() + timedelta(seconds=hook.timeout_seconds)
    attempt = 0
    last = ""
    while True:
        attempt += 1
        answer = await activity(
            ask_confirmation,
            ConfirmInput(target=target, hook=hook, context=context, attempt=attempt),
            timeout=timedelta(seconds=30),
            retry_policy=retry(3),
            cancellation=READS,
            summary=f"{context.point.value}: confirm {hook.name} (ask {attempt})",
        )
        if answer.confirmed:
            return f"confirmed after {attempt} ask(s)"
        last = answer.detail
        remaining = deadline - workflow.now()
        if remaining <= timedelta(0):
            raise failure(
                f"not confirmed within {hook.timeout_seconds}s ({attempt} asks; last: {last})", ErrorType.HOOK_TIMED_OUT
            )
        await workflow.sleep(min(timedelta(seconds=hook.interval_seconds), remaining))
