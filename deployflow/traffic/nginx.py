"""NGINX Ingress: a canary Ingress next to the primary one, its share set by the `canary-weight` annotation."""

from __future__ import annotations

import copy
from typing import Any

from deployflow import kube
from deployflow.traffic.base import RouterError, TrafficRouter, register_router
from deployflow.traffic.tracks import CANARY, STABLE, service_name

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"


@register_router("nginx")
class NginxRouter(TrafficRouter):
    @property
    def canary_ingress(self) -> str:
        return f"{self.route_name}-canary"

    def _ingresses(self, name: str = "") -> str:
        return f"/apis/networking.k8s.io/v1/namespaces/{self.target.namespace}/ingresses/{name}".rstrip("/")

    def ensure_route(self) -> None:
        # `create` returns the existing object when another attempt made it first.
        primary = self._read(self.route_name) or kube.create(self.api, self._ingresses(), self._primary())
        self._check_primary(primary)
        if self._read(self.canary_ingress) is None:
            kube.create(self.api, self._ingresses(), self._canary(primary, 0))

    def set_weight(self, weight: int) -> None:
        current = self._read(self.canary_ingress)
        if current is None:
            primary = self._read(self.route_name)
            if primary is None:
                raise RouterError(f"Ingress {self.target.namespace}/{self.route_name} does not exist")
            kube.create(self.api, self._ingresses(), self._canary(primary, weight))
            return
        annotations = current.get("metadata", {}).get("annotations") or {}
        if annotations.get(WEIGHT_ANNOTATION) == str(weight) and annotations.get(CANARY_ANNOTATION) == "true":
            return
        patch = {"metadata": {"annotations": {CANARY_ANNOTATION: "true", WEIGHT_ANNOTATION: str(weight)}}}
        kube.merge_patch(self.api, self._ingresses(self.canary_ingress), patch)

    def weight(self) -> int | None:
        current = self._read(self.canary_ingress)
        if current is None:
            return None
        return int((current.get("metadata", {}).get("annotations") or {}).get(WEIGHT_ANNOTATION, "0"))

    def _read(self, name: str) -> dict[str, Any] | None:
        return kube.get_or_none(self.api, self._ingresses(name))

    def _primary(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {
                            "service": {"name": service_name(self.target.app, STABLE), "port": {"number": self.port}}
                        },
                    }
                ]
            }
        }
        rules = [dict(rule, host=h) for h in self.spec.hosts] or [rule]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": self.route_name, "namespace": self.target.namespace,
                         "labels": {"app": self.target.app}},
            "spec": {"ingressClassName": self.spec.ingress_class, "rules": rules},
        }

    def _check_primary(self, primary: dict[str, Any]) -> None:
        stable = service_name(self.target.app, STABLE)
        for rule in primary.get("spec", {}).get("rules", []) or []:
            for path in (rule.get("http") or {}).get("paths", []) or []:
                if path.get("backend", {}).get("service", {}).get("name") == stable:
                    return
        raise RouterError(f"Ingress {self.target.namespace}/{self.route_name} has no path to Service {stable}")

    def _canary(self, primary: dict[str, Any], weight: int) -> dict[str, Any]:
        """The primary's rules with the canary Service as backend, and the canary annotations."""
        stable, canary = service_name(self.target.app, STABLE), service_name(self.target.app, CANARY)
        rules = copy.deepcopy(primary.get("spec", {}).get("rules", []) or [])
        for rule in rules:
            for path in (rule.get("http") or {}).get("paths", []) or []:
                svc = path.get("backend", {}).get("service", {})
                if svc.get("name") == stable:
                    svc["name"] = canary
        spec: dict[str, Any] = {"rules": rules}
        if primary.get("spec", {}).get("ingressClassName"):
            spec["ingressClassName"] = primary["spec"]["ingressClassName"]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": self.canary_ingress,
                "namespace": self.target.namespace,
                "labels": {"app": self.target.app},
                "annotations": {CANARY_ANNOTATION: "true", WEIGHT_ANNOTATION: str(weight)},
            },
            "spec": spec,
        }
