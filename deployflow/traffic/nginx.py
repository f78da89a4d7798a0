"""NGINX Ingress: a canary Ingress next to the primary one, its share set by the `canary-weight` annotation."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployflow.traffic.base import RouterError, TrafficRouter, register_router
from deployflow.traffic.tracks import CANARY, STABLE, service_name

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"


@register_router("nginx")
class NginxRouter(TrafficRouter):
    @property
    def canary_ingress(self) -> str:
        return f"{self.route_name}-canary"

    def ensure_route(self) -> None:
        net: Any = client.NetworkingV1Api(self.api)
        primary = self._read(self.route_name)
        if primary is None:
            try:
                net.create_namespaced_ingress(self.target.namespace, self._primary())
            except ApiException as err:
                if err.status != 409:
                    raise
            primary = self._read(self.route_name)
            assert primary is not None
        self._check_primary(primary)
        if self._read(self.canary_ingress) is None:
            try:
                net.create_namespaced_ingress(self.target.namespace, self._canary(primary, 0))
            except ApiException as err:
                if err.status != 409:
                    raise

    def set_weight(self, weight: int) -> None:
        net: Any = client.NetworkingV1Api(self.api)
        current = self._read(self.canary_ingress)
        if current is None:
            primary = self._read(self.route_name)
            if primary is None:
                raise RouterError(f"Ingress {self.target.namespace}/{self.route_name} does not exist")
            net.create_namespaced_ingress(self.target.namespace, self._canary(primary, weight))
            return
        annotations = current.get("metadata", {}).get("annotations") or {}
        if annotations.get(WEIGHT_ANNOTATION) == str(weight) and annotations.get(CANARY_ANNOTATION) == "true":
            return
        patch = {"metadata": {"annotations": {CANARY_ANNOTATION: "true", WEIGHT_ANNOTATION: str(weight)}}}
        net.patch_namespaced_ingress(self.canary_ingress, self.target.namespace, patch)

    def weight(self) -> int | None:
        current = self._read(self.canary_ingress)
        if current is None:
            return None
        return int((current.get("metadata", {}).get("annotations") or {}).get(WEIGHT_ANNOTATION, "0"))

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            ing = client.NetworkingV1Api(self.api).read_namespaced_ingress(name, self.target.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        obj: dict[str, Any] = self.api.sanitize_for_serialization(ing)
        return obj

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
