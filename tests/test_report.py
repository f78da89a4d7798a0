"""The release report: figures from releases with known outcomes and durations, and one run against real releases."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from deployflow.report import Release, build_report, parse_since, percentile, plot, restore_times, weekly_counts
from deployflow.spec.control import AbortRequest
from deployflow.status import Phase
from tests.bluegreen_support import bluegreen_request, running_worker, start, wait_for

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rel(app: str, day: float, minutes: float, outcome: str = "succeeded", *, strategy: str = "canary",
        reason: str = "", committed_hours_before: float | None = None) -> Release:
    started = T0 + timedelta(days=day)
    finished = started + timedelta(minutes=minutes)
    committed = None if committed_hours_before is None else started - timedelta(hours=committed_hours_before)
    return Release(workflow_id=f"deploy/c/n/{app}", app=app, strategy=strategy, started=started, finished=finished,
                   outcome=outcome, reason=reason, committed_at=committed)  # type: ignore[arg-type]


RELEASES = [
    rel("shop", 0, 10, committed_hours_before=2),
    rel("shop", 1, 20, "rolled_back", reason="analysis"),
    rel("shop", 1.5, 5, "failed"),  # the same incident: shop stays down until the next success
    rel("shop", 2, 30, committed_hours_before=4),
    rel("cart", 3, 4, strategy="blue-green"),
    rel("cart", 4, 6, "rolled_back", strategy="blue-green", reason="smoke_test"),
    rel("cart", 8, 8, strategy="blue-green"),
    rel("cart", 9, 2, "rolled_back", strategy="blue-green", reason="abort"),  # not restored yet
]


def test_figures_per_app_and_overall() -> None:
    report = build_report(RELEASES, T0, T0 + timedelta(days=14))
    shop, cart, overall = report.apps["shop"], report.apps["cart"], report.overall
    assert (shop.releases, shop.succeeded, shop.rolled_back, shop.failed) == (4, 2, 1, 1)
    assert shop.success_rate == 0.5 and shop.change_failure_rate == 0.5
    assert shop.median_duration_seconds == 15 * 60  # of 5, 10, 20, 30 minutes
    assert shop.p95_duration_seconds == 30 * 60
    # Incident from the end of the rollback (day 1 + 20 min) to the end of the next success (day 2 + 30 min).
    assert shop.incidents == 1 and shop.mttr_seconds == timedelta(days=1, minutes=10).total_seconds()
    # Lead time: commit to the end of the release, 2h10m and 4h30m.
    assert shop.median_lead_time_seconds == timedelta(hours=3, minutes=20).total_seconds()
    assert cart.incidents == 1 and cart.mttr_seconds == timedelta(days=4, minutes=2).total_seconds()
    assert cart.rollbacks_by_reason == {"abort": 1, "smoke_test": 1}
    assert overall.releases == 8 and overall.per_week == 4.0
    assert overall.rollbacks_by_reason == {"abort": 1, "analysis": 1, "smoke_test": 1}
    assert overall.rollbacks_by_strategy == {"blue-green": 2, "canary": 1}
    assert overall.change_failure_rate == 0.5
    assert overall.mttr_seconds == (shop.mttr_seconds + cart.mttr_seconds) / 2
    assert [r.finished for r in report.releases] == sorted(r.finished for r in RELEASES)


def test_an_empty_window_has_no_rates() -> None:
    report = build_report([], T0, T0 + timedelta(days=7))
    assert report.overall.releases == 0 and report.overall.success_rate is None and report.apps == {}
    assert report.overall.mttr_seconds is None and report.overall.p95_duration_seconds is None


def test_helpers() -> None:
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == 10
    assert percentile([3, 1, 2], 50) == 2
    assert restore_times([rel("a", 0, 1, "failed"), rel("a", 1, 1, "failed")]) == []
    assert [c for _, c in weekly_counts(RELEASES, T0, T0 + timedelta(days=14))] == [6, 2]
    assert parse_since("30d") == timedelta(days=30) and parse_since("2w") == timedelta(weeks=2)
    with pytest.raises(ValueError, match="'thirty': expected a positive number"):
        parse_since("thirty")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "report.png"
    plot(build_report(RELEASES, T0, T0 + timedelta(days=14)), path)
    assert path.read_bytes()[:8] == PNG_MAGIC


async def _listed(client: object, query: str, count: int) -> None:
    """Visibility is eventually consistent: wait until it lists `count` runs (a hang guard, not a timing assert)."""
    for _ in range(300):
        if len([wf async for wf in client.list_workflows(query)]) >= count:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"visibility never listed {count} runs for {query}")


async def test_report_of_real_releases(
    dev_env: WorkflowEnvironment, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    client = dev_env.client
    committed = datetime.now(UTC) - timedelta(hours=1)
    source = {"commit": "a1b2c3d", "committed_at": committed.isoformat()}
    async with running_worker(client) as queue:
        first = await start(client, queue, bluegreen_request(namespace, "1.0", standby="0s", source=source))
        await first.result()
        manual = {"promotion": {"mode": "manual", "timeout": "10m"}, "standby": "0s"}
        bad = await start(client, queue, bluegreen_request(namespace, "2.0", **manual))
        await wait_for(bad, lambda s: s.phase == Phase.WAITING_PROMOTION, "the promotion gate")
        await bad.execute_update("abort", AbortRequest(reason="wrong build"))
        with pytest.raises(WorkflowFailureError):
            await bad.result()
        fixed = await start(client, queue, bluegreen_request(namespace, "2.1", standby="0s"))
        await fixed.result()
    await _listed(client, f"DeployNamespace = '{namespace}' AND ExecutionStatus != 'Running'", 3)

    png = tmp_path / "report.png"
    env = {**os.environ, "TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "TEMPORAL_NAMESPACE": client.namespace}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deployflow.cli", "report", "--since", "1d", "--app", "web", "--json", "--plot",
        str(png), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    data = json.loads(out)
    mine = [r for r in data["releases"] if r["workflow_id"] == f"deploy/sim/{namespace}/web"]
    assert [(r["version"], r["outcome"], r["reason"]) for r in mine] == [
        ("1.0", "succeeded", ""), ("2.0", "rolled_back", "abort"), ("2.1", "succeeded", "")]
    assert "wrong build" in mine[1]["message"]
    lead = datetime.fromisoformat(mine[0]["finished"]) - datetime.fromisoformat(mine[0]["committed_at"])
    assert lead >= timedelta(hours=1)
    assert data["apps"]["web"]["rollbacks_by_reason"].get("abort", 0) >= 1
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_the_table_shows_each_app_and_the_total() -> None:
    from rich.console import Console

    from deployflow.cli.report import report_table

    console = Console(record=True, width=250)
    console.print(report_table(build_report(RELEASES, T0, T0 + timedelta(days=14))))
    lines = {line.split()[0]: line for line in console.export_text().splitlines() if line.strip()}
    assert "50%" in lines["shop"] and "24.2h" in lines["shop"]  # success rate, MTTR of 1 day 10 minutes
    assert "analysis 1" in lines["shop"] and "canary 1" in lines["shop"]
    assert lines["all"].split("│")[1].strip() == "8"
    assert "4.0d" in lines["cart"]  # restored after 4 days


def test_a_spec_names_its_commit_or_is_refused_naming_the_field() -> None:
    from pydantic import ValidationError

    ok = bluegreen_request("n", source={"commit": "3f2c9ab", "committed_at": "2026-11-30T14:02:00Z"})
    assert ok.source is not None and ok.source.committed_at == datetime(2026, 11, 30, 14, 2, tzinfo=UTC)
    with pytest.raises(ValidationError, match="source.commit"):
        bluegreen_request("n", source={"commit": "$(rm -rf /)"})
