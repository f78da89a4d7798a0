"""Istio: one VirtualService HTTP route whose destinations weigh `<app>-stable` against `<app>-canary`."""

from __future__ import annotations

from typing import Any

from deployflow.traffic.base import RouterError, TrafficRouter, register_router
from deployflow.traffic.tracks import APP_LABEL, CANARY, STABLE, service_name

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"


@register_router("istio")
class IstioRouter(TrafficRouter):
    def services(self) -> dict[str, dict[str, str]]:
        # The host the VirtualService answers for is a Service of its own, as a mesh needs it for DNS.
        services = super().services()
        if not self.spec.hosts:
            services[service_name(self.target.app)] = {APP_LABEL: self.target.app}
        return services

    def ensure_route(self) -> None:
        self._update(GROUP, VERSION, PLURAL, self.route_name, self._new_service, self._check)

    def set_weight(self, weight: int) -> None:
        def change(vs: dict[str, Any]) -> bool:
            return self._weigh(*self._destinations(vs), weight)

        self._update(GROUP, VERSION, PLURAL, self.route_name, self._new_service, change)

    def weight(self) -> int | None:
        vs = self._get(GROUP, VERSION, PLURAL, self.route_name)
        if vs is None:
            return None
        _, canary = self._destinations(vs)
        return int(canary.get("weight", 0))

    def _new_service(self) -> dict[str, Any]:
        app = self.target.app
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VirtualService",
            "metadata": {"name": self.route_name, "namespace": self.target.namespace, "labels": {"app": app}},
            "spec": {
                "hosts": list(self.spec.hosts) or [service_name(app)],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {"destination": {"host": service_name(app, STABLE), "port": {"number": self.port}},
                             "weight": 100},
                            {"destination": {"host": service_name(app, CANARY), "port": {"number": self.port}},
                             "weight": 0},
                        ],
                    }
                ],
            },
        }

    def _check(self, vs: dict[str, Any]) -> bool:
        self._destinations(vs)
        return False

    def _destinations(self, vs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        stable_host, canary_host = service_name(self.target.app, STABLE), service_name(self.target.app, CANARY)

        def host(route: dict[str, Any]) -> str:
            name = str(route.get("destination", {}).get("host", ""))
            # Istio accepts short names and FQDNs for the same Service.
            return name.split(".")[0]

        for http in vs.get("spec", {}).get("http", []) or []:
            routes = http.setdefault("route", [])
            stable = next((r for r in routes if host(r) == stable_host), None)
            if stable is None:
                continue
            canary = next((r for r in routes if host(r) == canary_host), None)
            if canary is None:
                canary = {"destination": {"host": canary_host, "port": {"number": self.port}}, "weight": 0}
                routes.append(canary)
            return stable, canary
        raise RouterError(
            f"VirtualService {self.target.namespace}/{self.route_name} has no HTTP route to {stable_host}"
        )
