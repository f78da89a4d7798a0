"""`deployflow report`: DORA figures and rollbacks from the releases Temporal has recorded (deployflow/report.py)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deployflow.cli.base import app, console, run_async
from deployflow.cli.client import connect_client
from deployflow.report import Report, Summary, build_report, fetch_releases, parse_since, plot


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _row(name: str, s: Summary) -> list[str]:
    return [
        name, str(s.releases), _rate(s.success_rate), _rate(s.change_failure_rate),
        _duration(s.median_duration_seconds), _duration(s.p95_duration_seconds), _duration(s.mttr_seconds),
        f"{s.per_week:.1f}", _duration(s.median_lead_time_seconds), _counts(s.rollbacks_by_reason),
        _counts(s.rollbacks_by_strategy),
    ]


def report_table(report: Report) -> Table:
    table = Table(show_edge=False, title=f"releases {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC")
    for col in ("app", "releases", "success", "change failure", "median", "p95", "MTTR", "per week", "lead time",
                "rollbacks by reason", "by strategy"):
        table.add_column(col)
    for name, summary in report.apps.items():
        table.add_row(*_row(name, summary))
    if len(report.apps) != 1:
        table.add_row(*_row("all", report.overall), style="bold")
    return table


@app.command("report")
def report_cmd(
    since: Annotated[str, typer.Option(help="how far back: 30d, 12h, 2w")] = "30d",
    app_name: Annotated[str | None, typer.Option("--app", help="only this app")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="also draw the charts into this PNG file")] = None,
) -> None:
    """Success rate, durations, change failure rate, MTTR, frequency, lead time and rollbacks, per app and overall."""
    try:
        window = parse_since(since)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--since") from None
    until = datetime.now(UTC)

    async def go() -> None:
        client = await connect_client()
        releases = await fetch_releases(client, until - window, app_name)
        report = build_report(releases, until - window, until)
        if plot_path is not None:
            plot(report, plot_path)
        if json_out:
            sys.stdout.write(report.model_dump_json(indent=2) + "\n")
            return
        if not releases:
            console.print("no finished releases in this window")
            return
        console.print(report_table(report))
        if plot_path is not None:
            console.print(f"charts: {plot_path}")

    run_async(go)
