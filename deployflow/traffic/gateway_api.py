"""Gateway API: one HTTPRoute rule whose backendRefs weigh `<app>-stable` against `<app>-canary`."""

from __future__ import annotations

from typing import Any

from deployflow.traffic.base import RouterError, TrafficRouter, register_router
from deployflow.traffic.tracks import CANARY, STABLE, service_name

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


@register_router("gateway-api")
class GatewayAPIRouter(TrafficRouter):
    def ensure_route(self) -> None:
        self._update(GROUP, VERSION, PLURAL, self.route_name, self._new_route, self._check)

    def set_weight(self, weight: int) -> None:
        def change(route: dict[str, Any]) -> bool:
            return self._weigh(*self._refs(route), weight)

        self._update(GROUP, VERSION, PLURAL, self.route_name, self._new_route, change)

    def weight(self) -> int | None:
        route = self._get(GROUP, VERSION, PLURAL, self.route_name)
        if route is None:
            return None
        stable_ref, canary_ref = self._refs(route)
        total = int(stable_ref.get("weight", 1)) + int(canary_ref.get("weight", 1))
        return round(100 * int(canary_ref.get("weight", 1)) / total) if total else 0

    def _new_route(self) -> dict[str, Any]:
        app = self.target.app
        spec: dict[str, Any] = {
            "rules": [
                {
                    "backendRefs": [
                        {"name": service_name(app, STABLE), "port": self.port, "weight": 100},
                        {"name": service_name(app, CANARY), "port": self.port, "weight": 0},
                    ]
                }
            ]
        }
        if self.spec.gateway:
            spec["parentRefs"] = [{"name": self.spec.gateway}]
        if self.spec.hosts:
            spec["hostnames"] = list(self.spec.hosts)
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HTTPRoute",
            "metadata": {"name": self.route_name, "namespace": self.target.namespace, "labels": {"app": app}},
            "spec": spec,
        }

    def _check(self, route: dict[str, Any]) -> bool:
        self._refs(route)
        return False

    def _refs(self, route: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The stable and canary backendRefs of the rule that routes to this app; adds the canary ref if the
        rule has only the stable one (a route written before the first canary)."""
        stable_name, canary_name = service_name(self.target.app, STABLE), service_name(self.target.app, CANARY)
        for rule in route.get("spec", {}).get("rules", []) or []:
            refs = rule.setdefault("backendRefs", [])
            stable = next((r for r in refs if r.get("name") == stable_name), None)
            if stable is None:
                continue
            canary = next((r for r in refs if r.get("name") == canary_name), None)
            if canary is None:
                canary = {"name": canary_name, "port": stable.get("port", self.port), "weight": 0}
                refs.append(canary)
            return stable, canary
        raise RouterError(
            f"HTTPRoute {self.target.namespace}/{self.route_name} has no rule with a backendRef to {stable_name}"
        )
