"""The worker's Prometheus metrics: what releases did (counted once each) and where the running ones are now.

Counters and histograms are emitted by workflow code (workflows/release_metrics.py) only when a phase change runs
for the first time, never while a worker replays history, so a release that one worker started and another finished
is counted once. Gauges of the present (releases in flight, the last analysis measurement) are read at scrape time
from the runs this worker holds, replayed or not: after a worker dies the run's phase shows on the worker that took
it over, and a run evicted from the cache drops out when its instance is collected.

Served on DEPLOYFLOW_METRICS_PORT (default 9464, 0 disables) by `serve`; the Temporal SDK's own `temporal_*`
metrics on DEPLOYFLOW_SDK_METRICS_PORT (default 9465) through `sdk_runtime`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from deployflow.status import DeploymentStatus, Measurement, Phase

log = logging.getLogger("deployflow.metrics")

METRICS_PORT_ENV = "DEPLOYFLOW_METRICS_PORT"
SDK_METRICS_PORT_ENV = "DEPLOYFLOW_SDK_METRICS_PORT"
DEFAULT_METRICS_PORT = 9464
DEFAULT_SDK_METRICS_PORT = 9465

FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED})

# Releases take seconds in a test and hours behind a manual gate or a long bake.
DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)
ROLLBACK_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)

ROLLBACK_REASONS = ("analysis", "smoke_test", "health", "abort", "cancel", "hook", "post_promotion", "other")

RELEASES = Counter(
    "deployflow_releases_total", "Releases that ended, by outcome", ["strategy", "namespace", "app", "outcome"]
)
RELEASE_DURATION = Histogram(
    "deployflow_release_duration_seconds",
    "Time from the start of a release to its end",
    ["strategy", "outcome"],
    buckets=DURATION_BUCKETS,
)
ROLLBACKS = Counter("deployflow_rollbacks_total", "Rollbacks, by the class of their reason", ["strategy", "reason"])
ROLLBACK_DURATION = Histogram(
    "deployflow_rollback_duration_seconds",
    "Time from the decision to roll back to the previous version serving again",
    ["strategy"],
    buckets=ROLLBACK_BUCKETS,
)

# Order matters: an abort or a cancel is the operator's decision whatever the release was doing; then the step
# that failed. Patterns match the reasons the strategies write (workflows/failure.py explain() and the activities'
# messages).
_REASON_PATTERNS: Sequence[tuple[str, re.Pattern[str]]] = (
    ("abort", re.compile(r"\baborted\b", re.I)),
    ("cancel", re.compile(r"\bcancel", re.I)),
    ("smoke_test", re.compile(r"smoke", re.I)),
    ("hook", re.compile(r"\bhooks?\b|HookFailed|HookTimedOut", re.I)),
    ("analysis", re.compile(r"analysis|measurement", re.I)),
    (
        "health",
        re.compile(
            r"CrashLoop|ImagePull|ErrImage|InvalidImage|CreateContainer|ProgressDeadline|unhealthy|not ready|"
            r"failing|health|timed out",
            re.I,
        ),
    ),
)


def rollback_reason(reason: str, *, after_promotion: bool = False, failed_measurement: bool = False) -> str:
    """The short class of a rollback reason, one of ROLLBACK_REASONS (a label, so a handful of values only)."""
    for name, pattern in _REASON_PATTERNS[:2]:
        if pattern.search(reason):
            return name
    if after_promotion:
        return "post_promotion"
    for name, pattern in _REASON_PATTERNS[2:]:
        if pattern.search(reason):
            return name
    return "analysis" if failed_measurement else "other"


def deciding_measurement(measurements: Iterable[Measurement]) -> Measurement | None:
    """The last failed measurement: the one that made the release roll back, when analysis did."""
    failed = [m for m in measurements if m.verdict == "Failed"]
    return failed[-1] if failed else None


def describe_measurement(m: Measurement) -> str:
    value = "no data" if m.value is None else f"{m.value:g}"
    condition = f" (condition {m.condition})" if m.condition else ""
    return f"{m.metric} = {value}{condition}: {m.verdict}"


OUTCOMES = ("succeeded", "rolled_back", "failed")


def prepare(status: DeploymentStatus) -> None:
    """Creates a release's series at 0 while it runs, so that rate() and increase() see its end as a rise from 0
    (a series born at 1 shows no increase)."""
    for outcome in OUTCOMES:
        RELEASES.labels(status.strategy, status.namespace, status.app, outcome)
        RELEASE_DURATION.labels(status.strategy, outcome)
    for reason in ROLLBACK_REASONS:
        ROLLBACKS.labels(status.strategy, reason)
    ROLLBACK_DURATION.labels(status.strategy)


def record_release(
    status: DeploymentStatus, outcome: str, seconds: float, rollback: tuple[str, float] | None = None
) -> None:
    """Counts one finished release (and its rollback: reason class and seconds). Call once per release."""
    RELEASES.labels(status.strategy, status.namespace, status.app, outcome).inc()
    RELEASE_DURATION.labels(status.strategy, outcome).observe(max(seconds, 0.0))
    if rollback is not None:
        reason, rollback_seconds = rollback
        ROLLBACKS.labels(status.strategy, reason).inc()
        ROLLBACK_DURATION.labels(status.strategy).observe(max(rollback_seconds, 0.0))


class HasStatus(Protocol):
    @property
    def status(self) -> DeploymentStatus: ...


class LiveReleases(Collector):
    """`deployflow_releases_in_flight{strategy,phase}` and `deployflow_analysis_measurement{metric,app,version}`,
    read at scrape time from the runs this worker holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, weakref.ref[HasStatus]] = {}
        self._last: dict[tuple[str, str, str], float] = {}

    def track(self, run_id: str, owner: HasStatus) -> None:
        """Follows a run until it reaches a final phase or its instance is collected (evicted from the cache)."""
        with self._lock:
            ref = self._runs.get(run_id)
            if ref is None or ref() is not owner:
                self._runs[run_id] = weakref.ref(owner)

    def finished(self, run_id: str, status: DeploymentStatus) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
            self._fold(status)

    def _fold(self, status: DeploymentStatus) -> None:
        latest: dict[str, Measurement] = {}
        for m in list(status.measurements):
            if m.value is not None:
                latest[m.metric] = m
        for metric, m in latest.items():
            assert m.value is not None
            self._last[(metric, status.app, status.version)] = m.value

    def _statuses(self) -> list[DeploymentStatus]:
        with self._lock:
            alive: list[DeploymentStatus] = []
            for run_id, ref in list(self._runs.items()):
                owner = ref()
                if owner is None:
                    del self._runs[run_id]
                    continue
                status = owner.status
                self._fold(status)
                if status.phase in FINAL_PHASES:
                    del self._runs[run_id]
                else:
                    alive.append(status)
            return alive

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily(
            "deployflow_releases_in_flight", "Releases running on this worker, by phase", labels=["strategy", "phase"]
        )
        counts: dict[tuple[str, str], int] = {}
        for status in self._statuses():
            key = (status.strategy, status.phase.value)
            counts[key] = counts.get(key, 0) + 1
        for (strategy, phase), count in sorted(counts.items()):
            in_flight.add_metric([strategy, phase], count)
        yield in_flight
        last = GaugeMetricFamily(
            "deployflow_analysis_measurement",
            "The last value each analysis metric measured, by app and version",
            labels=["metric", "app", "version"],
        )
        with self._lock:
            for (metric, app, version), value in sorted(self._last.items()):
                last.add_metric([metric, app, version], value)
        yield last


LIVE = LiveReleases()
REGISTRY.register(LIVE)


def port_from_env(name: str, default: int) -> int:
    """A port from the environment; 0 disables. A value that is not a port fails naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a port number (0 disables)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{name}={raw!r} is not a port number (0 disables)")
    return port


def serve(port: int, addr: str = "0.0.0.0") -> object | None:
    """Serves /metrics on `port` (0: not at all). A port already taken is logged, not fatal: a worker without its
    metrics still deploys. Returns the server, whose `shutdown()` stops it."""
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as err:
        log.error("metrics not served: port %d: %s (set %s, 0 disables)", port, err, METRICS_PORT_ENV)
        return None
    log.info("metrics on http://%s:%d/metrics", addr, port)
    return server
