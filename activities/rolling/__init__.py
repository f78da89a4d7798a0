"""The rolling strategy's activities, importable from `activities.rolling` whatever module holds them."""

from collections.abc import Callable
from typing import Any

from activities.rolling.common import (
    BATCH_TIMED_OUT,
    BATCH_UNHEALTHY,
    HASH_LABEL,
    INVALID_WORKLOAD,
    NON_RETRYABLE,
    REVISION_ANNOTATION,
    ROLLOUT_ANNOTATION,
    VERSION_LABEL,
    WORKLOAD_NOT_FOUND,
    BeginInput,
    FinishInput,
    Kind,
    MoveInput,
    MoveResult,
    NativeInput,
    PauseInput,
    PrepareInput,
    PrepareResult,
    RecordedRevision,
    WorkloadRef,
    new_template,
)
from activities.rolling.deployment import native_rollout
from activities.rolling.rollout import begin_rolling, finish_rolling, move_pods, prepare_rolling, set_paused

ROLLING_ACTIVITIES: list[Callable[..., Any]] = [
    prepare_rolling,
    begin_rolling,
    move_pods,
    finish_rolling,
    native_rollout,
    set_paused,
]

__all__ = [
    "BATCH_TIMED_OUT",
    "BATCH_UNHEALTHY",
    "HASH_LABEL",
    "INVALID_WORKLOAD",
    "NON_RETRYABLE",
    "REVISION_ANNOTATION",
    "ROLLING_ACTIVITIES",
    "ROLLOUT_ANNOTATION",
    "VERSION_LABEL",
    "WORKLOAD_NOT_FOUND",
    "BeginInput",
    "FinishInput",
    "Kind",
    "MoveInput",
    "MoveResult",
    "NativeInput",
    "PauseInput",
    "PrepareInput",
    "PrepareResult",
    "RecordedRevision",
    "WorkloadRef",
    "begin_rolling",
    "finish_rolling",
    "move_pods",
    "native_rollout",
    "new_template",
    "prepare_rolling",
    "set_paused",
]
