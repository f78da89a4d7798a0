"""Server-side apply: field ownership in `managedFields`, conflicts between managers, and removing the fields a
manager stops applying.

A field set is a set of paths; a path is a tuple of FieldsV1 elements: "f:<field>", "k:<json of the merge key>"
for an item of a keyed list, "v:<json value>" for a member of a set, "." for a keyed item itself. `managedFields`
stores them as the nested FieldsV1 objects a real apiserver returns.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from deployflow.sim.openapi import Schema
from deployflow.sim.patch import Obj, strategic_merge
from deployflow.sim.store import StoreError, now_iso

Path = tuple[str, ...]
_UNTRACKED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                   "deletionTimestamp", "selfLink"}


def leaves(obj: Obj, schema: Schema, status: bool = False) -> dict[Path, Any]:
    """Every owned position of an object and its value; `status` picks the status subresource's part."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if (key == "status") != status:
            continue
        if key == "metadata" and isinstance(value, dict):
            tracked = {k: v for k, v in value.items() if k not in _UNTRACKED_META}
            if tracked:
                _walk(tracked, schema.field("metadata"), ("f:metadata",), out)
        else:
            _walk_value(value, schema.field(key), ("f:" + key,), out)
    return out


def _walk(obj: Obj, schema: Schema, prefix: Path, out: dict[Path, Any]) -> None:
    if not obj:
        out[prefix] = {}
        return
    for key, value in obj.items():
        child = schema.item() if schema.is_map() else schema.field(key)
        strategy, merge_key = schema.list_meta(key) if not schema.is_map() else ("", None)
        path = prefix + ("f:" + key,)
        if isinstance(value, list) and "merge" in strategy.split(","):
            if not value:
                out[path] = []
            for item in value:
                if merge_key and isinstance(item, dict):
                    item_path = path + ("k:" + json.dumps({merge_key: item.get(merge_key)}, separators=(",", ":")),)
                    out[item_path + (".",)] = item.get(merge_key)
                    _walk(item, child.item(), item_path, out)
                else:
                    out[path + ("v:" + json.dumps(item, separators=(",", ":")),)] = item
        else:
            _walk_value(value, child, path, out)


