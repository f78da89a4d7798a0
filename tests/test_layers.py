"""The import rules of docs/architecture.md ("Layers"), checked on the sources with `ast`: every import statement,
at module level or inside a function, and `importlib.import_module("...")` with a literal name."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Rule:
    name: str  # as docs/architecture.md names it
    files: tuple[str, ...]  # globs under the repository root
    exempt: tuple[str, ...]  # globs of files the rule does not cover
    forbidden: tuple[str, ...]  # module names; a submodule of one is forbidden too


RULES = [
    Rule(
        "production code never imports deployflow.sim",
        files=("deployflow/**/*.py", "workflows/**/*.py", "activities/**/*.py", "worker.py"),
        exempt=("deployflow/sim/**/*.py", "deployflow/dev.py", "deployflow/demo.py", "deployflow/cli/stack.py"),
        forbidden=("deployflow.sim",),
    ),
    Rule(
        "workflows never import kubernetes or httpx",
        files=("workflows/**/*.py",),
        exempt=(),
        forbidden=("kubernetes", "httpx"),
    ),
    Rule(
        "deployflow.spec imports no activities or workflows",
        files=("deployflow/spec/**/*.py",),
        exempt=(),
        forbidden=("activities", "workflows"),
    ),
]


def module_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for everything a file imports; `from a import b` yields both `a` and `a.b`, since `b` may be
    a module."""
    module = module_of(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def covered(rule: Rule) -> list[Path]:
    exempt = {p for pattern in rule.exempt for p in ROOT.glob(pattern)}
    return sorted({p for pattern in rule.files for p in ROOT.glob(pattern)} - exempt)


def breaches(rule: Rule, files: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in files:
        for line, module in imported(path, root):
            if any(module == f or module.startswith(f + ".") for f in rule.forbidden):
                found.append(f"{path.relative_to(root)}:{line} imports {module}")
    return sorted(set(found))


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_layer_rule_holds(rule: Rule) -> None:
    files = covered(rule)
    assert files, f"the rule {rule.name!r} covers no file: its globs no longer match the tree"
    assert breaches(rule, files) == []


def test_every_rule_is_named_in_the_architecture_doc() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert [r.name for r in RULES if f"**{r.name}**" not in doc] == []


@pytest.mark.parametrize(("source", "breach"), [
    ("import deployflow.sim.server\n", "deployflow.sim.server"),
    ("from deployflow import sim\n", "deployflow.sim"),
    ("from deployflow.sim.store import Store\n", "deployflow.sim.store"),
    ("def late():\n    from ..sim import server\n", "deployflow.sim.server"),
    ("import importlib\nimportlib.import_module('deployflow.sim.traffic')\n", "deployflow.sim.traffic"),
])
def test_the_check_sees_every_way_of_importing(tmp_path: Path, source: str, breach: str) -> None:
    path = tmp_path / "deployflow" / "kube" / "client.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    found = breaches(RULES[0], [path], root=tmp_path)
    assert any(f.endswith(f"imports {breach}") for f in found), found


def test_a_look_alike_module_is_not_a_breach(tmp_path: Path) -> None:
    path = tmp_path / "deployflow" / "simple.py"
    path.parent.mkdir(parents=True)
    path.write_text("import deployflow.simple_things\nfrom deployflow import simulation\n")
    assert breaches(RULES[0], [path], root=tmp_path) == []


def imports_of_test_modules(root: Path = ROOT) -> list[str]:
    """Imports of a test module from any file under tests/: shared helpers live in the *_support modules and
    fixtures in conftest.py or its plugins, so running or moving one test module never depends on another."""
    test_modules = tuple(module_of(p, root) for p in root.glob("tests/**/test_*.py"))
    rule = Rule("tests import no test module", files=("tests/**/*.py",), exempt=(), forbidden=test_modules)
    return breaches(rule, sorted(p for p in (root / "tests").glob("**/*.py")), root)


def test_no_test_module_imports_another() -> None:
    assert list((ROOT / "tests").glob("test_*.py")), "no test module found: the glob no longer matches the tree"
    assert imports_of_test_modules() == []


def test_the_test_module_check_sees_an_import_of_one(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_b.py").write_text("HELPER = 1\n")
    (tmp_path / "tests" / "helpers_support.py").write_text("X = 1\n")
    (tmp_path / "tests" / "test_a.py").write_text(
        "from tests.test_b import HELPER\nfrom tests.helpers_support import X\n"
    )
    found = imports_of_test_modules(tmp_path)
    assert "tests/test_a.py:1 imports tests.test_b" in found
    assert [f for f in found if "support" in f] == []
