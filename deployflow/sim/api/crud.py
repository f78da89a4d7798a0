"""Objects through the API: list (selectors, pages, tables), create, replace, delete (preconditions, cascade,
orphaning), deletecollection, with dry runs, defaults, validation and managedFields as the apiserver keeps them."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from aiohttp import web

from deployflow.sim import resources as R
from deployflow.sim.api.errors import invalid
from deployflow.sim.api.filters import object_filter
from deployflow.sim.api.http import (
    field_manager,
    is_dry_run,
    json_list_response,
    json_response,
    read_body,
    wants_table,
    warning_headers,
)
from deployflow.sim.api.tables import table_for
from deployflow.sim.api.validation import apply_defaults, prune, validate
from deployflow.sim.apply import FieldManagers
from deployflow.sim.openapi import Schema
from deployflow.sim.store import Obj, Resource, Store, StoreError, not_found, now_iso


class Crud:
    """Create, read, update and delete on the store, for the resources this server serves."""

    def __init__(self, store: Store, served: tuple[Resource, ...] = R.ALL) -> None:
        self.store = store
        self.served = served
        self.managers = FieldManagers()
        self._next_ip = 0

    def get_object(self, request: web.Request, res: Resource, namespace: str | None, name: str) -> web.Response:
        obj = self.store.get(res, namespace, name)
        if obj is None:
            raise not_found(res, name)
        if wants_table(request):
            return json_response(table_for(res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                           request.query.get("includeObject", "Metadata")))
        return json_response(obj)

    def list_objects(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        keep = object_filter(request)
        table = wants_table(request)
        with self.store.lock:
            # A plain list goes out as the stored objects' JSON, encoded once per version: no copies.
            items: list[Any] = (self.store.list(res, namespace, keep) if table
                                else self.store.list_encoded(res, namespace, keep))
            rv = str(self.store.resource_version)
        meta: Obj = {"resourceVersion": rv}
        limit = int(request.query.get("limit", "0") or 0)
        start = 0
        if cont := request.query.get("continue"):
            try:
                start, rv = (lambda d: (int(d["start"]), d["rv"]))(json.loads(base64.b64decode(cont)))
            except (ValueError, KeyError) as e:
                raise StoreError(400, "BadRequest", "invalid continue token") from e
            meta["resourceVersion"] = rv
        if limit > 0:
            rest = len(items) - start - limit
            items = items[start:start + limit]
            if rest > 0:
                token = {"start": start + limit, "rv": rv}
                meta["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
                meta["remainingItemCount"] = rest
        else:
            items = items[start:]
        if table:
            return json_response(table_for(res, items, meta, request.query.get("includeObject", "Metadata")))
        return json_list_response({"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta},
                                  items)

    def _prepare(self, request: web.Request, res: Resource, obj: Any, namespace: str | None,
                 name: str | None) -> tuple[Obj, list[str]]:
        """Checks a request body for create or update: kind, names, namespace; prunes unknown fields."""
        if not isinstance(obj, dict):
            raise StoreError(400, "BadRequest", "the body of the request was in an unknown format")
        for field, expected in (("apiVersion", res.group_version), ("kind", res.kind)):
            if obj.get(field) and obj[field] != expected:
                raise StoreError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) and "
                                 f"kind ({obj.get('kind')}) do not match the resource {res.key}")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise StoreError(400, "BadRequest", "metadata must be an object")
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise StoreError(400, "BadRequest", "the namespace of the provided object does not match the "
                                 "namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") and meta["name"] != name:
            raise StoreError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if name is not None:
            meta["name"] = name
        unknown: list[str] = []
        pruned = prune(obj, Schema.for_kind(res.group_version, res.kind), "", unknown)
        if unknown and request.query.get("fieldValidation") == "Strict":
            raise StoreError(400, "BadRequest", "strict decoding error: " + ", ".join(
                f'unknown field "{u}"' for u in unknown))
        return pruned, unknown

    def _allocate_cluster_ip(self, svc: Obj) -> None:
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName" or spec.get("clusterIP"):
            return
        self._next_ip += 1
        ip = f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    def _check_namespace(self, res: Resource, namespace: str | None) -> None:
        if res.namespaced and self.store.get(R.NAMESPACES, None, namespace or "") is None:
            raise StoreError(404, "NotFound", f'namespaces "{namespace}" not found',
                             {"name": namespace, "kind": "namespaces"})

    async def create(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        obj, unknown = self._prepare(request, res, await read_body(request), namespace, None)
        return self._create(request, res, namespace, obj, unknown, field_manager(request), "Update")

    def _create(self, request: web.Request, res: Resource, namespace: str | None, obj: Obj, unknown: list[str],
                manager: str, operation: str) -> web.Response:
        self._check_namespace(res, namespace)
        apply_defaults(res, obj)
        validate(res, obj)
        meta = obj["metadata"]
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid(res, "", [("FieldValueRequired", "metadata.name", "Required value: name or "
                                     "generateName is required")])
        if "status" in res.subresources:
            obj.pop("status", None)
        if res.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if res.kind == "Service":
            self._allocate_cluster_ip(obj)
        if operation == "Update" or not meta.get("managedFields"):
            self.managers.record(res, None, obj, manager, operation)
        if is_dry_run(request):
            with self.store.lock:
                if self.store.get(res, namespace, meta.get("name", "")) is not None:
                    raise StoreError(409, "AlreadyExists", f'{res.key} "{meta["name"]}" already exists')
            meta.setdefault("uid", "00000000-0000-0000-0000-000000000000")
            meta["creationTimestamp"] = now_iso()
            obj["apiVersion"], obj["kind"] = res.group_version, res.kind
            return json_response(obj, 201, warning_headers(unknown))
        created = self.store.create(res, obj)
        return json_response(created, 201, warning_headers(unknown))

    async def replace(self, request: web.Request, res: Resource, namespace: str | None, name: str,
                      sub: str | None) -> web.Response:
        obj, unknown = self._prepare(request, res, await read_body(request), namespace, name)
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            if current is None:
                raise not_found(res, name)
            return self._update(request, res, current, obj, unknown, sub, field_manager(request), "Update")

    def _update(self, request: web.Request, res: Resource, current: Obj, new: Obj, unknown: list[str],
                sub: str | None, manager: str, operation: str) -> web.Response:
        if sub == "status":
            merged = copy.deepcopy(current)
            merged["status"] = new.get("status", {})
            if new["metadata"].get("resourceVersion"):
                merged["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"]
            new = merged
        elif "status" in res.subresources:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        if res.kind == "Service" and isinstance(new.get("spec"), dict):
            for keep in ("clusterIP", "clusterIPs"):  # allocated once, kept when a client omits them
                if keep in (current.get("spec") or {}) and not new["spec"].get(keep):
                    new["spec"][keep] = current["spec"][keep]
        apply_defaults(res, new)
        validate(res, new, current)
        # A write that sets managedFields itself (kubectl's client-side-apply migration) is taken as sent.
        sent_fields = new["metadata"].get("managedFields")
        if operation == "Update" and (sent_fields is None or sent_fields == current["metadata"].get("managedFields")):
            new["metadata"]["managedFields"] = copy.deepcopy(current["metadata"].get("managedFields", []))
            self.managers.record(res, current, new, manager, operation, subresource=sub)
        if is_dry_run(request):
            rv = new["metadata"].get("resourceVersion")
            if rv and str(rv) != current["metadata"]["resourceVersion"]:
                raise StoreError(409, "Conflict", f'Operation cannot be fulfilled on {res.key} '
                                 f'"{current["metadata"]["name"]}": the object has been modified; please apply your '
                                 "changes to the latest version and try again")
            for keep in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if keep in current["metadata"]:
                    new["metadata"][keep] = current["metadata"][keep]
            return json_response(new, 200, warning_headers(unknown))
        updated = self.store.update(res, new, subresource="status" if sub == "status" else None)
        return json_response(updated, 200, warning_headers(unknown))

    async def delete(self, request: web.Request, res: Resource, namespace: str | None, name: str) -> web.Response:
        opts = await read_body(request) or {}
        policy = request.query.get("propagationPolicy") or (opts.get("propagationPolicy") if isinstance(
            opts, dict) else None)
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            if current is None:
                raise not_found(res, name)
            pre = (opts.get("preconditions") or {}) if isinstance(opts, dict) else {}
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise StoreError(409, "Conflict", f"Precondition failed: UID in precondition: {pre['uid']}, "
                                 f"UID in object meta: {current['metadata']['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise StoreError(409, "Conflict", "Precondition failed: ResourceVersion in precondition: "
                                 f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                 f"{current['metadata']['resourceVersion']}")
            if res.kind == "Namespace" and name in ("default", "kube-system", "kube-public"):
                raise StoreError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be '
                                 "deleted", {"name": name, "kind": "namespaces"})
            if is_dry_run(request):
                return json_response(current)
            if policy == "Orphan" or (isinstance(opts, dict) and opts.get("orphanDependents") is True):
                policy = "Orphan"
            gone = self.store.delete(res, namespace, name, grace_seconds=_grace(request, opts),
                                     propagation=policy)
        if res.kind == "Pod" or gone["metadata"].get("finalizers"):
            # Deleted gracefully or held by finalizers: the apiserver answers with the object as it stays.
            return json_response(gone)
        return json_response({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": res.group, "kind": res.plural, "uid": gone["metadata"]["uid"]},
        })

    async def delete_collection(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        keep = object_filter(request)
        items = self.store.list(res, namespace, keep)
        if not is_dry_run(request):
            for obj in items:
                try:
                    self.store.delete(res, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                                      grace_seconds=_grace(request, None))
                except StoreError as e:
                    if e.code != 404:  # already gone through a cascade
                        raise
        return json_response({"kind": f"{res.kind}List", "apiVersion": res.group_version,
                              "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items})


def _grace(request: web.Request, opts: Any) -> float | None:
    """DeleteOptions.gracePeriodSeconds, from the query or the body; None: the object's own."""
    raw = request.query.get("gracePeriodSeconds")
    if raw is None and isinstance(opts, dict):
        raw = opts.get("gracePeriodSeconds")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except (TypeError, ValueError) as e:
        raise StoreError(400, "BadRequest", f"gracePeriodSeconds: invalid value {raw!r}") from e
