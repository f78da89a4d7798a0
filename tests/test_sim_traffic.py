"""Simulated traffic: routing by selector and by weight, error and latency injection, no-backend counting."""

from __future__ import annotations

import re

import pytest

from deployflow.sim.resources import HTTPROUTES, INGRESSES, SERVICES, VIRTUALSERVICES
from deployflow.sim.store import Obj, Resource
from deployflow.sim.traffic import NO_BACKEND, _binomial
from tests.sim_support import NS, SimCluster


def _stable_and_canary(cluster: SimCluster, canary_annotations: dict[str, str] | None = None) -> None:
    """Two versions of one app behind a stable and a canary Service, both ready."""
    cluster.deploy("web-stable", "v1", replicas=3)
    cluster.deploy("web-canary", "v2", replicas=1, annotations=canary_annotations)
    cluster.service("web-stable", {"app": "web-stable"})
    cluster.service("web-canary", {"app": "web-canary"})
    cluster.run_until(lambda: cluster.complete("web-stable") and cluster.complete("web-canary"))


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_a_service_routes_by_its_selector() -> None:
    cluster = SimCluster()
    _stable_and_canary(cluster)
    assert cluster.traffic.send(NS, "web-stable", 300) == {"v1": 300}
    assert cluster.traffic.send(NS, "service/web-canary", 100) == {"v2": 100}
    cluster.store.mutate(SERVICES, NS, "web-stable", lambda s: s["spec"].__setitem__("selector", {"app": "web-canary"}))
    assert cluster.traffic.send(NS, "web-stable", 50) == {"v2": 50}
    counts = cluster.traffic.counts(NS)
    assert counts["web-stable"] == {"v1": {"200": 300}, "v2": {"200": 50}}
    assert counts["web-canary"] == {"v2": {"200": 100}}
    # kube-proxy spreads requests over the ready pods: every one of the three stable pods got some.
    cluster.store.mutate(SERVICES, NS, "web-stable", lambda s: s["spec"].__setitem__("selector", {"app": "web-stable"}))
    pods = {cluster.traffic.proxy(NS, "web-stable", "/")[1]["pod"] for _ in range(60)}
    assert pods == {p["metadata"]["name"] for p in cluster.pods("web-stable")}


def _apply(cluster: SimCluster, res: Resource, obj: Obj) -> None:
    name = obj["metadata"]["name"]
    if cluster.store.get(res, NS, name) is None:
        cluster.store.create(res, obj)
    else:
        cluster.store.mutate(res, NS, name, lambda o: o.__setitem__("spec", obj["spec"]))


