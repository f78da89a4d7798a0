"""Label selectors, as controllers and kube-proxy evaluate them.

Two shapes matter to controllers: a Service's plain `selector` map and a `LabelSelector` object
(`matchLabels` + `matchExpressions`, used by Deployments, ReplicaSets and Jobs). Both reduce to a list of
requirements so that one matcher serves them. (The `?labelSelector=` query strings are the API layer's.)
"""

from __future__ import annotations

from collections.abc import Mapping
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


def matches(selector: Selector, labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(req.matches(labels) for req in selector)


class LabelIndex:
    """An inverted index (label key=value -> object keys), so that matching many Services against many
    pods costs a few set intersections instead of a scan per Service."""

    def __init__(self) -> None:
        self._by_label: dict[tuple[str, str, str], set[str]] = {}

    def add(self, namespace: str, key: str, labels: Mapping[str, str] | None) -> None:
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
