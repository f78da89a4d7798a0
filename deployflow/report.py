"""The release report behind `deployflow report`: DORA figures and rollbacks, per app and overall.

Records come from Temporal visibility (closed runs with the Deploy* search attributes), each run's failure (the
rollback's reason) and its input (the spec's `source`, for lead time). Everything after fetching is a pure function
of the records, so the figures are tested on releases with known outcomes and durations.

Definitions:
- success rate: succeeded / releases. Change failure rate: (rolled back + failed) / releases.
- MTTR: from the end of a release that failed or rolled back to the end of the next successful release of the same
  app; failures in a row are one incident, timed from the first. Incidents not yet restored are left out.
- frequency: releases per week over the reporting window. Lead time: from `source.committed_at` to the end of the
  successful release that shipped it.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from deployflow.metrics import rollback_reason

Outcome = Literal["succeeded", "rolled_back", "failed"]
FAILURES = ("rolled_back", "failed")


class Release(BaseModel):
    """One finished release, as the report sees it."""

    workflow_id: str
    run_id: str = ""
    app: str
    namespace: str = ""
    strategy: str
    version: str = ""
    started: datetime
    finished: datetime
    outcome: Outcome
    reason: str = Field(default="", description="for a rollback: its class (analysis, smoke_test, health, ...)")
    message: str = ""
    committed_at: datetime | None = None

    @property
    def seconds(self) -> float:
        return max((self.finished - self.started).total_seconds(), 0.0)


class Summary(BaseModel):
    releases: int = 0
    succeeded: int = 0
    rolled_back: int = 0
    failed: int = 0
    success_rate: float | None = None
    change_failure_rate: float | None = None
    median_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None
    mttr_seconds: float | None = None
    incidents: int = 0
    per_week: float = 0.0
    median_lead_time_seconds: float | None = None
    rollbacks_by_reason: dict[str, int] = Field(default_factory=dict)
    rollbacks_by_strategy: dict[str, int] = Field(default_factory=dict)


class Report(BaseModel):
    since: datetime
    until: datetime
    overall: Summary
    apps: dict[str, Summary]
    releases: list[Release]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): a value that occurred, which is what a person expects of p95."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def restore_times(releases: Iterable[Release]) -> list[float]:
    """Seconds from each incident (the first of a run of failed releases of an app) to the next success."""
    by_app: dict[str, list[Release]] = {}
    for r in releases:
        by_app.setdefault(r.app, []).append(r)
    times: list[float] = []
    for app_releases in by_app.values():
        down_since: datetime | None = None
        for r in sorted(app_releases, key=lambda r: r.finished):
            if r.outcome in FAILURES:
                down_since = down_since or r.finished
            elif down_since is not None:
                times.append((r.finished - down_since).total_seconds())
                down_since = None
    return times


def summarize(releases: Sequence[Release], since: datetime, until: datetime) -> Summary:
    n = len(releases)
    outcomes = Counter(r.outcome for r in releases)
    rolled = [r for r in releases if r.outcome == "rolled_back"]
    durations = [r.seconds for r in releases]
    restores = restore_times(releases)
    leads = [
        (r.finished - r.committed_at).total_seconds()
        for r in releases
        if r.outcome == "succeeded" and r.committed_at is not None
    ]
    weeks = max((until - since).total_seconds(), 86400.0) / (7 * 86400)
    return Summary(
        releases=n,
        succeeded=outcomes["succeeded"],
        rolled_back=outcomes["rolled_back"],
        failed=outcomes["failed"],
        success_rate=outcomes["succeeded"] / n if n else None,
        change_failure_rate=(outcomes["rolled_back"] + outcomes["failed"]) / n if n else None,
        median_duration_seconds=statistics.median(durations) if durations else None,
        p95_duration_seconds=percentile(durations, 95),
        mttr_seconds=statistics.fmean(restores) if restores else None,
        incidents=len(restores),
        per_week=n / weeks,
        median_lead_time_seconds=statistics.median(leads) if leads else None,
        rollbacks_by_reason=dict(sorted(Counter(r.reason or "other" for r in rolled).items())),
        rollbacks_by_strategy=dict(sorted(Counter(r.strategy for r in rolled).items())),
    )


def build_report(releases: Sequence[Release], since: datetime, until: datetime) -> Report:
    ordered = sorted(releases, key=lambda r: r.finished)
    apps = sorted({r.app for r in ordered})
    return Report(
        since=since,
        until=until,
        overall=summarize(ordered, since, until),
        apps={app: summarize([r for r in ordered if r.app == app], since, until) for app in apps},
        releases=ordered,
    )


def weekly_counts(releases: Sequence[Release], since: datetime, until: datetime) -> list[tuple[datetime, int]]:
    """Releases per week, from `since` (weeks with none included)."""
    weeks: list[tuple[datetime, int]] = []
    start = since
    while start < until:
        end = start + timedelta(days=7)
        weeks.append((start, sum(1 for r in releases if start <= r.finished < end)))
        start = end
    return weeks


def parse_since(text: str) -> timedelta:
    """`30d`, `12h`, `2w`, `90m`: how far back the report looks."""
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) == 0:
        raise ValueError(f"{text!r}: expected a positive number and a unit, m, h, d or w (e.g. 30d)")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


# --- fetching from Temporal ------------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def fetch_releases(client: Any, since: datetime, app: str | None = None, limit: int = 5000) -> list[Release]:
    """Closed releases since `since` (visibility), with each failure's reason and each spec's source commit."""
    from temporalio.client import WorkflowExecutionStatus

    from deployflow.temporal import DEPLOY_APP, DEPLOY_NAMESPACE, DEPLOY_PHASE, DEPLOY_STRATEGY, DEPLOY_VERSION

    clauses = ["DeployApp IS NOT NULL", "ExecutionStatus != 'Running'", f"CloseTime >= '{since.isoformat()}'"]
    if app:
        clauses.append(f"DeployApp = {_quote(app)}")
    releases: list[Release] = []
    async for wf in client.list_workflows(" AND ".join(clauses), limit=limit):
        if wf.close_time is None:
            continue
        sa = wf.typed_search_attributes
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        phase = sa.get(DEPLOY_PHASE)
        outcome: Outcome = "succeeded"
        message = ""
        if wf.status != WorkflowExecutionStatus.COMPLETED:
            outcome = "rolled_back" if phase == "RolledBack" else "failed"
            message = await _failure_message(handle, wf.status)
        spec = await _input(client, handle)
        releases.append(
            Release(
                workflow_id=wf.id,
                run_id=wf.run_id,
                app=sa.get(DEPLOY_APP) or "",
                namespace=sa.get(DEPLOY_NAMESPACE) or "",
                strategy=sa.get(DEPLOY_STRATEGY) or "",
                version=sa.get(DEPLOY_VERSION) or "",
                started=wf.start_time,
                finished=wf.close_time,
                outcome=outcome,
                reason=rollback_reason(message, after_promotion="after promotion" in message)
                if outcome == "rolled_back"
                else "",
                message=message,
                committed_at=((spec.get("source") or {}).get("committed_at") if isinstance(spec, dict) else None),
            )
        )
    return releases


async def _failure_message(handle: Any, status: Any) -> str:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

    if status == WorkflowExecutionStatus.CANCELED:
        return "cancelled"
    try:
        await handle.result(follow_runs=False)
    except WorkflowFailureError as err:
        cause = err.cause
        return str(getattr(cause, "message", None) or cause)
    except Exception as err:  # a terminated or timed-out run has no failure of its own
        return str(err)
    return ""


async def _input(client: Any, handle: Any) -> Any:
    """The run's spec as JSON (the first event's input), decoded by the client's converter (and codec)."""
    async for event in handle.fetch_history_events(page_size=1):
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        if not payloads:
            return None
        decoded = await client.data_converter.decode(list(payloads), [dict])
        return decoded[0] if decoded else None
    return None