def _set_weight(cluster: SimCluster, router: str, weight: int) -> str:
    """Points the router at the canary with `weight` percent; returns the entry point to send through."""
    if router == "httproute":
        _apply(cluster, HTTPROUTES, {
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"backendRefs": [{"name": "web-stable", "port": 80, "weight": 100 - weight},
                                                {"name": "web-canary", "port": 80, "weight": weight}]}]}})
        return "httproute/web"
    if router == "virtualservice":
        _apply(cluster, VIRTUALSERVICES, {
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"hosts": ["web"],
                     "http": [{"route": [
                         {"destination": {"host": "web-stable"}, "weight": 100 - weight},
                         {"destination": {"host": f"web-canary.{NS}.svc.cluster.local"}, "weight": weight}]}]}})
        return "virtualservice/web"
    rule = {"host": "web.example.com"}

    def ingress(name: str, service: str, annotations: dict[str, str]) -> Obj:
        return {"metadata": {"name": name, "namespace": NS, "annotations": annotations},
                "spec": {"ingressClassName": "nginx", "rules": [{**rule, "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}}

    _apply(cluster, INGRESSES, ingress("web", "web-stable", {}))
    canary = ingress("web-canary", "web-canary", {"nginx.ingress.kubernetes.io/canary": "true",
                                                  "nginx.ingress.kubernetes.io/canary-weight": str(weight)})
    if cluster.store.get(INGRESSES, NS, "web-canary") is None:
        cluster.store.create(INGRESSES, canary)
    else:
        cluster.store.mutate(INGRESSES, NS, "web-canary",
                             lambda o: o["metadata"].__setitem__("annotations", canary["metadata"]["annotations"]))
    return "ingress/web"


@pytest.mark.parametrize("router", ["httproute", "virtualservice", "nginx"])
def test_weights_split_traffic_within_three_points(router: str) -> None:
    cluster = SimCluster()
    _stable_and_canary(cluster)
    for weight in (5, 25, 50, 100):
        entry = _set_weight(cluster, router, weight)
        # 20,000 requests: the binomial spread at 50% is 0.35 points, so missing by 3 is never chance.
        served = cluster.traffic.send(NS, entry, 20_000)
        assert NO_BACKEND not in served
        share = 100 * served.get("v2", 0) / 20_000
        assert abs(share - weight) <= 3, (router, weight, served)
    # The routed Services are not entry points of their own: only the route is.
    kinds = {(ep.kind, ep.name) for ep in cluster.traffic.entry_points()}
    assert kinds == {({"nginx": "ingress"}.get(router, router), "web")}


def test_the_steady_stream_follows_route_weights_and_rate() -> None:
    cluster = SimCluster(rps=20)
    _stable_and_canary(cluster)
    _set_weight(cluster, "httproute", 25)
    cluster.service("batch", {"app": "web-stable"}, annotations={"sim.deployflow.io/traffic": "off"})
    cluster.traffic.tick(100.0)
    generated = cluster.traffic.tick(200.0)
    assert generated == 2000  # 20 rps for 100 simulated seconds through the one entry point
    counts = cluster.traffic.counts(NS)
    assert "batch" not in counts
    stable = sum(counts["web-stable"]["v1"].values())
    canary = sum(counts["web-canary"]["v2"].values())
    assert stable + canary == 2000
    assert abs(100 * canary / 2000 - 25) <= 3


def test_error_rate_annotation_shows_up_as_500s_in_the_metrics() -> None:
    cluster = SimCluster()
    _stable_and_canary(cluster, {"sim.deployflow.io/error-rate": "0.2", "sim.deployflow.io/latency-ms": "80"})
    cluster.traffic.send(NS, "web-canary", 1000)
    cluster.traffic.tick(0.0)
    cluster.traffic.tick(500.0)  # 10,000 more canary requests through the aggregated stream
    text = cluster.traffic.metrics_text()
    errors = _metric(text, "http_requests_total", namespace=NS, service="web-canary", version="v2", code="500")
    ok = _metric(text, "http_requests_total", namespace=NS, service="web-canary", version="v2", code="200")
    assert ok + errors == 11000
    assert 0.18 <= errors / (ok + errors) <= 0.22
    assert _metric(text, "http_requests_total", service="web-stable", code="500") == 0
    # Latency: the canary's 80 ms against the default 5 ms of the stable pods.
    count = _metric(text, "http_request_duration_seconds_count", service="web-canary")
    mean = _metric(text, "http_request_duration_seconds_sum", service="web-canary") / count
    assert 0.07 <= mean <= 0.09
    fast = _metric(text, "http_request_duration_seconds_bucket", service="web-canary", le="0.05")
    slow = _metric(text, "http_request_duration_seconds_bucket", service="web-canary", le="0.1")
    assert fast < 0.3 * count and slow > 0.6 * count
    assert _metric(text, "http_request_duration_seconds_bucket", service="web-stable", le="0.01") == _metric(
        text, "http_request_duration_seconds_count", service="web-stable")
    assert "# TYPE http_request_duration_seconds histogram" in text
    code, body = 0, {}
    for _ in range(50):
        code, body = cluster.traffic.proxy(NS, "web-canary", "orders")
        if code == 500:
            break
    assert code == 500 and body["version"] == "v2"


def test_requests_without_a_ready_backend_are_counted() -> None:
    cluster = SimCluster(ready_delay=4)
    cluster.service("web", {"app": "web"})
    cluster.traffic.tick(0.0)
    cluster.traffic.tick(5.0)
    assert cluster.traffic.no_backend(NS, "web") == 100
    assert cluster.traffic.proxy(NS, "web", "/") == (503, {"error": "no ready endpoints", "service": "web"})
    assert cluster.traffic.proxy(NS, "nothing", "/")[0] == 404
    cluster.deploy("web", replicas=2)
    cluster.step(0)
    cluster.step(1)
    assert cluster.traffic.send(NS, "web", 10) == {NO_BACKEND: 10}  # pods exist but are not ready yet
    cluster.run_until(lambda: len(cluster.ready_pods()) == 2)
    assert cluster.traffic.send(NS, "web", 10) == {"v1": 10}
    code, body = cluster.traffic.proxy(NS, "web", "healthz")
    assert code == 200 and body["version"] == "v1" and body["path"] == "/healthz"
    assert body["pod"] in {p["metadata"]["name"] for p in cluster.pods()}
    text = cluster.traffic.metrics_text()
    assert _metric(text, "sim_no_backend_requests_total", namespace=NS, service="web") == 111
    assert cluster.traffic.no_backend() == 111 and cluster.traffic.no_backend(NS, "other") == 0
    # An HTTPRoute to a Service that does not exist reaches no backend either.
    cluster.store.create(HTTPROUTES, {"metadata": {"name": "r", "namespace": NS},
                                      "spec": {"rules": [{"backendRefs": [{"name": "missing", "weight": 1}]}]}})
    assert cluster.traffic.send(NS, "r", 5) == {NO_BACKEND: 5}
    assert cluster.traffic.no_backend(NS, "missing") == 5


def test_unknown_entry_points_are_an_error() -> None:
    cluster = SimCluster()
    with pytest.raises(KeyError, match="no traffic entry point"):
        cluster.traffic.send(NS, "httproute/nope", 1)


def test_binomial_draws_have_the_right_mean() -> None:
    import random

    rng = random.Random(1)
    for n, p in ((10, 0.3), (200, 0.05), (5000, 0.4), (5000, 0.97)):
        mean = sum(_binomial(rng, n, p) for _ in range(400)) / 400
        assert abs(mean - n * p) <= 0.05 * n * p + 1, (n, p, mean)
    assert _binomial(rng, 10, 0.0) == 0 and _binomial(rng, 10, 1.0) == 10


def test_a_route_may_send_to_a_service_in_another_namespace() -> None:
    cluster = SimCluster()
    _stable_and_canary(cluster)
    cluster.store.create(HTTPROUTES, {
        "metadata": {"name": "edge", "namespace": "gateway"},
        "spec": {"rules": [{"backendRefs": [{"name": "web-canary", "namespace": NS, "weight": 1}]}]}})
    assert cluster.traffic.send("gateway", "edge", 20) == {"v2": 20}
    entries = {ep.key for ep in cluster.traffic.entry_points()}
    assert entries == {"httproute/gateway/edge", f"service/{NS}/web-stable"}  # web-canary is routed now
