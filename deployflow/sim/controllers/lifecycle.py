"""How a simulated pod lives: the behaviour its template asks for (annotations) and `lifecycle()`, the pure
function of that behaviour and the pod's age in simulated seconds that the pod controller writes as status."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANNOTATION_PREFIX = "sim.deployflow.io/"
NEVER_READY = ANNOTATION_PREFIX + "never-ready"
CRASH_LOOP = ANNOTATION_PREFIX + "crash-loop"
IMAGE_PULL_ERROR = ANNOTATION_PREFIX + "image-pull-error"
READY_DELAY = ANNOTATION_PREFIX + "ready-delay-seconds"
ERROR_RATE = ANNOTATION_PREFIX + "error-rate"
LATENCY_MS = ANNOTATION_PREFIX + "latency-ms"
JOB_DURATION = ANNOTATION_PREFIX + "job-duration-seconds"
JOB_FAIL = ANNOTATION_PREFIX + "job-fail"
JOB_LOG = ANNOTATION_PREFIX + "job-log"
LOG = ANNOTATION_PREFIX + "log"  # what the `log` subresource serves


# Seconds from scheduling to a running container (image pull + create) when the pod is not slower anyway.
CONTAINER_START = 0.5
CRASH_RUN_SECONDS = 1.0  # how long a crash-looping container runs before it exits
BACKOFF_START, BACKOFF_CAP = 10.0, 300.0  # the kubelet's restart back-off
ERR_IMAGE_PULL_SECONDS = 2.0  # ErrImagePull shows this long before the kubelet backs off
DEFAULT_LATENCY_MS = 5.0
DEFAULT_JOB_SECONDS = 2.0



def _flag(annotations: Mapping[str, str], key: str) -> bool:
    return str(annotations.get(key, "")).strip().lower() in ("true", "1", "yes")


def _number(annotations: Mapping[str, str], key: str, default: float, lo: float = 0.0, hi: float = math.inf) -> float:
    try:
        value = float(annotations[key])
    except (KeyError, TypeError, ValueError):
        return default
    if math.isnan(value):
        return default
    return min(max(value, lo), hi)


@dataclass(frozen=True)
class PodBehaviour:
    """What a pod's annotations ask the simulator to do to it."""

    ready_delay: float
    never_ready: bool = False
    crash_loop: bool = False
    image_pull_error: bool = False
    error_rate: float = 0.0
    latency_ms: float = DEFAULT_LATENCY_MS
    job_duration: float = DEFAULT_JOB_SECONDS
    job_fail: bool = False

    @classmethod
    def of(cls, annotations: Mapping[str, str] | None, default_ready_delay: float) -> PodBehaviour:
        a = annotations or {}
        return cls(
            ready_delay=_number(a, READY_DELAY, default_ready_delay),
            never_ready=_flag(a, NEVER_READY),
            crash_loop=_flag(a, CRASH_LOOP),
            image_pull_error=_flag(a, IMAGE_PULL_ERROR),
            error_rate=_number(a, ERROR_RATE, 0.0, 0.0, 1.0),
            latency_ms=_number(a, LATENCY_MS, DEFAULT_LATENCY_MS),
            job_duration=_number(a, JOB_DURATION, DEFAULT_JOB_SECONDS),
            job_fail=_flag(a, JOB_FAIL),
        )


@dataclass(frozen=True)
class PodState:
    """The observable state of a pod at one age; `next_change` is the age at which it changes next."""

    phase: str
    running: bool = False
    ready: bool = False
    restart_count: int = 0
    waiting: str | None = None  # ContainerCreating, ErrImagePull, ImagePullBackOff, CrashLoopBackOff
    backoff: float = 0.0  # the restart back-off being waited out, for the CrashLoopBackOff message
    terminated_code: int | None = None  # exit code of the container, for completed pods
    crashed_before: bool = False  # lastState.terminated is set
    ready_at: float | None = None  # age at which the pod became Ready
    next_change: float = math.inf

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.phase, self.running, self.ready, self.restart_count, self.waiting, self.terminated_code,
                self.crashed_before)


def lifecycle(b: PodBehaviour, age: float, run_to_completion: bool = False) -> PodState:
    """The state a real node would show for a pod of this behaviour, `age` simulated seconds after scheduling."""
    start = min(CONTAINER_START, b.ready_delay)
    if b.image_pull_error:
        if age < start:
            return PodState("Pending", waiting="ContainerCreating", next_change=start)
        if age < start + ERR_IMAGE_PULL_SECONDS:
            return PodState("Pending", waiting="ErrImagePull", next_change=start + ERR_IMAGE_PULL_SECONDS)
        return PodState("Pending", waiting="ImagePullBackOff")
    if age < start:
        return PodState("Pending", waiting="ContainerCreating", next_change=start)
    if run_to_completion:
        end = start + (CRASH_RUN_SECONDS if b.crash_loop else b.job_duration)
        if age < end:
            # A container without a readiness probe is ready while it runs.
            return PodState("Running", running=True, ready=True, ready_at=start, next_change=end)
        failed = b.job_fail or b.crash_loop
        return PodState("Failed" if failed else "Succeeded", terminated_code=1 if failed else 0)
    if b.crash_loop:
        # Runs a moment, exits 1, waits out a doubling back-off, restarts: restartCount climbs ever slower.
        t, restarts, backoff = start, 0, BACKOFF_START
        while True:
            crash = t + CRASH_RUN_SECONDS
            if age < crash:
                return PodState("Running", running=True, restart_count=restarts, crashed_before=restarts > 0,
                                next_change=crash)
            restart = crash + backoff
            if age < restart:
                return PodState("Running", restart_count=restarts, waiting="CrashLoopBackOff", backoff=backoff,
                                crashed_before=True, next_change=restart)
            t, restarts, backoff = restart, restarts + 1, min(backoff * 2, BACKOFF_CAP)
    if b.never_ready:
        return PodState("Running", running=True)
    if age < b.ready_delay:
        return PodState("Running", running=True, next_change=b.ready_delay)
    return PodState("Running", running=True, ready=True, ready_at=b.ready_delay)
