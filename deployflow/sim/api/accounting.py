"""How many Kubernetes API requests the simulator served, by verb, resource, client and label, so a benchmark can
report the API requests a release costs.

Verbs are the apiserver's own (`apiserver_request_total`): GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE,
DELETECOLLECTION. The client is the request's User-Agent; the label is the `X-Deployflow-Label` header when a caller
sets one, else the `fieldManager` query parameter, else empty. Requests for the simulator's own endpoints (metrics,
health, these counts) are not API traffic and are not counted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from aiohttp import web

from deployflow.sim.api.paths import Target
from deployflow.sim.metrics import labels_text

LABEL_HEADER = "X-Deployflow-Label"
MAX_CLIENT_LENGTH = 160  # a User-Agent is free text: keep one odd client from growing every series key

NOT_COUNTED = frozenset({"metrics", "debug", "healthz", "livez", "readyz"})


@dataclass(frozen=True, order=True)
class RequestKey:
    verb: str
    resource: str  # plural, with "/<subresource>"; empty for discovery, OpenAPI and /version
    client: str
    label: str
    code: int


class Series(TypedDict):
    verb: str
    resource: str
    client: str
    label: str
    code: int
    count: int


class Snapshot(TypedDict):
    total: int
    by_verb: dict[str, int]
    by_client: dict[str, int]
    by_label: dict[str, int]
    series: list[Series]


def verb(request: web.Request, target: Target | None) -> str:
    """The apiserver's verb for a request: LIST and WATCH are reads of a collection, APPLY a server-side apply."""
    method = request.method
    if target is None:
        return method
    if method == "GET":
        return "WATCH" if target.watching else "GET" if target.name is not None else "LIST"
    if method == "PATCH" and request.content_type == "application/apply-patch+yaml":
        return "APPLY"
    if method == "DELETE" and target.name is None:
        return "DELETECOLLECTION"
    return method


def is_counted(request: web.Request) -> bool:
    head = request.path.strip("/").split("/", 1)[0]
    return head not in NOT_COUNTED


class RequestCounts:
    """Thread-safe: the simulator serves on its own thread while tests and benchmarks read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[RequestKey, int] = {}

    def count(self, request: web.Request, code: int, target: Target | None) -> None:
        key = RequestKey(
            verb=verb(request, target),
            resource=target.resource if target is not None else "",
            client=request.headers.get("User-Agent", "")[:MAX_CLIENT_LENGTH],
            label=request.headers.get(LABEL_HEADER) or request.query.get("fieldManager", ""),
            code=code,
        )
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self, filters: Mapping[str, str] | None = None, reset: bool = False) -> Snapshot:
        """Totals by verb, client and label and every series, for the requests matching `filters` (exact values of
        verb, resource, client, label); `reset` clears all counts in the same step, so nothing falls between."""
        wanted = {k: v for k, v in (filters or {}).items() if k in ("verb", "resource", "client", "label")}
        with self._lock:
            items = sorted(self._counts.items())
            if reset:
                self._counts.clear()
        series = [(k, n) for k, n in items if all(str(getattr(k, f)) == v for f, v in wanted.items())]
        by: dict[str, dict[str, int]] = {"verb": {}, "client": {}, "label": {}}
        for key, n in series:
            for field, totals in by.items():
                value = getattr(key, field)
                totals[value] = totals.get(value, 0) + n
        return {
            "total": sum(n for _, n in series),
            "by_verb": by["verb"],
            "by_client": by["client"],
            "by_label": by["label"],
            "series": [Series(verb=k.verb, resource=k.resource, client=k.client, label=k.label, code=k.code,
                              count=n) for k, n in series],
        }

    def metrics_text(self) -> str:
        with self._lock:
            items = sorted(self._counts.items())
        lines = [
            "# HELP sim_api_requests_total Kubernetes API requests the simulator served, by apiserver verb, resource,"
            " client (User-Agent), label and response code.",
            "# TYPE sim_api_requests_total counter",
        ]
        for k, n in items:
            labels = labels_text(verb=k.verb, resource=k.resource, client=k.client, label=k.label, code=str(k.code))
            lines.append(f"sim_api_requests_total{labels} {n}")
        return "\n".join(lines) + "\n"
