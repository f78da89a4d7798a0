"""The patch types the apiserver accepts: JSON merge, JSON patch and strategic merge (server-side apply, which
builds on strategic merge, is in `apply`).

Strategic merge and apply need to know how each list merges (by `name` for containers, by `containerPort` for
ports, atomically for `args`...): that comes from `openapi.Schema`, which restores the struct tags of k8s.io/api.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from deployflow.sim.openapi import Schema
from deployflow.sim.store import StoreError

Obj = dict[str, Any]


def bad_request(message: str) -> StoreError:
    return StoreError(400, "BadRequest", message)


def invalid_patch(message: str) -> StoreError:
    return StoreError(422, "Invalid", message)


# ---- RFC 7386 JSON merge patch -----------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- RFC 6902 JSON patch -------------------------------------------------------------------------------


def json_patch(target: Obj, ops: Any) -> Obj:
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    try:
        result = jsonpatch.apply_patch(target, ops)
    except jsonpatch.JsonPatchTestFailed as e:
        raise invalid_patch(f"the server rejected our request due to an error in our request: {e}") from e
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError) as e:
        raise invalid_patch(f"the server rejected our request due to an error in our request: {e}") from e
    if not isinstance(result, dict):
        raise invalid_patch("json patch result is not an object")
    return result


# ---- strategic merge patch -----------------------------------------------------------------------------

_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge(original: Any, patch: Any, schema: Schema) -> Any:
    """Applies a strategic merge patch as `kubectl apply`, `kubectl patch --type strategic` and controllers send it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result: Obj = copy.deepcopy(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith(_ORDER):
            orders[key[len(_ORDER):]] = value if isinstance(value, list) else []
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        child = schema.field(key)
        if schema.is_map():
            child = schema.item()
        if isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            strategy, merge_key = schema.list_meta(key)
            if "merge" in strategy.split(","):
                result[key] = _merge_list(result.get(key), value, merge_key, child.item())
            else:
                result[key] = [v for v in copy.deepcopy(value) if not (isinstance(v, dict) and "$patch" in v)]
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            _, merge_key = schema.list_meta(field)
            result[field] = _reorder(result[field], order, merge_key)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list[Any], merge_key: str | None, item_schema: Schema) -> list[Any]:
    current = list(copy.deepcopy(original)) if isinstance(original, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if merge_key is None:
        for value in patch:
            if value not in current:
                current.append(copy.deepcopy(value))
        return current
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"strategic merge patch: list item {item!r} is not an object with key {merge_key!r}")
        if merge_key not in item:
            raise bad_request(f"strategic merge patch: map in list has no merge key {merge_key!r}")
        idx = next(
            (i for i, c in enumerate(current) if isinstance(c, dict) and c.get(merge_key) == item[merge_key]), None
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                current.pop(idx)
            continue
        if idx is None:
            merged = strategic_merge(None, item, item_schema)
            if merged is not None:
                current.append(merged)
        else:
            merged = strategic_merge(current[idx], item, item_schema)
            if merged is None:
                current.pop(idx)
            else:
                current[idx] = merged
    return current


def _reorder(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    def ident(v: Any) -> Any:
        return json.dumps(v.get(merge_key) if merge_key and isinstance(v, dict) else v, sort_keys=True)

    position = {ident(o if not merge_key else {merge_key: o.get(merge_key) if isinstance(o, dict) else o}): i
                for i, o in enumerate(order)}
    return sorted(items, key=lambda v: position.get(ident(v), len(position)))
