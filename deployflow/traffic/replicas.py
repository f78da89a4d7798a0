"""No mesh: one Service selects both tracks, so the canary's share is its share of ready pods."""

from __future__ import annotations

from typing import ClassVar

from deployflow.traffic.base import TrafficRouter, register_router
from deployflow.traffic.tracks import APP_LABEL, CANARY, STABLE, service_name


@register_router("replicas")
class ReplicaRatioRouter(TrafficRouter):
    scales_stable: ClassVar[bool] = True

    def services(self) -> dict[str, dict[str, str]]:
        # Only the app's Service: per-track Services would be extra ways in that bypass the ratio.
        return {service_name(self.target.app): {APP_LABEL: self.target.app}}

    def set_weight(self, weight: int) -> None:
        # The split is made by scaling, which the activity does with readiness checks in the right order;
        # here only the canary is shrunk, which is what a rollback needs first and fast.
        if weight == 0 and self.tracks.read(CANARY).exists:
            self.tracks.scale(CANARY, 0)

    def weight(self) -> int | None:
        actual = self.actual_weight()
        return None if actual is None else round(actual)

    def actual_weight(self) -> float | None:
        # The Service spreads requests evenly over ready endpoints: the canary's share of ready pods.
        stable, canary = self.tracks.read(STABLE), self.tracks.read(CANARY)
        total = (stable.ready if stable.exists else 0) + (canary.ready if canary.exists else 0)
        if total == 0:
            return None
        return 100 * (canary.ready if canary.exists else 0) / total
