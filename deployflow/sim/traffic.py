"""Synthetic user traffic: what a load balancer and kube-proxy do with requests, and what the apps answer.

Entry points are what users' requests arrive through: an HTTPRoute, an Istio VirtualService, an NGINX
Ingress (merged with its canary Ingress), or a Service nothing else routes to. A request picks a backend
Service by weight, then one of its ready pods uniformly (kube-proxy), and the pod answers 500 with its
`sim.deployflow.io/error-rate` probability, else 200, after about `sim.deployflow.io/latency-ms`. A pod being
deleted still gets requests while its Service's Endpoints list it (until the endpoints controller's next pass),
serves them, and counts them in `sim_requests_to_terminating_total`; once its endpoint is gone it gets none.

The steady stream is drawn in aggregate (binomial splits per tick rather than one draw per request),
so hundreds of entry points at tens of requests per second cost little CPU; `send()` and `proxy()`
simulate single requests.

Each request picks its backend at random, as the data planes do (ingress-nginx draws per request against the
canary weight, Envoy against the weighted clusters): the split of N requests is binomial, with a spread of
sqrt(w(1-w)/N), 1.1 points at 50% over 2,000 requests. A check of the split must send enough requests for its
bound to be several spreads wide. Single requests draw from their own generator, not the steady stream's, so a
sequence of `send()` calls on a fresh simulator gives the same answers however often the stream ticked between
them: a surprising split can be replayed.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from deployflow.sim.config import Clock, SimConfig
from deployflow.sim.controllers.pods import PodBehaviour, is_active, is_ready, pod_version
from deployflow.sim.metrics import Metrics
from deployflow.sim.resources import ENDPOINTS, HTTPROUTES, INGRESSES, PODS, SERVICES, VIRTUALSERVICES
from deployflow.sim.routing import Backend, EntryPoint, orphan_canaries, routes
from deployflow.sim.selectors import LabelIndex
from deployflow.sim.store import Obj, Store, WatchEvent

TRAFFIC_ANNOTATION = "sim.deployflow.io/traffic"
NO_BACKEND = "<no backend>"  # the key `send()` counts requests under when the chosen Service had no ready pod

__all__ = ["NO_BACKEND", "Backend", "EntryPoint", "Traffic"]


@dataclass(frozen=True)
class _Pod:
    name: str
    version: str
    error_rate: float
    latency: float  # seconds, the middle of the latency spread
    terminating: bool = False  # deleted, but its endpoint is still listed: it gets requests, and serves them

    @property
    def profile(self) -> tuple[str, float, float, bool]:
        return (self.version, self.error_rate, self.latency, self.terminating)


@dataclass
class _Part:
    """What traffic needs from one namespace, extracted when something in it changes, outside the hot path."""

    services: dict[str, Obj] = field(default_factory=dict)
    pods: dict[str, _Pod] = field(default_factory=dict)
    index: LabelIndex = field(default_factory=LabelIndex)
    routes: list[EntryPoint] = field(default_factory=list)
    orphans: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _View:
    parts: dict[str, _Part] = field(default_factory=dict)
    entries: list[EntryPoint] = field(default_factory=list)
    backends: dict[tuple[str, str], list[_Pod]] = field(default_factory=dict)

    def service(self, namespace: str, name: str) -> Obj | None:
        part = self.parts.get(namespace)
        return part.services.get(name) if part else None


class Traffic:
    def __init__(self, store: Store, clock: Clock, config: SimConfig) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.metrics = Metrics()
        self._rng = random.Random(config.seed)  # the steady stream's draws, made on the simulator's thread
        self._request_rng = random.Random(f"{config.seed}/requests")  # send() and proxy(), from callers' threads
        self._lock = threading.RLock()
        self._view = _View()
        self._dirty: set[str] = set()
        self._all_dirty = True
        for res in (PODS, SERVICES, ENDPOINTS, HTTPROUTES, VIRTUALSERVICES, INGRESSES):
            store.subscribe(res, None, self._changed)
        self._carry: dict[str, float] = {}
        self._last_tick: float | None = None
        self.requests_generated = 0

    # ---- the contract the API layer uses ----------------------------------------------------------------

    async def run(self) -> None:
        interval = max(self.config.tick_seconds, 0.1)
        self.tick()
        while True:
            await asyncio.sleep(interval)
            self.tick()

    def send(self, namespace: str, entry: str, n: int) -> dict[str, int]:
        """Sends `n` requests through an entry point now; returns how many each version served.

        `entry` is `kind/name` (httproute, virtualservice, ingress, service) or a bare name, looked up as
        a route, VirtualService or Ingress first, then as a Service. Requests that found no ready pod are
        counted under `NO_BACKEND`. Raises KeyError when nothing by that name exists.
        """
        with self._lock:
            view = self._current_view()
            ep = self._find_entry(view, namespace, entry)
            out: dict[str, int] = {}
            weights = [b.weight for b in ep.backends]
            total = sum(weights)
            for _ in range(n):
                backend = self._pick(ep.backends, weights, total)
                pods = self._ready_pods(view, backend.namespace, backend.service) if total > 0 else []
                if not pods:
                    self.metrics.record_no_backend(backend.namespace, backend.service, 1)
                    out[NO_BACKEND] = out.get(NO_BACKEND, 0) + 1
                    continue
                pod = pods[self._request_rng.randrange(len(pods))]
                self._serve_one(backend, pod)
                out[pod.version] = out.get(pod.version, 0) + 1
            self.requests_generated += n
            return out

    def proxy(self, namespace: str, service: str, path: str) -> tuple[int, dict[str, Any]]:
        """One request through a Service, as `GET .../services/{name}/proxy/{path}` would make it."""
        with self._lock:
            view = self._current_view()
            if view.service(namespace, service) is None:
                return 404, {"error": f'services "{service}" not found'}
            pods = self._ready_pods(view, namespace, service)
            if not pods:
                self.metrics.record_no_backend(namespace, service, 1)
                return 503, {"error": "no ready endpoints", "service": service}
            pod = pods[self._request_rng.randrange(len(pods))]
            code = self._serve_one(Backend(namespace, service, 1), pod)
            self.requests_generated += 1
            body: dict[str, Any] = {"version": pod.version, "pod": pod.name, "path": "/" + path.lstrip("/")}
            if code != 200:
                body["error"] = "injected failure"
            return code, body

    def metrics_text(self) -> str:
        return self.metrics.text()

    def no_backend(self, namespace: str | None = None, service: str | None = None) -> int:
        return self.metrics.no_backend(namespace, service)

    def to_terminating(self, namespace: str | None = None, service: str | None = None) -> int:
        """Requests sent to pods being deleted while their endpoints were still listed (they were served)."""
        return self.metrics.to_terminating(namespace, service)

    def counts(self, namespace: str) -> dict[str, dict[str, dict[str, int]]]:
        """service -> version -> code -> requests served, for everything recorded so far."""
        return self.metrics.counts(namespace)

    # ---- the steady stream ----------------------------------------------------------------------------------

    def entry_points(self) -> list[EntryPoint]:
        with self._lock:
            return list(self._current_view().entries)

    def tick(self, now: float | None = None) -> int:
        """Advances the stream to simulated time `now`; returns how many requests that generated."""
        with self._lock:
            now = self.clock.now() if now is None else now
            if self._last_tick is None or now <= self._last_tick:
                self._last_tick = now if self._last_tick is None else self._last_tick
                return 0
            dt = now - self._last_tick
            self._last_tick = now
            view = self._current_view()
            generated = 0
            live = set()
            for ep in view.entries:
                live.add(ep.key)
                expected = self.config.traffic_rps * dt + self._carry.get(ep.key, 0.0)
                n = int(expected)
                self._carry[ep.key] = expected - n
                if n:
                    self._serve_many(view, ep, n)
                    generated += n
            for key in [k for k in self._carry if k not in live]:
                del self._carry[key]
            self.requests_generated += generated
            return generated

    def _serve_many(self, view: _View, ep: EntryPoint, n: int) -> None:
        rng = self._rng
        left, weight_left = n, sum(b.weight for b in ep.backends)
        if weight_left <= 0:
            # Every weight zero: the gateway has nowhere to send the request.
            self.metrics.record_no_backend(ep.backends[0].namespace, ep.backends[0].service, n)
            return
        for backend in ep.backends:
            if left <= 0:
                break
            m = left if weight_left <= backend.weight else _binomial(rng, left, backend.weight / weight_left)
            left -= m
            weight_left -= backend.weight
            if m == 0:
                continue
            pods = self._ready_pods(view, backend.namespace, backend.service)
            if not pods:
                self.metrics.record_no_backend(backend.namespace, backend.service, m)
                continue
            # Pods that behave alike are interchangeable for the metrics: split by profile, not by pod.
            profiles: dict[tuple[str, float, float, bool], int] = {}
            for pod in pods:
                profiles[pod.profile] = profiles.get(pod.profile, 0) + 1
            pods_left = len(pods)
            for (version, error_rate, latency, terminating), count in profiles.items():
                k = m if pods_left <= count else _binomial(rng, m, count / pods_left)
                m -= k
                pods_left -= count
                if terminating:
                    self.metrics.record_to_terminating(backend.namespace, backend.service, k)
                errors = _binomial(rng, k, error_rate)
                lo, hi = latency * 0.5, latency * 1.5
                self.metrics.record(backend.namespace, backend.service, version, 500, errors, lo, hi, rng.random())
                self.metrics.record(backend.namespace, backend.service, version, 200, k - errors, lo, hi,
                                    rng.random())

    def _serve_one(self, backend: Backend, pod: _Pod) -> int:
        rng = self._request_rng
        code = 500 if rng.random() < pod.error_rate else 200
        if pod.terminating:
            self.metrics.record_to_terminating(backend.namespace, backend.service, 1)
        seconds = pod.latency * (0.5 + rng.random())
        self.metrics.record(backend.namespace, backend.service, pod.version, code, 1, seconds, seconds, 0.0)
        return code

    def _pick(self, backends: tuple[Backend, ...], weights: list[float], total: float) -> Backend:
        x = self._request_rng.random() * total
        for backend, w in zip(backends, weights, strict=True):
            if x < w:
                return backend
            x -= w
        return backends[-1]

    # ---- the view of the cluster ---------------------------------------------------------------------------

    def _changed(self, event: WatchEvent) -> None:
        # Runs under the store lock on every write: only note where.
        self._dirty.add(event.object.get("metadata", {}).get("namespace", ""))

    def _current_view(self) -> _View:
        if not self._all_dirty and not self._dirty:
            return self._view
        with self.store.lock:
            scope = None if self._all_dirty else self._dirty
            self._dirty, self._all_dirty = set(), False
            view = self._view
            parts = _build_parts(self.store, scope, self.config.ready_delay_seconds)
            for ns in list(view.parts) if scope is None else scope:
                view.parts.pop(ns, None)
            view.parts.update(parts)
            view.backends = {k: v for k, v in view.backends.items() if scope is not None and k[0] not in scope}
            view.entries = _assemble(view.parts)
        return view

    def _ready_pods(self, view: _View, namespace: str, service: str) -> list[_Pod]:
        key = (namespace, service)
        cached = view.backends.get(key)
        if cached is None:
            part = view.parts.get(namespace)
            svc = part.services.get(service) if part else None
            selector = (svc.get("spec") or {}).get("selector") if svc else None
            cached = [part.pods[k] for k in sorted(part.index.select_map(namespace, selector))] if part else []
            view.backends[key] = cached
        return cached

    def _find_entry(self, view: _View, namespace: str, entry: str) -> EntryPoint:
        kind, _, name = entry.rpartition("/")
        kind = {"httproutes": "httproute", "virtualservices": "virtualservice", "vs": "virtualservice",
                "ingresses": "ingress", "ing": "ingress", "services": "service", "svc": "service"}.get(kind, kind)
        candidates = [ep for ep in view.entries if ep.namespace == namespace and ep.name == name
                      and (not kind or ep.kind == kind)]
        if candidates:
            order = ("httproute", "virtualservice", "ingress", "service")
            return min(candidates, key=lambda ep: order.index(ep.kind))
        if kind in ("", "service") and view.service(namespace, name) is not None:
            # Services referenced by a route, or with traffic off, can still be hit directly.
            return EntryPoint("service", namespace, name, (Backend(namespace, name, 1.0),))
        raise KeyError(f"no traffic entry point {entry!r} in namespace {namespace!r}")


# ---- the view's parts ------------------------------------------------------------------------------------------


def _build_parts(store: Store, scope: set[str] | None, ready_delay: float) -> dict[str, _Part]:
    """Per-namespace parts for the namespaces of `scope` (None: all). Call under the store lock."""
    parts: dict[str, _Part] = {}

    def part(ns: str) -> _Part | None:
        if scope is not None and ns not in scope:
            return None
        return parts.setdefault(ns, _Part())

    # kube-proxy sends to the addresses Endpoints list: a pod being deleted gets requests until it leaves them.
    listed = {(ep["metadata"].get("namespace", ""), addr["targetRef"]["name"])
              for ep in store.peek(ENDPOINTS) if part(ep["metadata"].get("namespace", "")) is not None
              for subset in ep.get("subsets") or [] for addr in subset.get("addresses") or []
              if (addr.get("targetRef") or {}).get("name")}
    for pod in store.peek(PODS):
        meta = pod["metadata"]
        ns = meta.get("namespace", "")
        p = part(ns)
        terminating = bool(meta.get("deletionTimestamp")) and (ns, meta["name"]) in listed
        if p is None or not (terminating or (is_active(pod) and is_ready(pod))):
            continue
        b = PodBehaviour.of(meta.get("annotations"), ready_delay)
        p.pods[meta["name"]] = _Pod(meta["name"], pod_version(meta.get("labels")), b.error_rate, b.latency_ms / 1000,
                                    terminating)
        p.index.add(ns, meta["name"], meta.get("labels"))
    for svc in store.peek(SERVICES):
        p = part(svc["metadata"].get("namespace", ""))
        if p is not None:
            p.services[svc["metadata"]["name"]] = svc
    routing: dict[str, tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for i, res in enumerate((HTTPROUTES, VIRTUALSERVICES, INGRESSES)):
        for obj in store.peek(res):
            ns = obj["metadata"].get("namespace", "")
            if part(ns) is not None:
                routing.setdefault(ns, ([], [], []))[i].append(obj)
    for ns, (route_objs, vss, ings) in routing.items():
        parts[ns].routes = routes(route_objs, vss, ings)
        parts[ns].orphans = orphan_canaries(ings, parts[ns].routes)
    return parts


def _assemble(parts: dict[str, _Part]) -> list[EntryPoint]:
    """Routes first, then every Service no route references (across namespaces) and that takes traffic."""
    entries = [ep for ns in sorted(parts) for ep in parts[ns].routes]
    referenced = {(b.namespace, b.service) for ep in entries for b in ep.backends}
    for part in parts.values():
        referenced |= part.orphans
    for ns in sorted(parts):
        for name, svc in sorted(parts[ns].services.items()):
            ann = svc["metadata"].get("annotations") or {}
            if (ns, name) in referenced or str(ann.get(TRAFFIC_ANNOTATION, "")).lower() == "off":
                continue
            if not (svc.get("spec") or {}).get("selector"):
                continue  # selector-less Services front something outside the simulated cluster
            entries.append(EntryPoint("service", ns, name, (Backend(ns, name, 1.0),)))
    return entries


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw in O(min(n, n*p) + 1): Python 3.11's random has no binomialvariate."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:
        return n - _binomial(rng, n, 1 - p)
    if n <= 16:
        return sum(1 for _ in range(n) if rng.random() < p)
    mean = n * p
    if mean < 30:
        # Count successes by jumping over geometric gaps between them.
        log_q = math.log1p(-p)
        count, pos = 0, -1
        while True:
            pos += int(math.log(1.0 - rng.random()) / log_q) + 1
            if pos >= n:
                return count
            count += 1
    draw = round(rng.gauss(mean, math.sqrt(mean * (1 - p))))
    return min(max(draw, 0), n)
