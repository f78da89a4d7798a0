"""Traffic routers against the simulator: the measured split of 20,000 requests follows the weight."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.traffic import (
    RoutingRequest,
    TrackRequest,
    WeightRequest,
    deploy_track,
    prepare_routing,
    rollback_traffic,
    set_weight,
)
from deployflow.kube import api_client
from deployflow.sim.server import Simulator
from deployflow.sim.traffic import NO_BACKEND
from deployflow.spec.canary import TrafficRouting
from deployflow.spec.common import Target, Workload
from deployflow.traffic import RouterError, router_for
from deployflow.traffic.tracks import Tracks

ENTRY = {"replicas": "service/web", "gateway-api": "httproute/web", "istio": "virtualservice/web",
         "nginx": "ingress/web"}
# Without a mesh the split is the pod ratio: 20 pods make 5% exactly one pod.
REPLICAS = {"replicas": 20, "gateway-api": 4, "istio": 4, "nginx": 4}
# Each request picks its backend at random, as the data planes do, so the measured split is binomial: over 20,000
# requests its spread at 50% is 0.35 points and a 3-point miss means a wrong weight. Over 2,000 the spread was
# 1.1 points and chance alone missed by more than 3 about once in 130 checks at 50%.
REQUESTS = 20_000


async def run(fn: Any, arg: Any) -> Any:
    return await ActivityEnvironment().run(fn, arg)


async def release(namespace: str, router: str) -> tuple[Target, TrafficRouting, int]:
    """v1 on the stable track with routing in place, v2 on the canary track with no traffic."""
    target = Target(cluster="sim", namespace=namespace, app="web")
    traffic = TrafficRouting(router=router)  # type: ignore[arg-type]
    replicas = REPLICAS[router]
    await run(deploy_track, TrackRequest(target=target, track="stable", workload=Workload(image="web:v1"),
                                         replicas=replicas, timeout_seconds=30))
    await run(prepare_routing, RoutingRequest(target=target, traffic=traffic))
    await run(deploy_track, TrackRequest(target=target, track="canary", workload=Workload(image="web:v2"),
                                         replicas=0, wait=False))
    return target, traffic, replicas


@pytest.mark.parametrize("router", ["replicas", "gateway-api", "istio", "nginx"])
async def test_measured_split_follows_the_weight(sim: Simulator, namespace: str, router: str) -> None:
    target, traffic, replicas = await release(namespace, router)
    routing = router_for(api_client("sim"), target, traffic)
    # Up through every weight, then back down: both directions must keep pods ready before they get traffic.
    for weight in (5, 25, 50, 100, 50, 25, 5):
        await run(set_weight, WeightRequest(target=target, traffic=traffic, weight=weight, replicas=replicas,
                                            timeout_seconds=30))
        if router != "replicas":
            assert routing.weight() == weight
        served = sim.send_requests(namespace, ENTRY[router], REQUESTS)
        assert NO_BACKEND not in served, served
        canary_share = 100 * served.get("v2", 0) / REQUESTS
        assert abs(canary_share - weight) <= 3, f"{router} at {weight}%: canary served {canary_share:.1f}%"
    # Back to 0 at once, and stable is whole again.
    await run(rollback_traffic, WeightRequest(target=target, traffic=traffic, weight=0, replicas=replicas,
                                              timeout_seconds=30))
    assert sim.send_requests(namespace, ENTRY[router], 500) == {"v1": 500}
    tracks = Tracks(api_client("sim"), target)
    assert tracks.read("canary").replicas == 0
    assert tracks.read("stable").ready == replicas
    assert sim.no_backend_requests(namespace=namespace) == 0


@pytest.mark.parametrize("router", ["gateway-api", "istio", "nginx"])
async def test_setting_a_weight_is_idempotent(namespace: str, router: str) -> None:
    target, traffic, replicas = await release(namespace, router)
    api = api_client("sim")
    routing = router_for(api, target, traffic)
    for _ in range(3):  # set to N, never add N
        await run(set_weight, WeightRequest(target=target, traffic=traffic, weight=25, replicas=replicas))
        assert routing.weight() == 25
    versions = {_resource_version(api, namespace, router)}
    await run(set_weight, WeightRequest(target=target, traffic=traffic, weight=25, replicas=replicas))
    versions.add(_resource_version(api, namespace, router))
    assert len(versions) == 1, "an unchanged weight must not rewrite the route"


def _resource_version(api: Any, namespace: str, router: str) -> str:
    from kubernetes import client

    if router == "nginx":
        obj = client.NetworkingV1Api(api).read_namespaced_ingress("web-canary", namespace)
        return str(obj.metadata.resource_version)
    group, plural = {"gateway-api": ("gateway.networking.k8s.io", "httproutes"),
                     "istio": ("networking.istio.io", "virtualservices")}[router]
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(group, "v1", namespace, plural, "web")
    return str(found["metadata"]["resourceVersion"])


async def test_existing_route_that_does_not_reach_the_app_is_refused(namespace: str) -> None:
    from kubernetes import client

    api = api_client("sim")
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"rules": [{"backendRefs": [{"name": "something-else", "port": 80}]}]},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", route
    )
    target = Target(cluster="sim", namespace=namespace, app="web")
    with pytest.raises(RouterError, match="no rule with a backendRef to web-stable"):
        router_for(api, target, TrafficRouting(router="gateway-api")).ensure()
    with pytest.raises(ApplicationError) as err:
        await run(prepare_routing, RoutingRequest(target=target, traffic=TrafficRouting(router="gateway-api")))
    assert err.value.non_retryable and err.value.type == "RoutingError"
    kept = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "web"
    )
    assert kept["spec"]["rules"][0]["backendRefs"] == [{"name": "something-else", "port": 80}]


async def test_existing_route_gets_a_canary_backend_added(sim: Simulator, namespace: str) -> None:
    """A route written before any canary (stable only) is extended, its other settings kept."""
    from kubernetes import client

    api = api_client("sim")
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"parentRefs": [{"name": "public"}], "hostnames": ["shop.example.com"],
                 "rules": [{"backendRefs": [{"name": "web-stable", "port": 80}]}]},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", route
    )
    target, traffic, replicas = await release(namespace, "gateway-api")
    await run(set_weight, WeightRequest(target=target, traffic=traffic, weight=50, replicas=replicas))
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "web"
    )
    assert found["spec"]["hostnames"] == ["shop.example.com"]
    assert found["spec"]["parentRefs"] == [{"name": "public"}]
    assert [(r["name"], r["weight"]) for r in found["spec"]["rules"][0]["backendRefs"]] == [
        ("web-stable", 50), ("web-canary", 50)
    ]
    served = sim.send_requests(namespace, "httproute/web", REQUESTS)
    assert abs(100 * served.get("v2", 0) / REQUESTS - 50) <= 3


def test_replica_plan_comes_nearest_the_weight_with_one_canary_pod_minimum() -> None:
    api = object()
    target = Target(cluster="sim", namespace="x", app="web")
    ratio = router_for(api, target, TrafficRouting(router="replicas"))  # type: ignore[arg-type]
    assert ratio.replicas(0, 10) == (10, 0)
    assert ratio.replicas(1, 10) == (19, 1)  # at least one canary pod while it takes traffic, diluted by extra stable
    assert ratio.replicas(25, 10) == (9, 3)  # 25% exactly, one pod over the app's size
    assert ratio.replicas(50, 10) == (5, 5)
    assert ratio.replicas(100, 10) == (0, 10)
    tight = router_for(api, target, TrafficRouting(router="replicas", max_extra_pods=0))  # type: ignore[arg-type]
    assert tight.replicas(1, 10) == (9, 1)
    assert tight.replicas(25, 10) == (8, 2)  # 20%: the nearest a 10-pod app gets without extra pods
    mesh = router_for(api, target, TrafficRouting(router="istio"))  # type: ignore[arg-type]
    assert mesh.replicas(25, 10) == (10, 3)  # with a mesh stable keeps its size
