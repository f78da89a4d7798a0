"""Label selectors, as the apiserver, controllers and kube-proxy evaluate them.

Three shapes exist in Kubernetes: a Service's plain `selector` map, a `LabelSelector` object
(`matchLabels` + `matchExpressions`, used by Deployments, ReplicaSets and Jobs) and the string form
of `?labelSelector=` queries (`app=web,tier!=db,env in (a,b),!legacy`). All three reduce to a list
of requirements here so that one matcher serves them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that cannot be parsed; the API layer answers 400 with this message."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist (Equals/NotEquals map to In/NotIn with one value)
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise SelectorError(f"unknown operator {self.operator!r}")


Selector = tuple[Requirement, ...]


def from_map(selector: Mapping[str, str] | None) -> Selector:
    """A Service selector or `matchLabels`: every key must equal its value."""
    return tuple(Requirement(k, "In", frozenset([str(v)])) for k, v in sorted((selector or {}).items()))


def from_label_selector(selector: Mapping[str, Any] | None) -> Selector:
    """A `metav1.LabelSelector`. An empty selector matches everything, as in the apiserver."""
    if not selector:
        return ()
    reqs = list(from_map(selector.get("matchLabels")))
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator", "")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SelectorError(f"matchExpressions[].operator: unsupported value {op!r}")
        reqs.append(Requirement(expr.get("key", ""), op, frozenset(str(v) for v in expr.get("values") or [])))
    return tuple(reqs)


_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def parse(text: str | None) -> Selector:
    """The `labelSelector` query string form."""
    if not text or not text.strip():
        return ()
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        m = _EQ_RE.match(part)
        if m:
            key, op, value = m.groups()
            reqs.append(Requirement(key, "NotIn" if op == "!=" else "In", frozenset([value])))
            continue
        m = _SET_RE.match(part)
        if not m:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        bang, key, set_op, values = m.groups()
        if set_op:
            if bang:
                raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            reqs.append(Requirement(key, "In" if set_op == "in" else "NotIn", vals))
        else:
            reqs.append(Requirement(key, "DoesNotExist" if bang else "Exists"))
    return tuple(reqs)


def _split_top_level(text: str) -> list[str]:
    """Splits on commas outside parentheses: `a in (x,y),b` is two requirements."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def matches(selector: Selector, labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(req.matches(labels) for req in selector)


def matches_map(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """Fast path for Service selectors; an empty or missing map matches nothing here, as for Services."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def parse_field_selector(text: str | None) -> list[tuple[str, bool, str]]:
    """`fieldSelector` query strings (`metadata.name=x,status.phase!=Running`) as (path, equal, value)."""
    out: list[tuple[str, bool, str]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        out.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return out


def field_matches(selector: Iterable[tuple[str, bool, str]], obj: Mapping[str, Any]) -> bool:
    for path, equal, value in selector:
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, Mapping) else None
        actual = "" if current is None else str(current)
        if (actual == value) != equal:
            return False
    return True


class LabelIndex:
    """An inverted index (label key=value -> object keys), so that matching many Services against many
    pods costs a few set intersections instead of a scan per Service."""

    def __init__(self) -> None:
        self._by_label: dict[tuple[str, str, str], set[str]] = {}
        self._all_in_ns: dict[str, set[str]] = {}

    def add(self, namespace: str, key: str, labels: Mapping[str, str] | None) -> None:
        self._all_in_ns.setdefault(namespace, set()).add(key)
        for k, v in (labels or {}).items():
            self._by_label.setdefault((namespace, k, v), set()).add(key)

    def select_map(self, namespace: str, selector: Mapping[str, str] | None) -> set[str]:
        """Keys whose labels carry every pair of a Service-style selector (empty selector: none)."""
        if not selector:
            return set()
        sets = [self._by_label.get((namespace, k, str(v)), set()) for k, v in selector.items()]
        sets.sort(key=len)
        out = set(sets[0])
        for s in sets[1:]:
            out &= s
            if not out:
                break
        return out
