"""Properties of the validator over inputs nobody wrote by hand: whatever it is given, it answers "valid" or a
validation error, never another exception.

Inputs come from two places: the examples (examples/*.yaml) mutated at random (a value replaced, removed, wrapped,
or a key added), and documents generated from `deployflow schema`'s JSON Schema with hypothesis-jsonschema. Both go
to the models directly (a crash there would be hidden by the loader's safety net) and through the loader as YAML.
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from pydantic import ValidationError

from deployflow.spec import STRATEGIES, parse_spec
from deployflow.spec.loader import LoadedSpec, SpecError, load_spec_bytes, load_spec_text

EXAMPLE_DIR = Path(__file__).parent.parent / "examples"
EXAMPLES = {p.name: yaml.safe_load(p.read_text()) for p in sorted(EXAMPLE_DIR.glob("*.yaml"))}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values an attacker would try in any slot: wrong types, bounds, huge and odd numbers, markup, durations at the edges.
NASTY_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", "-1", "0", "1e999", "99999999999999999999h", "P99999999Y", "[bold]x[/bold]", "*", "*.", "a..b",
                     "-5m", "1:30", "PT0S", "$(X)", "postgres://u:p@h/db", "ghp_" + "a" * 36, "\x1b[31m", "\u202e"]),
)
JSON_VALUES = st.recursive(
    NASTY_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _paths(child, (*prefix, i))
    return found


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)[1:] or [()]
        path = draw(st.sampled_from(paths))
        if not path:
            return draw(JSON_VALUES)
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "wrap", "add-key"]))
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"value": parent[key]}
        elif isinstance(parent[key], dict):
            parent[key][draw(st.text(min_size=1, max_size=12))] = draw(JSON_VALUES)
    return doc


def _answers_valid_or_validation_error(doc: Any) -> None:
    with contextlib.suppress(ValidationError):  # any other exception fails the property
        parse_spec(doc)


def _loader_answers_valid_or_spec_error(doc: Any) -> None:
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return
    try:
        assert isinstance(load_spec_text(text, "spec.yaml"), LoadedSpec)
    except SpecError as err:
        assert str(err) and "Traceback" not in str(err)


@SETTINGS
@given(mutated_examples())
def test_mutated_examples_are_valid_or_a_validation_error(doc: Any) -> None:
    _answers_valid_or_validation_error(doc)
    _loader_answers_valid_or_spec_error(doc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_are_valid_or_a_spec_error(raw: bytes) -> None:
    try:
        load_spec_bytes(raw, "spec.yaml")
    except SpecError as err:
        assert str(err).startswith("spec") or "spec file" in str(err)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_documents_from_the_json_schema_are_valid_or_a_validation_error(strategy: str) -> None:
    schema = STRATEGIES[strategy][1].model_json_schema()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(from_schema(schema))
    def check(doc: Any) -> None:
        doc = {**doc, "strategy": strategy} if isinstance(doc, dict) else doc
        _answers_valid_or_validation_error(doc)
        _loader_answers_valid_or_spec_error(doc)

    check()


def test_mutations_do_reach_both_answers() -> None:
    """The property above is only worth something if mutated specs are sometimes valid and sometimes not."""
    seen: set[bool] = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(mutated_examples())
    def collect(doc: Any) -> None:
        try:
            parse_spec(doc)
            seen.add(True)
        except ValidationError:
            seen.add(False)

    collect()
    assert seen == {True, False}


def test_non_finite_numbers_never_reach_a_model() -> None:
    doc = copy.deepcopy(EXAMPLES["canary.yaml"])
    doc["steps"][1]["analysis"]["metrics"][0]["provider"]["timeout_seconds"] = math.inf
    with pytest.raises(ValidationError, match="finite"):
        parse_spec(doc)
