"""What a requested canary weight really becomes.

Without a mesh (`traffic.router: replicas`) one Service selects the pods of both tracks, so the canary's share of
requests is its share of ready pods: 1 canary pod beside 4 stable ones is 20%, whatever the step asked for.
`pod_split` picks the pod counts that come closest to the requested weight, running at most `max_extra` pods
beyond the app's size to get there; `weight_warnings` names the steps whose weight no split comes close to, before
anything starts. Mesh routers (gateway-api, istio, nginx) weigh requests themselves and give any weight exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from deployflow.spec.canary import CanaryRequest, SetWeightStep
from deployflow.status import format_percent

# How far (in percentage points) the real share may be from the requested one before validation speaks up.
WEIGHT_TOLERANCE = 2.0
MESH_ROUTERS = ("gateway-api", "istio", "nginx")


@dataclass(frozen=True)
class PodSplit:
    stable: int
    canary: int
    actual_weight: float  # the canary's share of the pods, in percent


def extra_pods_allowed(max_extra_pods: int | None, replicas: int) -> int:
    """`traffic.max_extra_pods`, whose default (None) is the app's own replica count."""
    return replicas if max_extra_pods is None else max_extra_pods


def pod_split(weight: int, replicas: int, max_extra: int) -> tuple[int, int, float]:
    """(stable, canary, actual weight) for a canary at `weight` percent of `replicas` pods' worth of traffic.

    Both tracks together run between `replicas` and `replicas + max_extra` pods, so the app never has fewer
    ready pods than it asked for. The canary has at least one pod while it takes any traffic and none at 0%;
    stable keeps at least one pod below 100% and none at 100% (so a one-pod app gets a second pod
    for its canary even when `max_extra` is 0). Among the splits that allows, the one whose
    canary share is nearest `weight` wins; on a tie the one with fewer pods, then the one exposing fewer users.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be between 0 and 100, not {weight}")
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, not {replicas}")
    if max_extra < 0:
        raise ValueError(f"max_extra must not be negative, not {max_extra}")
    target = Fraction(weight, 100)
    most = replicas + max_extra
    if 0 < weight < 100:
        most = max(most, 2)  # a canary beside stable needs two pods, even for a one-pod app
    best: tuple[Fraction, int, int] | None = None
    for total in range(replicas, most + 1):
        low = 1 if weight > 0 else 0
        high = total - 1 if weight < 100 else total
        if low > high:
            continue
        ideal = target * total
        for canary in (math.floor(ideal), math.ceil(ideal)):
            canary = min(max(canary, low), high)
            candidate = (abs(Fraction(canary, total) - target), total, canary)
            if best is None or candidate < best:
                best = candidate
    assert best is not None  # `most` always leaves room for a split
    _, total, canary = best
    return total - canary, canary, 100.0 * canary / total


def split_for(weight: int, replicas: int, max_extra_pods: int | None) -> PodSplit:
    stable, canary, actual = pod_split(weight, replicas, extra_pods_allowed(max_extra_pods, replicas))
    return PodSplit(stable, canary, actual)


def weight_warnings(request: CanaryRequest, tolerance: float = WEIGHT_TOLERANCE) -> list[str]:
    """One message per `set_weight` step whose weight the replicas router cannot come within `tolerance`
    points of, with this app's replica count and `traffic.max_extra_pods`: what it would really be, and the
    remedies. Mesh routers give every weight exactly, so they have none."""
    if request.traffic.router != "replicas":
        return []
    replicas = request.workload.replicas
    extra = extra_pods_allowed(request.traffic.max_extra_pods, replicas)
    warnings = []
    for number, step in enumerate(request.expanded_steps(), start=1):
        if not isinstance(step, SetWeightStep):
            continue
        split = split_for(step.set_weight, replicas, request.traffic.max_extra_pods)
        if abs(split.actual_weight - step.set_weight) <= tolerance:
            continue
        warnings.append(
            f"step {number} set_weight {step.set_weight}: the replicas router can only give the canary "
            f"{format_percent(split.actual_weight)} of requests ({split.canary} canary pod(s) beside {split.stable} "
            f"stable, with workload.replicas {replicas} and traffic.max_extra_pods {extra}); use more replicas, "
            f"raise traffic.max_extra_pods, or a router that weighs requests: {', '.join(MESH_ROUTERS)}"
        )
    return warnings
