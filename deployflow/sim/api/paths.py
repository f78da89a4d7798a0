"""Which resource a request path names: `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced or not, with
a name, a subresource and the deprecated `/watch/` prefix."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from deployflow.sim.store import Resource, StoreError

NOT_FOUND = "the server could not find the requested resource"


@dataclass(frozen=True)
class Target:
    res: Resource
    namespace: str | None
    name: str | None
    sub: str | None
    rest: tuple[str, ...]  # the path after the subresource (what a service proxy forwards)
    watching: bool

    @property
    def resource(self) -> str:
        return f"{self.res.plural}/{self.sub}" if self.sub else self.res.plural


def locate(served: tuple[Resource, ...], request: web.Request) -> Target | None:
    """The resource a request is for; None when the path names none (discovery, OpenAPI, the simulator's own
    endpoints). A path that looks like a resource but names none this server serves is a 404 `StoreError`."""
    parts = [p for p in request.path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, parts = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, parts = parts[1], parts[2], parts[3:]
    else:
        return None
    watching = request.query.get("watch") in ("1", "true", "True")
    if parts[0] == "watch":  # the deprecated /watch/ paths, still used by some clients
        watching, parts = True, parts[1:]
    if not parts:
        raise StoreError(404, "NotFound", NOT_FOUND)
    namespace: str | None = None
    if len(parts) >= 3 and parts[0] == "namespaces" and any(
        r.plural == parts[2] and r.namespaced and r.group == group for r in served
    ):
        namespace, parts = parts[1], parts[2:]
    res = next((r for r in served if r.group == group and r.version == version and r.plural == parts[0]), None)
    if res is None:
        raise StoreError(404, "NotFound", NOT_FOUND)
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if sub and sub not in res.subresources:
        raise StoreError(404, "NotFound", NOT_FOUND)
    if res.namespaced and name is not None and namespace is None:
        raise StoreError(404, "NotFound", NOT_FOUND)
    return Target(res, namespace, name, sub, tuple(parts[3:]), watching)
