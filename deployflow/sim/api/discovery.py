"""Discovery and OpenAPI: `/version`, `/api`, `/apis`, the resource lists kubectl caches, and `/openapi/v3`
documents with the hashes clients key their caches on."""

from __future__ import annotations

from aiohttp import web

from deployflow.sim.api.http import json_response
from deployflow.sim.openapi import document_hash, group_version_document
from deployflow.sim.store import Obj, Resource, StoreError

KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-deployflow-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def group_list(served: tuple[Resource, ...]) -> Obj:
    groups: dict[str, list[str]] = {}
    for res in served:
        if res.group:
            versions = groups.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
            for g, vs in groups.items()
        ],
    }


def resource_list(served: tuple[Resource, ...], group: str, version: str) -> web.Response:
    matching = [r for r in served if r.group == group and r.version == version]
    if not matching:
        raise StoreError(404, "NotFound", "the server could not find the requested resource")
    out = []
    for res in matching:
        entry: Obj = {
            "name": res.plural,
            "singularName": res.singular or res.kind.lower(),
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": list(res.verbs),
            "storageVersionHash": document_hash({"k": res.key})[:12],
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        out.append(entry)
        for sub in res.subresources:
            sub_entry: Obj = {"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": res.namespaced,
                              "kind": res.kind, "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "log":
                sub_entry.update(kind="Pod", verbs=["get"])
            elif sub == "proxy":
                sub_entry.update(kind="ServiceProxyOptions",
                                 verbs=["create", "delete", "get", "patch", "update"])
            out.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})


def openapi(served: tuple[Resource, ...], parts: list[str]) -> web.Response:
    if parts == ["v3"]:
        paths = {}
        for gv in sorted({r.group_version for r in served}):
            key = f"api/{gv}" if "/" not in gv else f"apis/{gv}"
            doc = _gv_doc(served, gv)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={document_hash(doc)}"}
        return json_response({"paths": paths})
    if len(parts) >= 3 and parts[0] == "v3":
        rest = parts[1:]
        gv = rest[1] if rest[0] == "api" and len(rest) == 2 else "/".join(rest[1:3]) if rest[0] == "apis" else ""
        if any(r.group_version == gv for r in served):
            return json_response(_gv_doc(served, gv))
    raise StoreError(404, "NotFound", "the server could not find the requested resource")

def _gv_doc(served: tuple[Resource, ...], gv: str) -> Obj:
    return group_version_document(gv, tuple(r for r in served if r.group_version == gv))