def _walk_value(value: Any, schema: Schema, path: Path, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value:
        _walk(value, schema, path, out)
    else:
        out[path] = value


def to_fields_v1(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    return root


def from_fields_v1(fields: Obj, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for element, child in (fields or {}).items():
        path = prefix + (element,)
        if isinstance(child, dict) and child:
            out |= from_fields_v1(child, path)
        else:
            out.add(path)
    return out


def _entries(obj: Obj) -> list[Obj]:
    return list(obj.get("metadata", {}).get("managedFields") or [])


def _owned(entry: Obj) -> set[Path]:
    return from_fields_v1(entry.get("fieldsV1") or {})


def _set_entries(obj: Obj, entries: list[Obj]) -> None:
    entries = [e for e in entries if e.get("fieldsV1")]
    if entries:
        obj.setdefault("metadata", {})["managedFields"] = entries
    else:
        obj.setdefault("metadata", {}).pop("managedFields", None)


def _entry(manager: str, operation: str, api_version: str, paths: set[Path], subresource: str | None) -> Obj:
    entry: Obj = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": _now(),
                  "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths)}
    if subresource:
        entry["subresource"] = subresource
    return entry


def _now() -> str:
    return now_iso()


def _same_entry(e: Obj, manager: str, operation: str, subresource: str | None) -> bool:
    return e.get("manager") == manager and e.get("operation") == operation and e.get("subresource") == subresource


def _upsert(entries: list[Obj], manager: str, operation: str, api_version: str, paths: set[Path],
            subresource: str | None) -> list[Obj]:
    out = []
    placed = False
    for e in entries:
        if _same_entry(e, manager, operation, subresource):
            placed = True
            if _owned(e) == paths:
                out.append(e)  # unchanged ownership keeps its timestamp, so a no-op write stays a no-op
            elif paths:
                out.append(_entry(manager, operation, api_version, paths, subresource))
        else:
            out.append(e)
    if not placed and paths:
        out.append(_entry(manager, operation, api_version, paths, subresource))
    return out


def _strip(entries: list[Obj], paths: set[Path], except_manager: tuple[str, str, str | None] | None) -> list[Obj]:
    """Takes `paths` (and everything under them) away from every entry but `except_manager`."""
    out = []
    for e in entries:
        if except_manager and _same_entry(e, *except_manager):
            out.append(e)
            continue
        owned = _owned(e)
        kept = {p for p in owned if not any(p[: len(q)] == q for q in paths)}
        if kept == owned:
            out.append(e)
        elif kept:
            out.append({**e, "time": _now(), "fieldsV1": to_fields_v1(kept)})
    return out


class FieldManagers:
    """Records who changed what on non-apply writes (operation Update), as the apiserver does for every write."""

    def record(self, res: Any, old: Obj | None, new: Obj, manager: str, operation: str,
               subresource: str | None = None) -> None:
        schema = Schema.for_kind(res.group_version, res.kind)
        status = subresource == "status"
        before = leaves(old, schema, status) if old is not None else {}
        after = leaves(new, schema, status)
        changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
        removed = {p for p in before if p not in after}
        entries = _entries(old) if old is not None else _entries(new)
        entries = _strip(entries, changed | removed, None)
        mine = next((_owned(e) for e in entries if _same_entry(e, manager, operation, _sub(subresource))), set())
        entries = _upsert(entries, manager, operation, res.group_version, (mine - removed) | changed,
                          _sub(subresource))
        _set_entries(new, entries)


def _sub(subresource: str | None) -> str | None:
    return subresource if subresource in ("status", "scale") else None


_MISSING = object()


def _conflict(res: Any, name: str, conflicts: dict[Path, list[str]]) -> StoreError:
    causes = []
    lines = []
    for path, managers in sorted(conflicts.items()):
        field = "." + ".".join(p[2:] if p.startswith("f:") else f"[{p[2:]}]" for p in path if p != ".")
        field = field.replace(".[", "[")
        for m in managers:
            causes.append({"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": field})
            lines.append(f'- {field} (owned by "{m}")')
    count = len(causes)
    return StoreError(
        409,
        "Conflict",
        f"Apply failed with {count} conflict{'s' if count != 1 else ''}: " + "; ".join(
            f'conflict with "{c["message"][15:-1]}": {c["field"]}' for c in causes),
        {"name": name, "group": res.group, "kind": res.plural, "causes": causes},
    )


def apply_patch_obj(current: Obj | None, applied: Obj, manager: str, force: bool, schema: Schema, res: Any,
                    subresource: str | None = None) -> Obj:
    """Server-side apply: merges `applied` into `current` and moves field ownership to `manager`.

    A field owned by another manager with a different value is a 409 conflict unless `force`; then the other
    manager loses it. Fields this manager applied before and no longer applies are removed when nobody else
    owns them. Equal values are shared, so two managers applying the same value never conflict.
    """
    status = subresource == "status"
    applied_leaves = leaves(applied, schema, status)
    applied_paths = set(applied_leaves)
    me = (manager, "Apply", _sub(subresource))
    if current is None:
        obj = copy.deepcopy(applied)
        _set_entries(obj, [_entry(manager, "Apply", res.group_version, applied_paths, _sub(subresource))])
        return obj
    entries = _entries(current)
    current_leaves = leaves(current, schema, status)
    conflicts: dict[Path, list[str]] = {}
    for e in entries:
        if _same_entry(e, *me):
            continue
        owned = _owned(e)
        for path in applied_paths & owned:
            if path[-1] == "." or applied_leaves[path] == {}:
                continue  # owning an item or an empty map is not a value anyone can disagree with
            if current_leaves.get(path, _MISSING) != applied_leaves[path]:
                conflicts.setdefault(path, []).append(e.get("manager", ""))
    if conflicts and not force:
        raise _conflict(res, current["metadata"].get("name", ""), conflicts)
    if conflicts:
        entries = _strip(entries, set(conflicts), me)
    previous = next((_owned(e) for e in entries if _same_entry(e, *me)), set())
    others: set[Path] = set()
    for e in entries:
        if not _same_entry(e, *me):
            others |= _owned(e)
    dropped = {p for p in previous - applied_paths if p not in others}
    obj = copy.deepcopy(current)
    # Whole list items first (found by their key while it is still there), then single fields, deepest first.
    for path in sorted(dropped, key=lambda p: (p[-1] != ".", len(p) if p[-1] == "." else -len(p))):
        if path[-1] == "." and any(o[: len(path) - 1] == path[:-1] for o in others | applied_paths):
            continue
        _remove(obj, path[:-1] if path[-1] == "." else path, schema)
    merged = strategic_merge(obj, {k: v for k, v in applied.items() if (k == "status") == status or k in (
        "apiVersion", "kind", "metadata")}, schema)
    merged["metadata"] = {**merged.get("metadata", {}), **{
        k: v for k, v in current.get("metadata", {}).items() if k in _UNTRACKED_META}}
    entries = _upsert(entries, manager, "Apply", res.group_version, applied_paths, _sub(subresource))
    _set_entries(merged, entries)
    return merged


def _remove(obj: Obj, path: Path, schema: Schema) -> None:
    """Removes the position `path` names; maps left empty by it go too."""
    trail: list[tuple[Any, Any]] = []
    node: Any = obj
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f" and isinstance(node, dict) and rest in node:
            trail.append((node, rest))
            node = node[rest]
        elif kind == "k" and isinstance(node, list):
            key = json.loads(rest)
            idx = next((i for i, it in enumerate(node) if isinstance(it, dict)
                        and all(it.get(k) == v for k, v in key.items())), None)
            if idx is None:
                return
            trail.append((node, idx))
            node = node[idx]
        elif kind == "v" and isinstance(node, list):
            value = json.loads(rest)
            if value not in node:
                return
            trail.append((node, node.index(value)))
            node = value
        else:
            return
    while trail:
        parent, key = trail.pop()
        del parent[key]
        if parent or not trail:
            break
