"""The router interface: make sure the routing objects exist, set the canary's weight, read it back.

Setting a weight is idempotent: the router sets the share to N, it never adds N, so a retried activity or a
replayed workflow lands on the same split. Routers create what they need when it is missing and check what
exists before changing it: a route that does not point at this app's Services is an error, not something to
overwrite.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from kubernetes import client

from deployflow import kube
from deployflow.spec.canary import TrafficRouting
from deployflow.spec.common import Target
from deployflow.spec.weights import extra_pods_allowed, pod_split
from deployflow.traffic.tracks import CANARY, STABLE, Tracks, service_name, track_selector


class RouterError(Exception):
    """A routing object is not what this router can safely change (a retry will not fix it)."""


class TrafficRouter(ABC):
    name: ClassVar[str]
    # Without a mesh the stable track shrinks as the canary grows; with one, stable keeps full size.
    scales_stable: ClassVar[bool] = False

    def __init__(self, api: client.ApiClient, target: Target, spec: TrafficRouting, port: int, target_port: int):
        self.api = api
        self.target = target
        self.spec = spec
        self.port = port
        self.target_port = target_port
        self.tracks = Tracks(api, target)

    @property
    def route_name(self) -> str:
        return self.spec.route or self.target.app

    def services(self) -> dict[str, dict[str, str]]:
        """The Services this router sends traffic to, by name, with their selectors: one per track."""
        app = self.target.app
        return {service_name(app, track): track_selector(app, track) for track in (STABLE, CANARY)}

    def ensure(self) -> None:
        """Creates the Services and the route object this router needs; verifies those that exist.

        The canary Service comes last, once a route refers to it with weight 0: a Service no route refers to
        is a way in of its own, and one with no ready pods would turn requests away.
        """
        services = self.services()
        canary = service_name(self.target.app, CANARY)
        for name, selector in services.items():
            if name != canary:
                self.tracks.ensure_service(name, selector, self.port, self.target_port)
        self.ensure_route()
        if canary in services:
            self.tracks.ensure_service(canary, services[canary], self.port, self.target_port)

    def ensure_route(self) -> None:
        """Creates or verifies the route object that weighs stable against canary (none without a mesh)."""
        return None

    @abstractmethod
    def set_weight(self, weight: int) -> None:
        """Sends `weight` percent of the app's traffic to the canary."""

    @abstractmethod
    def weight(self) -> int | None:
        """The canary's weight as the cluster has it now (None when the routing objects do not exist)."""

    def actual_weight(self) -> float | None:
        """The share of requests the canary really gets now, in percent (None when nothing routes yet)."""
        weight = self.weight()
        return None if weight is None else float(weight)

    def replicas(self, weight: int, total: int) -> tuple[int, int]:
        """(stable, canary) pod counts for `weight`. With a mesh the route weighs requests, so the canary is sized
        to its share (at least one pod while it takes any traffic, rounded up as Argo Rollouts does) and stable
        keeps full size; without one the pod ratio is the split, chosen by `pod_split`."""
        if self.scales_stable:
            stable, canary, _ = pod_split(weight, total, extra_pods_allowed(self.spec.max_extra_pods, total))
            return stable, canary
        canary = min(total, math.ceil(total * weight / 100)) if weight > 0 else 0
        return total, max(canary, 1) if weight > 0 else 0

    # helpers for routers whose objects are custom resources

    def _custom(self, group: str, version: str, plural: str, name: str = "") -> str:
        return f"/apis/{group}/{version}/namespaces/{self.target.namespace}/{plural}/{name}".rstrip("/")

    def _get(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        return self._read(self._custom(group, version, plural, name))

    # The resources these reach are declared by each router's GROUP, VERSION, PLURAL (read by the RBAC check).

    def _read(self, path: str) -> dict[str, Any] | None:
        return kube.get_or_none(self.api, path)

    def _create(self, path: str, body: dict[str, Any]) -> None:
        kube.request_json(self.api, "POST", path, body=body)

    def _replace(self, path: str, body: dict[str, Any]) -> None:
        kube.request_json(self.api, "PUT", path, body=body)

    def _update(
        self,
        group: str,
        version: str,
        plural: str,
        name: str,
        create: Callable[[], dict[str, Any]],
        change: Callable[[dict[str, Any]], bool],
    ) -> None:
        """Read, change, replace with the read resourceVersion; retried on conflicts so concurrent edits are
        never lost. `change` returns False when the object already says what we want."""
        for _ in range(8):
            obj = self._get(group, version, plural, name)
            try:
                if obj is None:
                    body = create()
                    change(body)
                    self._create(self._custom(group, version, plural), body)
                    return
                if not change(obj):
                    return
                self._replace(self._custom(group, version, plural, name), obj)
                return
            except kube.KubeError as err:
                if err.status != 409:
                    raise
        raise RouterError(f"{plural}/{name} kept changing under us")

    @staticmethod
    def _weigh(stable: dict[str, Any], canary: dict[str, Any], weight: int) -> bool:
        """Gives a route's stable and canary references 100 - weight and weight (an `_update` change); False when
        they have them already."""
        if stable.get("weight") == 100 - weight and canary.get("weight") == weight:
            return False
        stable["weight"], canary["weight"] = 100 - weight, weight
        return True


_ROUTERS: dict[str, type[TrafficRouter]] = {}


def register_router(name: str) -> Callable[[type[TrafficRouter]], type[TrafficRouter]]:
    def decorate(cls: type[TrafficRouter]) -> type[TrafficRouter]:
        cls.name = name
        _ROUTERS[name] = cls
        return cls

    return decorate


def router_for(
    api: client.ApiClient, target: Target, spec: TrafficRouting, port: int = 80, target_port: int = 8080
) -> TrafficRouter:
    # Importing here registers the built-in routers without an import cycle at module load.
    from deployflow.traffic import gateway_api, istio, nginx, replicas  # noqa: F401

    cls = _ROUTERS.get(spec.router)
    if cls is None:
        raise RouterError(f"unknown traffic router {spec.router!r} (known: {', '.join(sorted(_ROUTERS))})")
    return cls(api, target, spec, port, target_port)
