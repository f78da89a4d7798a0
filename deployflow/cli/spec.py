"""Spec files: loading and validating them (errors name the field and its line), and the `schema` and `validate`
commands."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ValidationError

from deployflow.cli.base import EXIT_BAD_INPUT, CliError, app, console, err_console, fail


@dataclass
class LoadedSpec:
    """A validated spec and the facts needed to start it."""

    spec: BaseModel
    strategy: str
    workflow_type: str
    workflow_id: str


def _strategies() -> dict[str, tuple[str, type[BaseModel]]]:
    from deployflow.spec import STRATEGIES

    return dict(STRATEGIES)


def _yaml_line(source: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML node at a pydantic error location, so errors point into the file."""
    try:
        node: Any = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def format_validation_errors(err: ValidationError, source: str | None = None, origin: str = "spec") -> list[str]:
    """One line per problem, each naming the field by its dotted path (and its line when the spec came from YAML)."""
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[") or "(spec)"
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; `deployflow schema` lists the fields)"
        elif e["type"] == "missing":
            message = "required field is missing"
        where = origin
        if source is not None:
            line = _yaml_line(source, loc)
            if line is not None:
                where = f"{origin}:{line}"
        got = ""
        if e["type"] not in ("missing", "extra_forbidden") and "input" in e and not isinstance(e["input"], dict | list):
            got = f" (got {e['input']!r})"
        lines.append(f"{where}: {field}: {message}{got}")
    return lines


def validate_spec(data: Any, source: str | None = None, origin: str = "spec") -> LoadedSpec:
    """Checks a spec document and returns the model. Raises CliError(code=2) naming every bad field."""
    strategies = _strategies()
    names = ", ".join(sorted(strategies))
    if not isinstance(data, dict):
        fail(f"{origin}: the spec must be a mapping with a `strategy` field (one of: {names})", EXIT_BAD_INPUT)
    strategy = data.get("strategy")
    if strategy is None:
        fail(f"{origin}: strategy: required field is missing (one of: {names})", EXIT_BAD_INPUT)
    if strategy not in strategies:
        fail(f"{origin}: strategy: unknown strategy {strategy!r} (one of: {names})", EXIT_BAD_INPUT)
    workflow_type, model = strategies[strategy]
    try:
        spec = model.model_validate(data)
    except ValidationError as err:
        problems = format_validation_errors(err, source, origin)
        fail(f"{origin} is not a valid {strategy} spec:\n  " + "\n  ".join(problems), EXIT_BAD_INPUT)
    target = spec.target  # type: ignore[attr-defined]
    return LoadedSpec(spec=spec, strategy=strategy, workflow_type=workflow_type, workflow_id=target.workflow_id())


def load_spec_file(path: Path) -> LoadedSpec:
    """Reads a YAML (or JSON) spec file and validates it; every failure is a CliError with exit code 2."""
    if not path.exists():
        fail(f"spec file not found: {path}", EXIT_BAD_INPUT)
    if path.is_dir():
        fail(f"{path} is a directory, not a spec file", EXIT_BAD_INPUT)
    source = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        fail(f"{where}: YAML syntax error: {problem}", EXIT_BAD_INPUT)
    return validate_spec(data, source, str(path))


def check_weights(loaded: LoadedSpec, strict: bool) -> None:
    """Warns about canary steps whose weight the router cannot really give (see deployflow.spec.weights); with
    `strict` they make the spec invalid (exit 2) before anything starts."""
    from deployflow.spec.canary import CanaryRequest
    from deployflow.spec.weights import weight_warnings

    if not isinstance(loaded.spec, CanaryRequest):
        return
    warnings = weight_warnings(loaded.spec)
    if strict and warnings:
        fail("the canary's real traffic would not be what its steps ask for (--strict):\n  " + "\n  ".join(warnings),
             EXIT_BAD_INPUT)
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)


STRICT_HELP = "refuse (exit 2) instead of warning when a canary step's weight cannot really be given"


def _schema_type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_schema_type(p) for p in prop["anyOf"] if p.get("type") != "null") + " (optional)"
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " \\| ".join(json.dumps(v) for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_schema_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_schema_type(prop['additionalProperties'])}"
    if prop.get("format") == "duration":
        return "duration"
    return str(kind)


def schema_markdown() -> str:
    """A field reference of every strategy's request, generated from the same models that validate specs."""
    out = ["# Spec reference", "",
           "Generated by `deployflow schema --markdown` from the request models; `deployflow schema` prints the",
           "JSON Schema. Durations accept `90s`, `5m`, `1h30m`, seconds as a number, or ISO 8601 (`PT5M`).", ""]
    seen: set[str] = set()
    for name, (workflow_type, model) in sorted(_strategies().items()):
        doc = model.model_json_schema()
        defs = doc.get("$defs", {})
        out += [f"## `strategy: {name}` — workflow `{workflow_type}`", ""]
        if model.__doc__:
            out += [" ".join(model.__doc__.split()), ""]
        sections = [(model.__name__, doc)] + [(k, v) for k, v in sorted(defs.items()) if k not in seen]
        for title, sub in sections:
            seen.add(title)
            if title != model.__name__:
                out += [f"### {title}", ""]
                if sub.get("description"):
                    out += [" ".join(sub["description"].split()), ""]
            props = sub.get("properties", {})
            if not props:
                out += [f"one of: {', '.join(json.dumps(v) for v in sub.get('enum', []))}", ""]
                continue
            required = set(sub.get("required", []))
            out += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
            for field_name, prop in props.items():
                default = "**required**" if field_name in required else (
                    f"`{json.dumps(prop['default'])}`" if "default" in prop else "")
                desc = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
                out.append(f"| `{field_name}` | {_schema_type(prop)} | {default} | {desc} |")
            out.append("")
    return "\n".join(out)


@app.command()
def schema(
    strategy: Annotated[str | None, typer.Option(help="only this strategy's request model")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="a field reference in Markdown instead")] = False,
) -> None:
    """Print the JSON Schema of deployment specs (all strategies, or one)."""
    from pydantic import TypeAdapter

    from deployflow.spec import DeploymentSpec

    strategies = _strategies()
    if markdown:
        sys.stdout.write(schema_markdown() + "\n")
        return
    if strategy is None:
        doc = TypeAdapter(DeploymentSpec).json_schema()
    elif strategy in strategies:
        doc = strategies[strategy][1].model_json_schema()
    else:
        err_console.print(f"error: unknown strategy {strategy!r} (one of: {', '.join(sorted(strategies))})")
        raise typer.Exit(EXIT_BAD_INPUT)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


@app.command()
def validate(
    spec_file: Annotated[Path, typer.Argument(help="deployment spec (YAML or JSON)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the normalised spec as JSON")] = False,
    strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
) -> None:
    """Check a spec without touching any cluster. Errors name the field; exit code 2 when invalid."""
    try:
        loaded = load_spec_file(spec_file)
        check_weights(loaded, strict)
    except CliError as err:
        err_console.print(f"[red]error:[/red] {err}", soft_wrap=True)
        raise typer.Exit(err.code) from None
    if json_out:
        sys.stdout.write(loaded.spec.model_dump_json(indent=2) + "\n")
    else:
        console.print(f"[green]valid[/green] {loaded.strategy} spec; workflow id {loaded.workflow_id}")
