"""The `labelSelector` and `fieldSelector` query parameters of list, watch and deletecollection requests.

(Controllers match `LabelSelector` objects with deployflow.sim.selectors; this module parses the query-string form.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from deployflow.sim.store import Obj, StoreError

_SELECTOR_TERM = re.compile(
    r"^\s*(?:(?P<nkey>!)\s*(?P<nexists>[^\s=!(),]+)"
    r"|(?P<key>[^\s=!(),]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s=!(),]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur)
    return terms


def _label_check(term: str) -> Callable[[dict[str, str]], bool]:
    m = _SELECTOR_TERM.match(term)
    if not m:
        raise StoreError(400, "BadRequest", f"unable to parse requirement: invalid label selector {term!r}")
    if m.group("nkey"):
        absent = m.group("nexists")
        return lambda labels: absent not in labels
    key = m.group("key")
    if m.group("op"):
        value, negate = m.group("value"), m.group("op") == "!="
        return lambda labels: (labels.get(key) == value) != negate
    if m.group("setop"):
        values = {x.strip() for x in m.group("values").split(",") if x.strip()}
        negate = m.group("setop") == "notin"
        return lambda labels: (labels.get(key) in values) != negate
    return lambda labels: key in labels


def parse_label_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """Equality (`=`, `==`, `!=`), set (`in`, `notin`) and existence (`key`, `!key`) terms, ANDed."""
    checks = [_label_check(term) for term in _split_terms(selector or "")]
    return lambda labels: all(c(labels) for c in checks)


def _dig(obj: Obj, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def parse_field_selector(selector: str) -> Callable[[Obj], bool]:
    """`metadata.name=x`, `metadata.namespace!=y`, `status.phase=Running`...: fields compared as strings."""
    checks: list[Callable[[Obj], bool]] = []
    for term in _split_terms(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise StoreError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, value = m.groups()

        def check(obj: Obj, path: str = path, op: str = op, value: str = value) -> bool:
            actual = _dig(obj, path)
            actual_s = "" if actual is None else str(actual)
            return actual_s != value if op == "!=" else actual_s == value

        checks.append(check)
    return lambda obj: all(c(obj) for c in checks)


def object_filter(request: web.Request) -> Callable[[Obj], bool]:
    labels = parse_label_selector(request.query.get("labelSelector", ""))
    fields = parse_field_selector(request.query.get("fieldSelector", ""))
    return lambda obj: labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj)
