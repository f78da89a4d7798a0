"""Entry points from routing objects: which Services, at which weights, an HTTPRoute, an Istio VirtualService or
an NGINX Ingress (merged with its canary Ingress) sends users' requests to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from deployflow.sim.store import Obj

CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
CANARY_TOTAL = "nginx.ingress.kubernetes.io/canary-weight-total"


@dataclass(frozen=True)
class Backend:
    namespace: str
    service: str
    weight: float


@dataclass(frozen=True)
class EntryPoint:
    kind: str  # httproute, virtualservice, ingress, service
    namespace: str
    name: str
    backends: tuple[Backend, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def routes(httproutes: Iterable[Obj], virtualservices: Iterable[Obj], ingresses: Iterable[Obj]) -> list[EntryPoint]:
    out: list[EntryPoint] = []
    for route in httproutes:
        ns, name = route["metadata"].get("namespace", ""), route["metadata"]["name"]
        rules = (route.get("spec") or {}).get("rules") or []
        refs = (rules[0].get("backendRefs") or []) if rules else []
        backends = tuple(
            Backend(ref.get("namespace") or ns, ref["name"], float(ref.get("weight", 1)))
            for ref in refs
            if ref.get("name") and ref.get("kind", "Service") == "Service"
        )
        if backends:
            out.append(EntryPoint("httproute", ns, name, backends))
    for vs in virtualservices:
        ns, name = vs["metadata"].get("namespace", ""), vs["metadata"]["name"]
        http = (vs.get("spec") or {}).get("http") or []
        routes = (http[0].get("route") or []) if http else []
        vs_backends = []
        for r in routes:
            host = str((r.get("destination") or {}).get("host", ""))
            if not host:
                continue
            svc, _, rest = host.partition(".")
            svc_ns = rest.split(".")[0] if rest and rest.split(".")[0] != "svc" else ns
            weight = r.get("weight")
            vs_backends.append(Backend(svc_ns, svc, float(weight if weight is not None else
                                                          (100 if len(routes) == 1 else 0))))
        if vs_backends:
            out.append(EntryPoint("virtualservice", ns, name, tuple(vs_backends)))
    primaries: list[Obj] = []
    canaries: dict[tuple[str, str], list[Obj]] = {}
    for ing in ingresses:
        ann = ing["metadata"].get("annotations") or {}
        if str(ann.get(CANARY, "")).lower() == "true":
            canaries.setdefault((ing["metadata"].get("namespace", ""), _ingress_host(ing)), []).append(ing)
        else:
            primaries.append(ing)
    for ing in primaries:
        ns, name = ing["metadata"].get("namespace", ""), ing["metadata"]["name"]
        primary = _ingress_service(ing)
        if not primary:
            continue
        ing_backends: list[Backend] = []
        total = 100.0
        canary_weight = 0.0
        for canary in canaries.get((ns, _ingress_host(ing)), []):
            ann = canary["metadata"].get("annotations") or {}
            canary_svc = _ingress_service(canary)
            total = _number(ann.get(CANARY_TOTAL), 100.0)
            w = min(max(_number(ann.get(CANARY_WEIGHT), 0.0), 0.0), total)
            if canary_svc:
                ing_backends.append(Backend(ns, canary_svc, w))
                canary_weight += w
        ing_backends.insert(0, Backend(ns, primary, max(total - canary_weight, 0.0)))
        out.append(EntryPoint("ingress", ns, name, tuple(ing_backends)))
    return out


def orphan_canaries(ingresses: Iterable[Obj], entries: list[EntryPoint]) -> set[tuple[str, str]]:
    """Services behind canary Ingresses without a primary: NGINX sends them nothing, so neither do we."""
    routed = {(b.namespace, b.service) for ep in entries for b in ep.backends}
    out = set()
    for ing in ingresses:
        ann = ing["metadata"].get("annotations") or {}
        svc = _ingress_service(ing)
        ns = ing["metadata"].get("namespace", "")
        if str(ann.get(CANARY, "")).lower() == "true" and svc and (ns, svc) not in routed:
            out.add((ns, svc))
    return out


def _ingress_host(ing: Obj) -> str:
    rules = (ing.get("spec") or {}).get("rules") or []
    return str(rules[0].get("host", "")) if rules else ""


def _ingress_service(ing: Obj) -> str | None:
    spec = ing.get("spec") or {}
    for rule in spec.get("rules") or []:
        for path in ((rule.get("http") or {}).get("paths")) or []:
            name = ((path.get("backend") or {}).get("service") or {}).get("name")
            if name:
                return str(name)
    name = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    return str(name) if name else None


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
