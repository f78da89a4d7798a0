"""Reading spec text someone else wrote: bounded, strict, and every failure a `SpecError` naming its line.

The spec is untrusted text. Before pydantic sees it, this module bounds what it costs to read (size, nesting depth,
nodes after YAML aliases are expanded) and refuses what would be read ambiguously: bytes that are not UTF-8,
duplicate keys (YAML or JSON: the second would silently win), tags pydantic cannot check, numbers that are not
finite or do not fit in 64 bits. JSON files go through the same YAML reader (JSON is YAML's flow style), so they get
the same checks and the same line numbers.

Values are returned as plain strings and numbers, exactly as written (dates and `1:30` stay text): whoever prints
them must print them literally, never as markup.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import math
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_SPEC_BYTES = 2 * 1024 * 1024  # Temporal refuses a payload over 2 MB: the spec is the workflow's input
MAX_DEPTH = 64
MAX_NODES = 100_000  # after aliases are expanded: what the spec costs once it is JSON
MAX_ALIASES = 1_000
MAX_NUMBER_CHARS = 40
_INT64 = 2**63

_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"),
)
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


class SpecError(ValueError):
    """A spec that cannot be used, with one or more problems, each `origin[:line]: field: message`."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


def at_line(origin: str, line: int | None) -> str:
    return f"{origin}:{line}" if line is not None else origin


def refuse(origin: str, message: str, line: int | None = None, field: str = "") -> SpecError:
    where = at_line(origin, line)
    return SpecError(f"{where}: {field}: {message}" if field else f"{where}: {message}")


def too_large(origin: str) -> SpecError:
    return refuse(origin, f"the spec is larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB, Temporal's limit for a "
                           "workflow input; keep large manifests out of the spec")


# --- bytes to text -------------------------------------------------------------------------------------------------


def read_spec_bytes(path: Path) -> bytes:
    """The file's bytes, refusing what is not a readable file of at most MAX_SPEC_BYTES (checked while reading)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec file: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise SpecError(f"{path} is a directory, not a spec file")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise SpecError(f"{path} is not a regular file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec file: {err.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise too_large(str(path))
    return raw


def decode_spec(raw: bytes, origin: str = "spec") -> str:
    """UTF-8 text (a UTF-8 byte-order mark is dropped); other encodings are named, invalid bytes located."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise refuse(origin, f"the file is {name} (it starts with a byte-order mark); save it as UTF-8", 1)
    raw = raw.removeprefix(codecs.BOM_UTF8)
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        if raw[1:64:2].count(0) > 8 or raw[0:64:2].count(0) > 8:
            raise refuse(origin, "the file looks like UTF-16 without a byte-order mark; save it as UTF-8", 1)
        raise refuse(origin, f"NUL byte at offset {nul}: a spec is UTF-8 text", line)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise refuse(
            origin, f"not valid UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start}; save the file as UTF-8", line
        ) from None


# --- text to data --------------------------------------------------------------------------------------------------


@dataclass
class SpecDocument:
    """Parsed data plus the YAML node tree it came from, to find the line of any field."""

    data: Any
    root: yaml.Node | None
    origin: str

    def line_of(self, path: Sequence[str | int]) -> tuple[int | None, bool]:
        """The line of the deepest node on `path`, and whether the whole path was found."""
        node = self.root
        if node is None:
            return None, False
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode):
                match = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                match = node.value[part]
            else:
                match = None
            if match is None:
                return line, False
            node = match
            line = node.start_mark.line + 1
        return line, True


def _line(node_or_mark: object) -> int | None:
    """1-based line of a node or mark (libyaml's marks are their own class, hence no isinstance)."""
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else None


def _position(node: yaml.Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1} column {mark.column + 1}"


def _yaml_error(err: yaml.YAMLError, origin: str) -> SpecError:
    if isinstance(err, yaml.reader.ReaderError):
        char = chr(err.character) if isinstance(err.character, int) else err.character
        return refuse(origin, f"character {char!r} at offset {err.position} is not allowed in YAML (a control "
                               "character?)")
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark is not None else origin
    return SpecError(f"{where}: YAML syntax error: {problem}")


def _check_events(text: str, origin: str) -> None:
    """One streaming pass (no recursion, no objects built): nesting depth, node and alias counts, one document."""
    depth = nodes = aliases = documents = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise refuse(origin, "more than one YAML document ('---'): a spec is one document",
                                  _line(event.start_mark))
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    raise refuse(origin, f"nested more than {MAX_DEPTH} levels deep", _line(event.start_mark))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise refuse(origin, f"more than {MAX_ALIASES} YAML aliases (*name)", _line(event.start_mark))
            if nodes > MAX_NODES:
                raise refuse(origin, f"more than {MAX_NODES} values", _line(event.start_mark))
    except yaml.YAMLError as err:
        raise _yaml_error(err, origin) from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_expansion(root: yaml.Node, origin: str) -> None:
    """Size and depth of the tree once aliases are expanded, without expanding them (each node measured once)."""
    measured: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            sizes = [measured[id(c)] for c in _children(node)]
            size = 1 + sum(s for s, _ in sizes)
            height = 1 + max((h for _, h in sizes), default=0)
            open_nodes.discard(key)
            measured[key] = (size, height)
            if size > MAX_NODES:
                raise refuse(origin, f"YAML aliases expand to more than {MAX_NODES} values", _line(node))
            if height > MAX_DEPTH:
                raise refuse(origin, f"YAML aliases expand to more than {MAX_DEPTH} levels of nesting", _line(node))
            continue
        if key in measured:
            continue
        if key in open_nodes:
            raise refuse(origin, "a YAML alias refers to a value that contains it (a recursive alias)", _line(node))
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in measured)


