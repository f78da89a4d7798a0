"""Loading a spec: read and parse it within bounds (deployflow.spec.parsing), then validate it into the request
model its `strategy` names. Every failure is a `SpecError` whose lines name the field and its line in the file.

Values come back exactly as written; whoever prints them (the CLI) must print them literally, never as markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from deployflow.spec.common import field_path, shown
from deployflow.spec.parsing import (
    MAX_SPEC_BYTES,
    SpecDocument,
    SpecError,
    at_line,
    decode_spec,
    format_field,
    parse_spec_text,
    read_spec_bytes,
    refuse,
    too_large,
)

__all__ = [
    "LoadedSpec", "SpecDocument", "SpecError", "decode_spec", "format_problems", "load_spec_bytes", "load_spec_file",
    "load_spec_text", "parse_spec_text", "read_spec_bytes", "validate_document",
]

MAX_PROBLEMS_SHOWN = 20
_MESSAGE_FIELD = re.compile(r"^([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*|\[\d+\])*): (.+)$", re.DOTALL)


@dataclass
class LoadedSpec:
    """A validated spec and the facts needed to start it."""

    spec: BaseModel
    strategy: str
    workflow_type: str
    workflow_id: str


def format_problems(err: ValidationError, doc: SpecDocument) -> list[str]:
    """One line per problem: `origin:line: field: message`, the line being the field's own when it can be found."""
    lines = []
    for problem in err.errors(include_url=False):
        path: list[str | int] = list(field_path(problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; `deployflow schema` lists the fields)"
        elif problem["type"] == "missing":
            message = "required field is missing"
        line, _ = doc.line_of(path)
        named = _MESSAGE_FIELD.match(message)
        if named:  # a model-level check names its field first: name it in full, at its line (or its parent's)
            inner = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", named.group(1))]
            path, message = [*path, *inner], named.group(2)
            line = doc.line_of(path)[0]
        got = ""
        value = problem.get("input")
        if problem["type"] not in ("missing", "extra_forbidden") and not isinstance(value, dict | list):
            got = f" (got {shown(value)})"
        lines.append(f"{at_line(doc.origin, line)}: {format_field(path) or '(spec)'}: {message}{got}")
    return lines


def validate_document(doc: SpecDocument) -> LoadedSpec:
    """The request model the document's `strategy` names, validated; every problem listed in one SpecError."""
    from deployflow.spec import STRATEGIES  # the registry imports every strategy, which imports this package

    origin, data = doc.origin, doc.data
    names = ", ".join(sorted(STRATEGIES))
    if not isinstance(data, dict):
        message = f"the spec must be a mapping with a `strategy` field (one of: {names})"
        raise refuse(origin, message, doc.line_of([])[0])
    strategy = data.get("strategy")
    line = doc.line_of(["strategy"])[0]
    if strategy is None:
        raise refuse(origin, f"required field is missing (one of: {names})", line, "strategy")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise refuse(origin, f"unknown strategy {shown(strategy)} (one of: {names})", line, "strategy")
    workflow_type, model = STRATEGIES[strategy]
    try:
        spec = model.model_validate(data)
    except ValidationError as err:
        problems = format_problems(err, doc)
        shown_problems = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            shown_problems.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
        message = f"{origin} is not a valid {strategy} spec:\n  " + "\n  ".join(shown_problems)
        raise SpecError(message, problems) from None
    except (TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as err:
        # A check that did not expect this shape of input: still bad input, never a traceback.
        raise SpecError(f"{origin} is not a valid {strategy} spec: {type(err).__name__}: {err}") from None
    workflow_id: str = spec.target.workflow_id()  # type: ignore[attr-defined]
    return LoadedSpec(spec=spec, strategy=strategy, workflow_type=workflow_type, workflow_id=workflow_id)


def load_spec_text(text: str, origin: str = "spec") -> LoadedSpec:
    return validate_document(parse_spec_text(text, origin))


def load_spec_bytes(raw: bytes, origin: str = "spec") -> LoadedSpec:
    if len(raw) > MAX_SPEC_BYTES:
        raise too_large(origin)
    return load_spec_text(decode_spec(raw, origin), origin)


def load_spec_file(path: Path | str) -> LoadedSpec:
    """Reads, parses and validates a YAML or JSON spec file; every failure is a SpecError."""
    return load_spec_bytes(read_spec_bytes(Path(path)), str(path))
