"""How a release that does not succeed ends, the same way in every strategy.

- `explain(err)` is the sentence a person reads: the innermost reason, not the wrapping (an activity's own message,
  "wait_healthy timed out (START_TO_CLOSE)", "aborted: <reason>", "cancelled").
- The run fails with an `ApplicationError` whose type is one of `deployflow.errors.ErrorType` (RolledBack,
  RollbackFailed, Aborted, InvalidSpec, ...) and whose cause is the error that started it (`from err`).
- `roll_back_and_end` runs the rollback shielded, so a cancellation arriving meanwhile does not cut it short; then a
  cancelled run ends CANCELED (the cancellation is re-raised) and any other failure ends FAILED as RolledBack.

What the strategies catch is `(Exception, asyncio.CancelledError)`, never BaseException: a worker evicting a run
from its cache tears it down by throwing GeneratorExit (or an eviction error) into it, and a rollback that swallowed
that would run against a run that no longer exists on this worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from deployflow.errors import ErrorType

Failure = Exception | asyncio.CancelledError


def failure(message: str, kind: ErrorType | str, details: dict[str, Any] | None = None) -> ApplicationError:
    """A non-retryable failure of the run: retrying a workflow that rolled back or was refused changes nothing."""
    args = (details,) if details is not None else ()
    return ApplicationError(message, *args, type=str(kind), non_retryable=True)


class Aborted(ApplicationError):
    """An operator aborted the deployment. Non-retryable, so an uncaught one still fails the run cleanly."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"aborted: {reason}", type=str(ErrorType.ABORTED), non_retryable=True)
        self.reason = reason


class AnalysisFailed(ApplicationError):
    """An analysis judged the new version bad: the release rolls back."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=str(ErrorType.ANALYSIS_FAILED), non_retryable=True)


def rolled_back(message: str, details: dict[str, Any] | None = None) -> ApplicationError:
    return failure(message, ErrorType.ROLLED_BACK, details)


def rollback_failed(message: str) -> ApplicationError:
    """The rollback itself failed: the message must say what a person has to check."""
    return failure(message, ErrorType.ROLLBACK_FAILED)


def invalid_spec(message: str) -> ApplicationError:
    return failure(f"invalid spec: {message}", ErrorType.INVALID_SPEC)


def is_cancellation(err: BaseException) -> bool:
    """A cancel of the run (or of the activity it awaited): the run must end CANCELED, after its cleanup."""
    return is_cancelled_exception(err)


def _innermost(err: BaseException) -> tuple[BaseException, str | None]:
    """The error under the activity/child wrappers, and the name of the step that raised it."""
    step: str | None = None
    while isinstance(err, ActivityError | ChildWorkflowError) and err.cause is not None:
        step = err.activity_type if isinstance(err, ActivityError) else err.workflow_type
        err = err.cause
    return err, step


def explain(err: BaseException) -> str:
    """The sentence a person needs: the innermost reason, not the wrapping."""
    if isinstance(err, Aborted):
        return f"aborted: {err.reason}"
    if is_cancelled_exception(err):
        return "cancelled"
    inner, step = _innermost(err)
    if isinstance(inner, TimeoutError):
        return f"{step or 'a step'} timed out ({inner.type.name if inner.type else 'timeout'})"
    if isinstance(inner, FailureError):
        return inner.message
    return f"{type(inner).__name__}: {inner}" if str(inner) else type(inner).__name__


def error_type(err: BaseException, default: ErrorType) -> str:
    """The type the run fails with for `err`: the activity's own (NamespaceNotFound, HookFailed...), else `default`."""
    inner, _ = _innermost(err)
    if isinstance(inner, ApplicationError) and inner.type:
        return inner.type
    return str(default)


async def shielded(cleanup: Awaitable[Any]) -> None:
    """Runs cleanup (a rollback, the last notifications) to the end even if the run is cancelled meanwhile."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def roll_back_and_end(
    err: Failure,
    roll_back: Callable[[str], Awaitable[None]],
    ended: Callable[[str], ApplicationError],
    reason: str | None = None,
) -> NoReturn:
    """Rolls back (shielded) because of `err`, then ends the run: CANCELED for a cancellation, else `ended(reason)`
    with `err` as its cause."""
    reason = reason or explain(err)
    await shielded(roll_back(reason))
    if is_cancelled_exception(err):
        raise err
    raise ended(reason) from err
