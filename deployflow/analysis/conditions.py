"""A small, safe condition language for analysis: `result < 0.02`, `result[0] >= 0.95`,
`result > max(2 * baseline, 0.01) and result > 0`.

Expressions are parsed with Python's own parser (`ast`, expression mode) and then walked by an interpreter that
knows only numbers, the names it is given, arithmetic, comparisons, `and`/`or`/`not` (also spelled `&&`, `||`,
`!`), indexing and a few pure functions. Nothing is ever handed to `eval`, and anything else is refused when the
spec is read.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ConditionError(ValueError):
    """The condition is not valid (raised when it is compiled: at spec validation time)."""


class EvaluationError(ValueError):
    """The condition could not be evaluated against these values (a measurement judged `Error`)."""


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "max": lambda *a: max(x for v in a for x in _as_list(v)),
    "min": lambda *a: min(x for v in a for x in _as_list(v)),
    "abs": abs,
    "len": lambda v: len(_as_list(v)),
    "sum": lambda v: sum(_as_list(v)),
    "avg": lambda v: sum(_as_list(v)) / len(_as_list(v)),
    "isNaN": _is_nan,
    "isnan": _is_nan,
    "all": lambda v: all(_as_list(v)),
    "any": lambda v: any(_as_list(v)),
}
CONSTANTS: dict[str, Any] = {"true": True, "false": False, "True": True, "False": False}
VARIABLES = ("result", "baseline")

# Argo Rollouts' conditions are written in a C-like syntax; accept its boolean operators too.
_SPELLINGS = [(re.compile(r"&&"), " and "), (re.compile(r"\|\|"), " or "), (re.compile(r"!(?!=)"), " not ")]


@dataclass(frozen=True)
class Condition:
    source: str
    tree: ast.Expression

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        try:
            value = _Interpreter(variables).visit(self.tree.body)
        except EvaluationError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, OverflowError) as err:
            raise EvaluationError(f"cannot evaluate `{self.source}`: {err}") from None
        if not isinstance(value, bool):
            raise EvaluationError(f"`{self.source}` gave {value!r}, not true or false")
        return value


def compile_condition(source: str) -> Condition:
    text = source.strip()
    if not text:
        raise ConditionError("empty condition")
    if len(text) > 1024:
        raise ConditionError("condition longer than 1024 characters")
    python = text
    for pattern, replacement in _SPELLINGS:
        python = pattern.sub(replacement, python)
    try:
        tree = ast.parse(python, mode="eval")
    except SyntaxError as err:
        raise ConditionError(f"cannot parse `{text}`: {err.msg}") from None
    _check(tree.body, text)
    return Condition(text, tree)


def _check(node: ast.AST, source: str) -> None:
    """Refuses every construct the interpreter does not know, so errors show when the spec is read."""
    if isinstance(node, ast.BoolOp | ast.Compare):
        children: list[ast.AST] = list(node.values) if isinstance(node, ast.BoolOp) else [node.left, *node.comparators]
        if isinstance(node, ast.Compare) and not all(type(op) in _CMPOPS for op in node.ops):
            raise ConditionError(f"`{source}`: only < <= > >= == != compare values")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise ConditionError(f"`{source}`: only + - * / % are allowed")
        children = [node.left, node.right]
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.Not | ast.USub | ast.UAdd):
            raise ConditionError(f"`{source}`: operator not allowed")
        children = [node.operand]
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float) or isinstance(node.value, bool):
            raise ConditionError(f"`{source}`: only numbers are allowed as literals")
        children = []
    elif isinstance(node, ast.Name):
        if node.id not in VARIABLES and node.id not in CONSTANTS:
            raise ConditionError(f"`{source}`: unknown name `{node.id}` (use result or baseline)")
        children = []
    elif isinstance(node, ast.Subscript):
        if not isinstance(node.slice, ast.Constant | ast.UnaryOp):
            raise ConditionError(f"`{source}`: index with a number, e.g. result[0]")
        children = [node.value, node.slice]
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise ConditionError(f"`{source}`: functions allowed: {', '.join(sorted(set(FUNCTIONS)))}")
        children = list(node.args)
    else:
        raise ConditionError(f"`{source}`: {type(node).__name__} is not allowed")
    for child in children:
        _check(child, source)


class _Interpreter:
    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self._truth(v) for v in node.values)
            return any(self._truth(v) for v in node.values)
        if isinstance(node, ast.Compare):
            left = self.visit(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self.visit(right_node)
                if left is None or right is None:
                    raise EvaluationError("a value in the comparison is missing")
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self.visit(node.left), self.visit(node.right))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return not self._truth(node.operand)
            value = self.visit(node.operand)
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id not in self.variables or self.variables[node.id] is None:
                raise EvaluationError(f"`{node.id}` has no value")
            return self.variables[node.id]
        if isinstance(node, ast.Subscript):
            container = self.visit(node.value)
            index = self.visit(node.slice)
            if not isinstance(container, list | tuple):
                raise EvaluationError("only a list of values can be indexed")
            if not isinstance(index, int):
                raise EvaluationError("an index must be a whole number")
            return container[index]
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return FUNCTIONS[node.func.id](*(self.visit(a) for a in node.args))
        raise EvaluationError(f"{type(node).__name__} is not allowed")

    def _truth(self, node: ast.AST) -> bool:
        value = self.visit(node)
        if not isinstance(value, bool):
            raise EvaluationError(f"{value!r} is not true or false")
        return value


def render(condition: str, metric: str, result: Any, baseline: Any = None) -> str:
    """How a judged condition reads in a failure message: `error_rate 0.183 > 0.02`."""
    value = format_value(result)
    text = condition.strip()
    if baseline is not None:
        text = re.sub(r"\bbaseline\b", f"baseline({format_value(baseline)})", text)
    if re.match(r"^result\s*(<=|>=|==|!=|<|>)", text) and len(re.findall(r"\bresult\b", text)) == 1:
        return f"{metric} {value}{text[len('result'):]}"
    substituted = re.sub(r"\bresult\b", value, text)
    return f"{metric} = {value}: {substituted}"


def format_value(value: Any) -> str:
    if value is None:
        return "no data"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
