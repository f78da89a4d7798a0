"""The observed split: the share of requests each version really answered, read from the Prometheus the release
already measures with, shown beside the requested and the actual split."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from deployflow.cli.output import traffic_rows
from deployflow.prometheus import PrometheusServer, prometheus_binary
from deployflow.security.outbound import ALLOWED_HOSTS_SETTING
from deployflow.sim.server import Simulator
from deployflow.spec.canary import DEFAULT_ERROR_RATE_QUERY, DEFAULT_OBSERVED_QUERY, CanaryRequest
from deployflow.spec.control import PromoteRequest
from deployflow.status import DeploymentStatus, Phase, TrafficStep, traffic_text
from tests.canary_support import Release, analysis_step, replays

# The tests' queries look back less than 30 s, so a step need not hold half a minute; the observed one reaches
# back past the moment the weight was set, so it holds the canary's first sample.
WINDOW = "[10s]"
OBSERVED_WINDOW = "[15s]"


@pytest.fixture(autouse=True)
def local_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus listens on loopback, which the worker only fetches when its operator allows it."""
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1")


@pytest.fixture(scope="module")
def prometheus(sim: Simulator) -> Iterator[PrometheusServer]:
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed")
    with PrometheusServer([f"{sim.url}/metrics"]) as server:
        yield server


def prometheus_metric(address: str) -> dict[str, Any]:
    return {
        "name": "error_rate",
        "provider": {"kind": "prometheus", "address": address,
                     "query": DEFAULT_ERROR_RATE_QUERY.replace("[30s]", WINDOW)},
        "failure_condition": "result > 0.5", "initial_delay": "10s",
    }


def status_at(weights: dict[str, int], actual: dict[str, float], observed: dict[str, float]) -> DeploymentStatus:
    return DeploymentStatus(strategy="canary", app="web", namespace="ns", cluster="sim", version="v2",
                            weights=weights, actual_weights=actual, observed_weights=observed)


# --- which Prometheus, and how it is shown ----------------------------------------------------------------------

def test_the_observed_split_reads_the_first_prometheus_at_hand(release: Release) -> None:
    in_analysis = release.spec("v2", steps=[{"set_weight": 5}, {"analysis": {"metrics": [prometheus_metric(
        "http://analysis.example.com:9090")]}}])
    metric = in_analysis.observed_metric()
    assert metric is not None and metric.provider.kind == "prometheus"
    assert metric.provider.address == "http://analysis.example.com:9090"
    assert metric.provider.query == DEFAULT_OBSERVED_QUERY

    # error_rate's own Prometheus comes first.
    body = in_analysis.model_dump(mode="json") | {"error_rate": {"prometheus_address": "http://rate.example.com"}}
    first = CanaryRequest.model_validate(body).observed_metric()
    assert first is not None and first.provider.address == "http://rate.example.com"  # type: ignore[union-attr]

    # None when switched off, or without any Prometheus (the default web provider of these tests).
    off = body | {"traffic": {"observed_query": None}}
    assert CanaryRequest.model_validate(off).observed_metric() is None
    assert release.spec("v2", steps=[{"set_weight": 5}, analysis_step(release)]).observed_metric() is None


def test_the_observed_split_is_shown_beside_the_requested_and_the_actual_one() -> None:
    observed = status_at({"stable": 95, "canary": 5}, {"stable": 87.5, "canary": 12.5},
                         {"stable": 87.9, "canary": 12.1})
    assert traffic_text(observed) == ("stable 95%, canary 5% requested; actual stable 87.5%, canary 12.5%; "
                                      "observed stable 87.9%, canary 12.1%")
    rows = {label: text.plain for label, text in traffic_rows(observed)}
    assert list(rows) == ["traffic set", "traffic actual", "traffic observed"]
    assert rows["traffic observed"].endswith("canary █░░░░░░░░░ 12.1%")

    # Without an actual split the requested one is still labelled as set, so the observed one reads against it.
    only_observed = status_at({"stable": 95, "canary": 5}, {}, {"stable": 94.8, "canary": 5.2})
    assert [label for label, _ in traffic_rows(only_observed)] == ["traffic set", "traffic observed"]
    assert traffic_text(only_observed) == "stable 95%, canary 5%; observed stable 94.8%, canary 5.2%"

    unknown = status_at({"stable": 95, "canary": 5}, {"stable": 95, "canary": 5}, {})
    assert "observed" not in traffic_text(unknown)
    assert [label for label, _ in traffic_rows(unknown)] == ["traffic set", "traffic actual"]
    assert TrafficStep(time=datetime.now(UTC), requested=5).observed is None


