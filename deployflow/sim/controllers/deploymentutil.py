"""The arithmetic of Deployment rollouts, as k8s.io/kubernetes/pkg/controller/deployment/util computes it:
pod-template hashes, maxSurge/maxUnavailable fenceposts, revisions."""

from __future__ import annotations

import json
import math

from deployflow.sim.store import Obj

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
DEFAULT_PROGRESS_DEADLINE = 600
DEFAULT_HISTORY_LIMIT = 10
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A stable, DNS-safe hash of a pod template, like controller.ComputeHash (FNV-32a + SafeEncodeString)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in str(h))


def without_hash(template: Obj) -> Obj:
    """The template minus the pod-template-hash label (shallow: for comparing, never for writing)."""
    template = template or {}
    meta = template.get("metadata") or {}
    if HASH_LABEL not in (meta.get("labels") or {}):
        return template
    labels = {k: v for k, v in meta["labels"].items() if k != HASH_LABEL}
    return {**template, "metadata": {**meta, "labels": labels}}


def scaled_value(value: int | str | None, total: int, round_up: bool, default: str) -> int:
    """intstr.GetScaledValueFromIntOrPercent: percentages of `total`, surge rounded up, unavailable down."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        pct = float(text[:-1])
        raw = pct * total / 100
        return math.ceil(raw) if round_up else math.floor(raw)
    return int(text)


def fenceposts(deploy: Obj, replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as deploymentutil.ResolveFenceposts computes them."""
    strategy = deploy.get("spec", {}).get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    ru = strategy.get("rollingUpdate") or {}
    surge = scaled_value(ru.get("maxSurge"), replicas, True, "25%")
    unavailable = scaled_value(ru.get("maxUnavailable"), replicas, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1  # the apiserver rejects 0/0; the controller falls back to 1 so a rollout can move
    return surge, unavailable


def revision_of(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def condition(prev: Obj | None, ctype: str, status: str, reason: str, message: str, stamp: str,
               touch: bool = False) -> Obj:
    """A condition that keeps its timestamps unless something about it changed, like SetDeploymentCondition."""
    if prev and prev.get("status") == status and prev.get("reason") == reason and prev.get("message") == message \
            and not touch:
        return prev
    transition = prev["lastTransitionTime"] if prev and prev.get("status") == status else stamp
    return {"type": ctype, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": transition,
            "reason": reason, "message": message}
