"""One fault scenario: apps already running their first version, new releases of them started together, a fault
driver hurting the stack while they run, then every release judged from outside."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from deployflow.status import Phase
from tests.faults import releases as R
from tests.faults.checks import TrafficMark, check_release, traffic_mark
from tests.faults.report import FaultReport
from tests.faults.stack import FaultStack, Workers

BASELINE_TIMEOUT = 180.0  # bounds a hang of a first release; not a speed assertion


@dataclass
class Pair:
    """An app's first release (None: it runs as examples/manifests has it) and the release under faults."""

    first: R.Release | None
    release: R.Release

    @property
    def previous_version(self) -> str:
        return self.first.version if self.first is not None else "1.0.0"


Driver = Callable[[list[R.Release]], Awaitable[None]]


def one_of_each(prefix: str, router: str, prometheus_url: str | None, ready_delay: float) -> list[Pair]:
    """A blue-green, a rolling and (with Prometheus) a canary release, each in its namespace `<prefix>-<kind>`,
    their pods `ready_delay` simulated seconds from ready so that faults can land in their health waits."""
    pairs = [Pair(R.bluegreen(f"{prefix}-bg", "1.0.0", standby="0s"),
                  R.bluegreen(f"{prefix}-bg", "2.0.0", standby="2s", ready_delay=ready_delay)),
             Pair(None, R.rolling(f"{prefix}-rolling", "2.0.0", ready_delay=ready_delay))]
    if prometheus_url:
        pairs.append(Pair(R.canary(f"{prefix}-canary", "1.0.0", router, prometheus_url=prometheus_url),
                          R.canary(f"{prefix}-canary", "2.0.0", router, prometheus_url=prometheus_url,
                                   ready_delay=ready_delay)))
    return pairs


async def run_scenario(stack: FaultStack, workers: Workers, report: FaultReport, title: str, pairs: list[Pair],
                       driver: Driver, timeout: float, min_faults: int = 1, min_mid_activity: int = 0) -> None:
    """Runs the scenario and fails with every release that did not end as its inputs dictate, or that ended
    before `min_faults` faults hit it (`min_mid_activity` of them while one of its activities ran)."""
    client = await stack.client()
    report.section(title)
    await asyncio.gather(*(_baseline(stack, workers, pair) for pair in pairs))
    marks: dict[str, TrafficMark] = {}
    for pair in pairs:
        marks[pair.release.namespace] = await traffic_mark(stack.sim_url, pair.release.namespace)
        await R.start(client, pair.release, workers.task_queue)
    releases = [pair.release for pair in pairs]
    began = time.monotonic()
    ends = asyncio.ensure_future(asyncio.gather(*(R.outcome(r, timeout) for r in releases)))
    driving = asyncio.ensure_future(driver(releases))
    # The driver stops once every release has ended; when it fails first (a check of its own, a worker that would
    # not start), waiting for the releases is pointless.
    tasks: tuple[asyncio.Future[Any], asyncio.Future[Any]] = (driving, ends)
    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task, other in (tasks, tasks[::-1]):
        if task.done() and task.exception() is not None:
            other.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await other
            report.add(f"FAILED: {str(task.exception()).splitlines()[0][:400]}")
            await task  # raises its failure
    await driving
    await ends
    if workers.current is None:
        await workers.start()  # the final checks query the runs, which needs a worker
    problems: list[str] = []
    for pair in pairs:
        r = pair.release
        found = await check_release(stack.kubeconfig, stack.sim_url, r, pair.previous_version, marks[r.namespace])
        if r.kills < min_faults:
            found.append(f"{r.label}: only {r.kills} faults hit it while it ran, the scenario needs {min_faults}")
        if r.mid_activity < min_mid_activity:
            found.append(f"{r.label}: {r.mid_activity} faults hit it while an activity ran, the scenario needs "
                         f"{min_mid_activity}")
        problems += found
        verdict = "as expected" if not found else "NOT as expected"
        phase = r.status.phase if r.status else "?"
        report.add(f"{r.label}: {phase} {verdict} after {r.seconds:.0f}s; faults while it ran: {r.kills} "
                   f"({r.mid_activity} while one of its activities ran); "
                   + "; ".join(r.notes))
    report.add(f"scenario took {time.monotonic() - began:.0f}s after the baseline releases")
    report.lines += [f"  FAILED: {p}" for p in problems]
    assert not problems, "\n".join(problems)


async def _baseline(stack: FaultStack, workers: Workers, pair: Pair) -> None:
    """The app as it runs before the release under test: its namespace, and its first version, without faults."""
    await R.prepare_namespace(stack.kubeconfig, pair.release.namespace, pair.release.strategy)
    if pair.first is None:
        return
    client = await stack.client()
    await R.start(client, pair.first, workers.task_queue)
    await R.outcome(pair.first, BASELINE_TIMEOUT)
    phase = pair.first.status.phase if pair.first.status else None
    assert phase == Phase.SUCCEEDED and not pair.first.failure, (
        f"{pair.first.label} (the app's first version, no faults yet) ended {phase}: {pair.first.failure}"
    )


async def sleep_while_running(releases: list[R.Release], seconds: float) -> bool:
    """Sleeps up to `seconds`, less when every release has ended; True while any still runs."""
    deadline = time.monotonic() + seconds
    while any(r.running for r in releases) and time.monotonic() < deadline:
        await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    return any(r.running for r in releases)


async def open_gates(releases: list[R.Release], ready: Callable[[R.Release], bool] = lambda r: True) -> None:
    """Sends `promote` to every gated release that waits at its gate and that `ready` lets through."""
    for r in releases:
        if r.gated and r.running and not r.promoted and ready(r):
            await R.promote_when_waiting(r)


async def hit(releases: list[R.Release], workers: Workers) -> str:
    """Counts a fault against every running release, noting which had an activity running on the current worker
    (from the server's pending activities: what the fault interrupts); returns where each one was."""
    running = [r for r in releases if r.running]
    pid = workers.current.proc.pid if workers.current else None
    moments = await asyncio.gather(*(R.where(r, pid) for r in running))
    for r, m in zip(running, moments, strict=True):
        r.kills += 1
        r.mid_activity += m.running_activity
    return "; ".join(f"{r.label}: {m.describe()}" for r, m in zip(running, moments, strict=True))