# --- on the simulator, with a real Prometheus scraping it -----------------------------------------------------

def held_by(hold: str, address: str) -> dict[str, Any]:
    """Step 2 holds 5% for 10 s or more: an analysis step on Prometheus, or a timed pause in a request whose
    error_rate names Prometheus (for its post-promotion watch, say)."""
    if hold == "analysis":
        return {"steps": [{"set_weight": 5}, {"analysis": {"metrics": [prometheus_metric(address)]}}, {"pause": {}}]}
    return {"steps": [{"set_weight": 5}, {"pause": {"duration": "12s"}}, {"pause": {}}],
            "error_rate": {"prometheus_address": address}}


@pytest.mark.prometheus
@pytest.mark.parametrize(("router", "entry", "actual", "hold"), [
    ("replicas", "service/web", 12.5, "analysis"),
    ("gateway-api", "httproute/web", 5.0, "analysis"),
    ("replicas", "service/web", 12.5, "pause"),
])
async def test_the_status_shows_the_share_of_requests_the_canary_really_answered(
    release: Release, prometheus: PrometheusServer, router: str, entry: str, actual: float, hold: str
) -> None:
    traffic = {"router": router, "observed_query": DEFAULT_OBSERVED_QUERY.replace("[30s]", OBSERVED_WINDOW)}
    handle = await release.start(release.spec("v2", traffic=traffic, **held_by(hold, prometheus.url)))
    await release.wait_for(handle, lambda s: s.step_index == 2)  # the weight is set and held

    # Prometheus counts a series from its first sample: once v2's is in, enough requests to make the split exact
    # within a point or so, answered inside the query's window.
    v2 = f'http_requests_total{{namespace="{release.namespace}",version="v2"}}'
    await asyncio.to_thread(prometheus.wait_for_series, v2)
    served = release.sim.send_requests(release.namespace, entry, 4000)
    assert abs(served["v2"] / 40 - actual) < 3, served

    status = await release.wait_for(handle, lambda s: s.step_index == 3 and bool(s.observed_weights))
    assert status.phase == Phase.WAITING_PROMOTION
    assert status.actual_weights == {"stable": 100 - actual, "canary": actual}
    canary = status.observed_weights["canary"]
    assert abs(canary - actual) < 3, status.observed_weights
    assert status.observed_weights["stable"] == pytest.approx(100 - canary)
    assert status.traffic_history[-1].observed == canary

    # Said in the status line (which notifications carry), the CLI table and the UI's details.
    assert traffic_text(status).endswith(f"; observed stable {100 - canary:.1f}%, canary {canary:.1f}%".replace(
        ".0%", "%"))
    assert status.details["traffic"] == traffic_text(status)
    assert [label for label, _ in traffic_rows(status)][-1] == "traffic observed"
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert f"- traffic: {traffic_text(status)}" in metadata.current_details.splitlines(), metadata.current_details

    await handle.execute_update("promote", PromoteRequest())
    final: DeploymentStatus = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    assert final.observed_weights == {}  # counted at 5%: nothing said of the promoted split
    assert [(t.requested, t.observed) for t in final.traffic_history] == [(5, canary), (100, None)]
    await replays(handle)


async def test_without_prometheus_the_observed_split_is_unknown_and_the_release_succeeds(release: Release) -> None:
    handle = await release.start(release.spec("v2", steps=[{"set_weight": 5}, analysis_step(release)]))
    final: DeploymentStatus = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    assert final.observed_weights == {} and [t.observed for t in final.traffic_history] == [None, None]
    assert "observed" not in final.details["traffic"]
    history = await handle.fetch_history()
    summaries = [e.user_metadata.summary.data for e in history.events if e.user_metadata.HasField("summary")]
    assert summaries and not any(b"observed" in s for s in summaries)
    await replays(handle)
