"""The demo's closing report: the figures `deployflow report` prints, for the releases the demo itself ran.

The releases are read back from Temporal visibility with the command's own functions (deployflow/report.py), so
the demo shows exactly what an operator gets from `deployflow report --plot` after a day of real releases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from deployflow.cli.report import report_table
from deployflow.report import Release, Report, build_report, fetch_releases, plot

# Visibility is updated shortly after a run closes; the report waits this long for the demo's last runs to show.
VISIBILITY_WAIT_SECONDS = 15.0


def show_report(console: Console, releases: Sequence[Release], since: datetime, until: datetime,
                plot_path: Path | None) -> Report:
    """Prints the report table of `releases` (and draws its charts into `plot_path`, printing where)."""
    report = build_report(releases, since, until)
    console.rule("[bold]deployflow report: the demo's releases")
    if not releases:
        console.print("no finished releases to report")
        return report
    console.print(report_table(report))
    if plot_path is not None:
        plot(report, plot_path)
        console.print(f"charts: {plot_path.resolve()}")
    return report


async def demo_releases(client: Any, since: datetime, run_ids: Collection[str],
                        wait: float = VISIBILITY_WAIT_SECONDS) -> list[Release]:
    """The closed releases among `run_ids`, from visibility; waits (bounded) until each of them is listed."""
    deadline = time.monotonic() + wait
    while True:
        releases = [r for r in await fetch_releases(client, since) if r.run_id in run_ids]
        if len(releases) >= len(run_ids) or time.monotonic() > deadline:
            return releases
        await asyncio.sleep(0.5)
