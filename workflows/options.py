"""How every workflow runs its activities: timeouts, heartbeats, retries and cancellation, in one place.

Retries stop at once on the error types in `deployflow.errors.NON_RETRYABLE`, the one set the activities raise
from: a crash-looping image, a missing namespace or a failed smoke test does not improve by trying again.

Cancellation: an activity that changes the cluster is cancelled with WAIT_CANCELLATION_COMPLETED, so a rollback
never starts while the step it undoes is still changing the same objects. Reads keep TRY_CANCEL: nothing to wait
for. Which of the two an activity uses is part of the command sequence a recorded run replays, so an activity keeps
the one it was recorded with.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from deployflow.errors import NON_RETRYABLE

# Sorted: the policy goes into every ScheduleActivityTask command, and a stable order keeps histories comparable.
NON_RETRYABLE_TYPES: list[str] = sorted(NON_RETRYABLE)

QUICK = timedelta(seconds=60)
# Activities that wait heartbeat about once a second: a worker that dies mid-wait is noticed within this.
HEARTBEAT = timedelta(seconds=15)

CHANGES_CLUSTER = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
READS = ActivityCancellationType.TRY_CANCEL


def retry(attempts: int = 8, *, first: timedelta = timedelta(seconds=1)) -> RetryPolicy:
    """A bounded retry (the default policy retries for ever) that gives up at once on a non-retryable type."""
    return RetryPolicy(
        initial_interval=first,
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=attempts,
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    )


RETRY = retry()
# Measurements are repeated on their own interval anyway: a few quick attempts, then the verdict says "error".
MEASURE_RETRY = retry(3)
# A notification is never a reason to fail: a few attempts, then a warning in the event log.
NOTIFY_RETRY = retry(4)


def activity(
    fn: Any,
    arg: Any,
    *,
    summary: str,
    timeout: timedelta = QUICK,
    heartbeat: timedelta | None = None,
    retry_policy: RetryPolicy = RETRY,
    cancellation: ActivityCancellationType = CHANGES_CLUSTER,
) -> Awaitable[Any]:
    """Schedules one activity with the project's options; `timeout` is per attempt. Give `heartbeat` (HEARTBEAT)
    only to activities that heartbeat while they wait: one that does not would time out after it."""
    return workflow.execute_activity(
        fn,
        arg,
        start_to_close_timeout=timeout,
        heartbeat_timeout=heartbeat,
        retry_policy=retry_policy,
        cancellation_type=cancellation,
        summary=summary,
    )
