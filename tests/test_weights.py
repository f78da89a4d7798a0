"""The pod counts a requested weight becomes without a mesh, and the warnings for weights no split comes close to."""

from __future__ import annotations

from typing import Any

import pytest

from deployflow.spec.canary import CanaryRequest, TrafficRouting
from deployflow.spec.common import Target
from deployflow.spec.weights import pod_split, weight_warnings
from deployflow.traffic.base import router_for


def all_splits(weight: int, replicas: int, max_extra: int) -> list[tuple[int, int]]:
    """Every (stable, canary) the rules allow, found by brute force."""
    most = replicas + max_extra
    if 0 < weight < 100:
        most = max(most, 2)
    found = []
    for stable in range(most + 1):
        for canary in range(most + 1 - stable):
            total = stable + canary
            if total < replicas or (weight > 0) != (canary > 0) or (weight < 100) != (stable > 0):
                continue
            found.append((stable, canary))
    return found


@pytest.mark.parametrize(
    ("weight", "replicas", "max_extra", "expected"),
    [
        (5, 4, 0, (3, 1, 25.0)),  # no room: 1 pod in 4
        (5, 4, 1, (4, 1, 20.0)),
        (5, 4, 4, (7, 1, 12.5)),  # the default allowance (as many extra as replicas)
        (5, 10, 0, (9, 1, 10.0)),
        (5, 10, 10, (19, 1, 5.0)),
        (5, 20, 0, (19, 1, 5.0)),
        (5, 20, 20, (19, 1, 5.0)),  # exact without any extra pod: none is used
        (5, 100, 0, (95, 5, 5.0)),
        (25, 4, 4, (3, 1, 25.0)),
        (50, 4, 4, (2, 2, 50.0)),
        (0, 4, 4, (4, 0, 0.0)),
        (100, 4, 4, (0, 4, 100.0)),
        (0, 1, 0, (1, 0, 0.0)),
        (100, 1, 0, (0, 1, 100.0)),
        (30, 1, 0, (1, 1, 50.0)),  # a one-pod app gets a second pod for its canary
    ],
)
def test_known_splits(weight: int, replicas: int, max_extra: int, expected: tuple[int, int, float]) -> None:
    assert pod_split(weight, replicas, max_extra) == expected


@pytest.mark.parametrize("replicas", range(1, 21))
@pytest.mark.parametrize("extra_of", [0, 1])  # no extra pods, and as many extra as replicas
def test_every_weight_is_the_best_achievable(replicas: int, extra_of: int) -> None:
    max_extra = replicas * extra_of
    for weight in range(101):
        stable, canary, actual = pod_split(weight, replicas, max_extra)
        assert (stable, canary) in all_splits(weight, replicas, max_extra), (weight, stable, canary)
        assert actual == pytest.approx(100 * canary / (stable + canary))
        best = min(abs(100 * c / (s + c) - weight) for s, c in all_splits(weight, replicas, max_extra))
        assert abs(actual - weight) == pytest.approx(best), (weight, replicas, max_extra, stable, canary)
        # Never fewer pods than the app asked for: stable plus canary always serve at least `replicas`.
        assert stable + canary >= replicas


@pytest.mark.parametrize(("weight", "replicas", "max_extra"), [(101, 4, 0), (-1, 4, 0), (5, 0, 0), (5, 4, -1)])
def test_bad_arguments_are_refused(weight: int, replicas: int, max_extra: int) -> None:
    with pytest.raises(ValueError):
        pod_split(weight, replicas, max_extra)


def router(traffic: dict[str, Any]) -> Any:
    # Routers build no client objects until asked to act: no cluster is needed to size the tracks.
    return router_for(None, Target(cluster="sim", namespace="ns", app="web"),  # type: ignore[arg-type]
                      TrafficRouting.model_validate(traffic))


def test_replicas_router_sizes_tracks_with_the_allowance() -> None:
    assert router({"router": "replicas"}).replicas(5, 4) == (7, 1)  # default allowance: replicas
    assert router({"router": "replicas", "max_extra_pods": 1}).replicas(5, 4) == (4, 1)
    assert router({"router": "replicas", "max_extra_pods": 0}).replicas(5, 4) == (3, 1)


def test_mesh_routers_keep_stable_at_full_size() -> None:
    mesh = router({"router": "istio"})
    assert mesh.replicas(5, 4) == (4, 1)
    assert mesh.replicas(50, 4) == (4, 2)
    assert mesh.replicas(0, 4) == (4, 0)
    assert mesh.replicas(100, 4) == (4, 4)


def canary(steps: list[dict[str, Any]], replicas: int = 4, **traffic: Any) -> CanaryRequest:
    return CanaryRequest.model_validate({
        "target": {"cluster": "sim", "namespace": "demo", "app": "cart"},
        "workload": {"image": "registry.example.com/cart:2.0.0", "replicas": replicas},
        "traffic": traffic,
        "steps": steps,
    })


def test_warnings_name_the_step_the_real_weight_and_the_remedies() -> None:
    request = canary([{"set_weight": 5}, {"pause": {}}, {"set_weight": 25}, {"set_weight": 10}])
    warnings = weight_warnings(request)
    assert len(warnings) == 2
    first, second = warnings
    assert first.startswith("step 1 set_weight 5: ")
    assert "12.5%" in first and "1 canary pod(s) beside 7 stable" in first
    for remedy in ("more replicas", "traffic.max_extra_pods", "gateway-api", "istio", "nginx"):
        assert remedy in first
    assert second.startswith("step 4 set_weight 10: ") and "12.5%" in second


def test_no_warnings_when_the_weight_is_reachable() -> None:
    assert weight_warnings(canary([{"set_weight": 5}], replicas=20)) == []
    assert weight_warnings(canary([{"set_weight": 25}, {"set_weight": 50}, {"set_weight": 100}])) == []
    assert weight_warnings(canary([{"set_weight": 5}], router="istio")) == []


def test_tighter_allowance_warns_with_the_real_weight() -> None:
    (warning,) = weight_warnings(canary([{"set_weight": 5}], max_extra_pods=1))
    assert "20%" in warning and "traffic.max_extra_pods 1" in warning


def test_stages_are_checked_too() -> None:
    request = CanaryRequest.model_validate({
        "target": {"cluster": "sim", "namespace": "demo", "app": "cart"},
        "workload": {"image": "registry.example.com/cart:2.0.0", "replicas": 4},
        "stages": [{"weight": 5, "duration": "1m"}, {"weight": 50, "duration": "1m"}],
    })
    (warning,) = weight_warnings(request)
    assert warning.startswith("step 1 set_weight 5: ")
