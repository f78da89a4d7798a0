"""The report the demo ends with: `deployflow report`'s table and charts, for the demo's own releases only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import deployflow.demo_report as demo_report
from deployflow.demo_report import demo_releases, show_report
from deployflow.report import Release

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def release(app: str, run_id: str, start: int, seconds: int, outcome: str = "succeeded", reason: str = "",
            strategy: str = "canary") -> Release:
    began = T0 + timedelta(seconds=start)
    return Release(workflow_id=f"deploy/sim/demo/{app}", run_id=run_id, app=app, strategy=strategy,
                   started=began, finished=began + timedelta(seconds=seconds), outcome=outcome,  # type: ignore[arg-type]
                   reason=reason)


HEADER = ("app", "releases", "success", "change failure", "median", "p95", "MTTR", "per week", "lead time",
          "rollbacks by reason", "by strategy")
FINISHED = [
    release("shop", "s1", 0, 2, strategy="blue-green"),
    release("shop", "s2", 10, 6, strategy="blue-green"),
    release("cart", "c1", 20, 1),
    release("cart", "c2", 30, 24),
    release("cart", "c3", 60, 5, outcome="rolled_back", reason="analysis"),
    release("cart", "c4", 70, 25),  # restores cart 30 s after the rollback ended
]


def test_the_report_shows_each_app_and_all_with_the_dora_figures_and_draws_the_charts(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    plot_path = tmp_path / "report.png"

    report = show_report(console, FINISHED, T0, T0 + timedelta(minutes=2), plot_path)

    out = console.export_text()
    cells = [[c.strip() for c in line.split("│")] for line in out.splitlines() if "│" in line]
    rows = {row[0]: dict(zip(HEADER, row, strict=True)) for row in cells}
    assert set(rows) == {"shop", "cart", "all"}
    assert [rows["cart"][c] for c in ("releases", "success", "change failure", "MTTR", "rollbacks by reason")] \
        == ["4", "75%", "25%", "30s", "analysis 1"]
    assert [rows["shop"][c] for c in ("releases", "success", "change failure", "MTTR")] == ["2", "100%", "0%", "-"]
    assert [rows["all"][c] for c in ("releases", "success", "change failure", "p95")] == ["6", "83%", "17%", "25s"]
    assert report.overall.mttr_seconds == 30
    assert plot_path.read_bytes().startswith(b"\x89PNG")
    assert f"charts: {plot_path.resolve()}" in out.replace("\n", "")


def test_no_finished_release_says_so_and_draws_nothing(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    show_report(console, [], T0, T0 + timedelta(minutes=1), tmp_path / "report.png")
    assert "no finished releases to report" in console.export_text()
    assert not (tmp_path / "report.png").exists()


async def test_the_demo_reports_only_its_own_runs_and_waits_for_visibility_to_list_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = release("billing", "elsewhere", 0, 3)
    listings = [[FINISHED[0], other], [*FINISHED, other]]  # the last runs show up in visibility a moment later
    calls: list[datetime] = []

    async def fetch(client: Any, since: datetime, app: str | None = None) -> list[Release]:
        calls.append(since)
        return listings[min(len(calls) - 1, len(listings) - 1)]

    monkeypatch.setattr(demo_report, "fetch_releases", fetch)
    monkeypatch.setattr(demo_report.asyncio, "sleep", _no_sleep)

    got = await demo_releases(object(), T0, {r.run_id for r in FINISHED}, wait=60)

    assert sorted(r.run_id for r in got) == sorted(r.run_id for r in FINISHED)
    assert calls == [T0, T0]


async def test_a_run_visibility_never_lists_is_left_out_once_the_wait_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fetch(client: Any, since: datetime, app: str | None = None) -> list[Release]:
        return FINISHED[:2]

    monkeypatch.setattr(demo_report, "fetch_releases", fetch)
    got = await demo_releases(object(), T0, {"s1", "s2", "missing"}, wait=0)
    assert [r.run_id for r in got] == ["s1", "s2"]


async def _no_sleep(seconds: float) -> None:
    return None