class _Builder:
    """Builds plain data from the node tree: literal scalars, no duplicate keys, merge keys (`<<`) honoured."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def build(self, node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            self._expect_tag(node, "seq", path)
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        self._expect_tag(node, "map", path)
        result: dict[str, Any] = {}
        lines: dict[str, str] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merged.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._error("a mapping key must be a name, not a list or mapping", key_node, path)
            key = key_node.value
            if key in result:
                raise self._error(
                    f"duplicate key {key!r}: first on {lines[key]}, again on {_position(key_node)}; "
                    "the second would silently replace the first",
                    key_node, (*path, key),
                )
            lines[key] = _position(key_node)
            result[key] = self.build(value_node, (*path, key))
        for source in merged:
            sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
            for item in sources:
                if not isinstance(item, yaml.MappingNode):
                    raise self._error("a merge key (<<) takes a mapping or a list of mappings", item, path)
                for key, value in self.build(item, path).items():
                    result.setdefault(key, value)
        return result

    def scalar(self, node: yaml.ScalarNode, path: tuple[str | int, ...]) -> Any:
        tag, text = node.tag.removeprefix(_TAG), node.value
        if tag in ("str", "timestamp"):
            return text
        if tag == "null":
            return None
        if tag == "bool":
            return yaml.constructor.SafeConstructor.bool_values.get(text.lower(), text)
        if tag not in ("int", "float"):
            raise self._error(f"YAML tag {node.tag!r} is not supported: write plain values", node, path)
        digits = text.replace("_", "")
        if ":" in digits:
            return text  # YAML 1.1 base-60 (1:30 = 90): read as written
        if len(digits) > MAX_NUMBER_CHARS:
            raise self._error(f"the number {text[:20]}... is too long", node, path)
        try:
            number = _yaml_int(digits) if tag == "int" else float(digits.replace(".inf", "inf").replace(".nan", "nan"))
        except ValueError:
            raise self._error(f"{text!r} is not a valid {tag}", node, path) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise self._error(f"{text!r}: only finite numbers are allowed", node, path)
        if isinstance(number, int) and not -_INT64 <= number < _INT64:
            raise self._error(f"{text!r} does not fit in a 64-bit integer", node, path)
        return number

    def _expect_tag(self, node: yaml.Node, kind: str, path: tuple[str | int, ...]) -> None:
        if node.tag != _TAG + kind:
            raise self._error(f"YAML tag {node.tag!r} is not supported: write plain values", node, path)

    def _error(self, message: str, node: yaml.Node, path: tuple[str | int, ...]) -> SpecError:
        return refuse(self.origin, message, _line(node), format_field(path))


def _yaml_int(digits: str) -> int:
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-").lower()
    if digits.startswith("0b"):
        return sign * int(digits[2:], 2)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    if len(digits) > 1 and digits.startswith("0"):
        return sign * int(digits, 8)  # YAML 1.1, as PyYAML reads it
    return sign * int(digits)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Parsing allocates a hundred thousand small objects that are never garbage; letting the cyclic collector scan
    them over and over made a 1 MB spec take seconds instead of a fraction of one."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _join_surrogate_escapes(text: str) -> str:
    """JSON writes a character beyond U+FFFF as two escapes ("\\ud83d\\ude00", Python's json.dumps does by default);
    YAML reads each escape alone and refuses half a character. Join the pairs (an escaped backslash is left alone)."""
    def join(match: re.Match[str]) -> str:
        high, low = int(match.group(2), 16), int(match.group(3), 16)
        return match.group(1) + chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))

    return _SURROGATE_PAIR.sub(join, text)


def parse_spec_text(text: str, origin: str = "spec") -> SpecDocument:
    """Parses YAML or JSON text into plain data, within every bound above."""
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_SPEC_BYTES:
        raise too_large(origin)
    if text.lstrip().startswith("{") and "\\u" in text:
        text = _join_surrogate_escapes(text)
    with _collector_paused():
        _check_events(text, origin)
        try:
            root = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError as err:
            raise _yaml_error(err, origin) from None
        if root is None:
            return SpecDocument(None, None, origin)
        _check_expansion(root, origin)
        return SpecDocument(_Builder(origin).build(root, ()), root, origin)


def format_field(path: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).removeprefix(".")