# --- charts ----------------------------------------------------------------------------------------------------------


def plot(report: Report, path: Path) -> None:
    """Three charts in one PNG: duration of each release over time (outcome marked), releases per week, and the
    time to restore of each incident."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI machines
    import matplotlib.pyplot as plt

    fig, (durations, weekly, mttr) = plt.subplots(3, 1, figsize=(10, 11))
    colours = {"succeeded": "tab:green", "rolled_back": "tab:orange", "failed": "tab:red"}
    for outcome, colour in colours.items():
        points = [r for r in report.releases if r.outcome == outcome]
        durations.scatter([r.finished for r in points], [r.seconds for r in points], c=colour, label=outcome)
    durations.set_title("release duration")
    durations.set_ylabel("seconds")
    durations.legend()
    weeks = weekly_counts(report.releases, report.since, report.until)
    weekly.bar([w for w, _ in weeks], [c for _, c in weeks], width=5)
    weekly.set_title("releases per week")
    apps = [app for app, s in report.apps.items() if s.mttr_seconds is not None]
    mttr.set_title("mean time to restore, by app")
    if apps:
        mttr.bar(apps, [(report.apps[a].mttr_seconds or 0) / 60 for a in apps])
        mttr.set_ylabel("minutes")
    else:
        # An empty axis would read as "restored in no time": say there was nothing to measure.
        mttr.set_axis_off()
        mttr.text(0.5, 0.5, "no failed release was followed by a successful one in this window",
                  ha="center", va="center", transform=mttr.transAxes)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
