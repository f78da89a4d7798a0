"""A real Prometheus (the Debian package) scraping the simulator: the analysis catches a 20%-error canary and
passes a healthy one, with the same PromQL a real cluster would get."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.analysis import MeasureInput, measure
from activities.traffic import RoutingRequest, TrackRequest, WeightRequest, deploy_track, prepare_routing, set_weight
from deployflow.prometheus import PrometheusServer, prometheus_binary, scrape_config
from deployflow.security.outbound import ALLOWED_HOSTS_SETTING
from deployflow.sim.server import Simulator
from deployflow.spec.analysis import Metric
from deployflow.spec.canary import DEFAULT_ERROR_RATE_QUERY, TrafficRouting
from deployflow.spec.common import Target, Workload

pytestmark = pytest.mark.prometheus

needs_prometheus = pytest.mark.skipif(prometheus_binary() is None, reason="prometheus is not installed")


def test_scrape_config_takes_targets_from_urls() -> None:
    config = scrape_config(["http://127.0.0.1:8001/metrics", "127.0.0.1:9100"], interval_seconds=1)
    jobs = config["scrape_configs"]
    assert [j["static_configs"][0]["targets"] for j in jobs] == [["127.0.0.1:8001"], ["127.0.0.1:9100"]]
    assert [j["metrics_path"] for j in jobs] == ["/metrics", "/metrics"]
    assert jobs[0]["scrape_interval"] == "1000ms" and jobs[0]["scrape_timeout"] == "900ms"


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


@needs_prometheus
def test_prometheus_scrapes_the_simulator(prometheus: PrometheusServer) -> None:
    data = prometheus.wait_for_series('up{job="target-0"} == 1')
    assert data["result"][0]["value"][1] == "1"
    assert httpx.get(f"{prometheus.url}/-/ready").status_code == 200


@needs_prometheus
def test_stop_ends_the_process(sim: Simulator) -> None:
    server = PrometheusServer([f"{sim.url}/metrics"]).start()
    process = server.process
    assert process is not None and process.poll() is None
    server.stop()
    assert process.poll() is not None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/-/ready", timeout=1)


async def run(fn: object, arg: object) -> object:
    return await ActivityEnvironment().run(fn, arg)  # type: ignore[arg-type]


@needs_prometheus
async def test_analysis_catches_a_failing_canary_and_passes_a_healthy_one(
    prometheus: PrometheusServer, namespace: str
) -> None:
    target = Target(cluster="sim", namespace=namespace, app="web")
    traffic = TrafficRouting(router="replicas")
    await run(deploy_track, TrackRequest(target=target, track="stable", workload=Workload(image="web:v1"),
                                         replicas=4, timeout_seconds=30))
    await run(prepare_routing, RoutingRequest(target=target, traffic=traffic))
    # v2 answers 20% of its requests with a 500; v3 is healthy.
    broken = Workload(image="web:v2", pod_annotations={"sim.deployflow.io/error-rate": "0.2"})
    await run(deploy_track, TrackRequest(target=target, track="canary", workload=broken, replicas=0, wait=False))
    await run(set_weight, WeightRequest(target=target, traffic=traffic, weight=50, replicas=4, timeout_seconds=30))

    metric = Metric.model_validate({
        "name": "error_rate",
        "provider": {"kind": "prometheus", "address": prometheus.url,
                     "query": DEFAULT_ERROR_RATE_QUERY.replace("[30s]", "[5s]")},
        "failure_condition": "result > max(2 * baseline, 0.02)",
        "baseline": True,
    })
    errors = f'http_requests_total{{namespace="{namespace}",version="v2",code=~"5.."}}'
    prometheus.wait_for_series(f"rate({errors}[5s]) > 0")
    prometheus.wait_for_series(f'rate(http_requests_total{{namespace="{namespace}",version="v1"}}[5s]) > 0')

    judged = await run(measure, MeasureInput(target=target, metric=metric, version="v2", baseline_version="v1"))
    assert judged.verdict == "Failed", judged  # type: ignore[attr-defined]
    assert 0.1 < judged.value < 0.3, judged  # type: ignore[attr-defined]
    assert judged.message.startswith("error_rate 0.")  # type: ignore[attr-defined]

    healthy = Workload(image="web:v3")
    await run(deploy_track, TrackRequest(target=target, track="canary", workload=healthy, replicas=2,
                                         timeout_seconds=30))
    prometheus.wait_for_series(f'rate(http_requests_total{{namespace="{namespace}",version="v3"}}[5s]) > 0')
    judged = await run(measure, MeasureInput(target=target, metric=metric, version="v3", baseline_version="v1"))
    assert judged.verdict == "Successful", judged  # type: ignore[attr-defined]
    assert judged.value == 0.0  # type: ignore[attr-defined]

    # A version nobody serves has no series at all: no data, never a pass.
    judged = await run(measure, MeasureInput(target=target, metric=metric, version="v9", baseline_version="v1"))
    assert judged.verdict == "Inconclusive" and "no data" in judged.message  # type: ignore[attr-defined]
