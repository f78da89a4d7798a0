"""Proportional scaling: what the deployment controller does when a Deployment is scaled in the middle of a rolling
update (`scale()` in kubernetes/pkg/controller/deployment/sync.go).

Every ReplicaSet with pods grows or shrinks in proportion to its share of the Deployment's previous maximum size
(its `max-replicas` annotation: replicas + maxSurge when it was last scaled), so a rollout in progress keeps its
split instead of the new or the old version taking all the change; leftovers go to the largest ReplicaSet.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployflow.sim.controllers.deploymentutil import DESIRED_REPLICAS, MAX_REPLICAS
from deployflow.sim.store import Obj


@dataclass(frozen=True)
class Sized:
    """One ReplicaSet as proportional scaling sees it."""

    name: str
    replicas: int
    revision: int  # stands for age: a higher revision is newer
    max_replicas: int  # the Deployment's replicas + maxSurge when this ReplicaSet was last scaled (0: unknown)


def annotation_int(rs: Obj, key: str) -> int | None:
    try:
        return int((rs["metadata"].get("annotations") or {})[key])
    except (KeyError, ValueError):
        return None


def is_scaling_event(replicas: int, active: list[Obj]) -> bool:
    """A ReplicaSet with pods was last sized for another Deployment size: the Deployment was scaled."""
    return any(annotation_int(rs, DESIRED_REPLICAS) not in (None, replicas) for rs in active)


def max_replicas_of(rs: Obj) -> int:
    return annotation_int(rs, MAX_REPLICAS) or 0


def proportional_sizes(sets: list[Sized], replicas: int, surge: int, status_replicas: int) -> dict[str, int]:
    """New sizes for the ReplicaSets with pods of a Deployment scaled to `replicas` mid-rollout."""
    allowed = replicas + surge if replicas > 0 else 0
    to_add = allowed - sum(s.replicas for s in sets)
    if to_add > 0:  # larger first; on a tie the newer first when growing, the older first when shrinking
        ordered = sorted(sets, key=lambda s: (-s.replicas, -s.revision))
    else:
        ordered = sorted(sets, key=lambda s: (-s.replicas, s.revision))
    sizes: dict[str, int] = {}
    added = 0
    for s in ordered:
        share = _proportion(s, replicas, allowed, status_replicas, to_add, added)
        sizes[s.name] = s.replicas + share
        added += share
    if ordered and to_add:
        first = ordered[0].name
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes


def _proportion(s: Sized, replicas: int, allowed: int, status_replicas: int, to_add: int, added: int) -> int:
    """GetProportion: the ReplicaSet's share of the change, bounded by what is left to give."""
    if s.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    if replicas == 0:
        fraction = -s.replicas
    else:
        before = s.max_replicas or status_replicas
        if before == 0:
            return 0
        fraction = _round_half_away(s.replicas * allowed / before) - s.replicas
    left = to_add - added
    return min(fraction, left) if to_add > 0 else max(fraction, left)


def _round_half_away(x: float) -> int:
    """Go's math.Round (integer.RoundToInt32): halves away from zero, unlike Python's round()."""
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)
