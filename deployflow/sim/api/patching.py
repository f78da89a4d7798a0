"""PATCH in its four content types: JSON patch (RFC 6902), JSON merge patch, strategic merge patch (list merge
keys from the OpenAPI schema) and server-side apply (field managers, conflicts, `force`)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from deployflow.sim.api.crud import Crud
from deployflow.sim.api.http import field_manager, read_body
from deployflow.sim.openapi import Schema
from deployflow.sim.patch import apply_patch_obj, json_patch, merge_patch, strategic_merge
from deployflow.sim.store import Obj, Resource, StoreError, not_found


def patched(ctype: str, res: Resource, current: Obj, body: Any) -> Obj:
    """The object after a JSON, merge or strategic merge patch (apply has its own path: it tracks field owners)."""
    if ctype == "application/merge-patch+json":
        if not isinstance(body, dict):
            raise StoreError(400, "BadRequest", "merge patch must be a JSON object")
        return merge_patch(current, body)
    if ctype == "application/json-patch+json":
        return json_patch(current, body)
    if ctype == "application/strategic-merge-patch+json":
        if not isinstance(body, dict):
            raise StoreError(400, "BadRequest", "strategic merge patch must be a JSON object")
        if Schema.for_kind(res.group_version, res.kind).schemaless:
            raise StoreError(415, "UnsupportedMediaType", "strategic merge patch is not supported for "
                             f"{res.key}: use a JSON merge patch")
        result = strategic_merge(current, body, Schema.for_kind(res.group_version, res.kind))
        return result if isinstance(result, dict) else {}
    raise StoreError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                     f'accepted media types include: application/json-patch+json, application/merge-patch+json, '
                     f'application/apply-patch+yaml, application/strategic-merge-patch+json; got "{ctype}"')


class Patching(Crud):
    """Crud plus PATCH and server-side apply."""

    async def patch(self, request: web.Request, res: Resource, namespace: str | None, name: str,
                    sub: str | None) -> web.Response:
        body = await read_body(request)
        ctype = request.content_type
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            if ctype == "application/apply-patch+yaml":
                return self._apply(request, res, namespace, name, sub, current, body)
            if current is None:
                raise not_found(res, name)
            changed = patched(ctype, res, current, body)
            obj, unknown = self._prepare(request, res, changed, namespace, name)
            manager = field_manager(request)
            return self._update(request, res, current, obj, unknown, sub, manager, "Update")

    def _apply(self, request: web.Request, res: Resource, namespace: str | None, name: str, sub: str | None,
               current: Obj | None, body: Any) -> web.Response:
        manager = request.query.get("fieldManager")
        if not manager:
            raise StoreError(422, "Invalid", "fieldManager: Required value: is required for apply patch",
                             {"causes": [{"reason": "FieldValueRequired", "field": "fieldManager",
                                          "message": "Required value: is required for apply patch"}]})
        force = request.query.get("force") in ("true", "1", "True")
        if not isinstance(body, dict):
            raise StoreError(400, "BadRequest", "apply patch must be an object")
        applied, unknown = self._prepare(request, res, copy.deepcopy(body), namespace, name)
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise StoreError(400, "BadRequest", "apiVersion and kind must be set in an apply patch")
        schema = Schema.for_kind(res.group_version, res.kind)
        if current is None:
            if sub:
                raise not_found(res, name)
            obj = apply_patch_obj(None, applied, manager, force, schema, res)
            return self._create(request, res, namespace, obj, unknown, manager, "Apply")
        obj = apply_patch_obj(current, applied, manager, force, schema, res, subresource=sub)
        return self._update(request, res, current, obj, unknown, sub, manager, "Apply")
