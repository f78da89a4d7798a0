"""Kubernetes and deployflow value rules (names, labels, images, hostnames, ports, durations), checked before anything
touches a cluster. Each rule is a plain function wrapped as an `Annotated` type the spec models use."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError


def matching(pattern: re.Pattern[str], limit: int, problem: Callable[[str], str]) -> Callable[[str], str]:
    """A rule for a string of at most `limit` characters that `pattern` matches; `problem(value)` says what is wrong."""

    def check(value: str) -> str:
        if len(value) > limit or not pattern.match(value):
            raise ValueError(problem(value))
        return value

    return check


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_dns_label = matching(_DNS_LABEL, 63, lambda _: (
    "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
    "with a letter or digit, at most 63 characters"
))

DnsLabel = Annotated[str, AfterValidator(_dns_label)]

# A kubeconfig context name becomes part of the workflow ID: printable, no spaces, bounded. '/', ':' and '@' stay
# allowed because real context names use them (arn:aws:eks:...:cluster/prod, user@cluster).
_CONTEXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")

_context_name = matching(_CONTEXT_NAME, 253, lambda _: (
    "must be a kubeconfig context name: 1 to 253 characters, letters, digits and '.', '_', '-', ':', '@', "
    "'/', starting with a letter or digit (or 'in-cluster')"
))

ContextName = Annotated[str, AfterValidator(_context_name)]


# --- Kubernetes value rules, checked before anything touches a cluster --------------------------------------------

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# The distribution reference grammar, simplified: [host[:port]/]path[:tag][@algo:hex]
_IMAGE_REF = re.compile(
    r"^(?:(?P<host>[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WILDCARD_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_DURATION = timedelta(days=365)
DURATION_FORMS = (
    "seconds as a number (90), Go-style text ('1h30m', '90s', '250ms', '2d') or ISO 8601 ('PT1H30M'), "
    "at most 365d"
)
MAX_ANNOTATION_BYTES = 256 * 1024  # Kubernetes' limit for all annotations of one object together
_timedelta: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def shown(value: object, limit: int = 80) -> str:
    """A value quoted for an error message, cut short: a 2 MiB field must not come back as a 2 MiB message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_label_value = matching(LABEL_VALUE, 63, lambda value: (
    f"{shown(value)} is not a valid label value: at most 63 characters, letters, digits, '-', '_' and '.', "
    "starting and ending with a letter or digit"
))


def _qualified_name(value: str) -> str:
    """A label or annotation key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, _, name = value.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"{shown(value)}: the prefix {shown(prefix)} is not a DNS subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(
            f"{shown(value)} is not a valid key: the name part must be at most 63 characters of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return value


image_reference = matching(_IMAGE_REF, 4096, lambda value: (
    f"{shown(value)} is not a valid image reference (expected [registry/]name[:tag][@sha256:digest], "
    "lower-case repository path)"
))


def _seconds(seconds: float, shown: object) -> timedelta:
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION.total_seconds():
        raise ValueError(f"{shown!r} is too long a duration: at most 365d")
    return timedelta(seconds=seconds)


def parse_duration(value: object) -> timedelta:
    """Seconds (a number), Go-style '1h30m' / '90s' / '250ms' / '2d', or ISO 8601 ('PT1H'), at most 365 days."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _seconds(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration: {DURATION_FORMS}")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"{shown(value)}: a duration cannot be negative")
    if len(text) > 64:
        raise ValueError(f"not a duration: use {DURATION_FORMS}")
    if text and _DURATION_PART.sub("", text) == "" and _DURATION_PART.search(text):
        unit_seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        return _seconds(sum(float(n) * unit_seconds[u] for n, u in _DURATION_PART.findall(text)), value)
    try:
        parsed = _timedelta.validate_python(text)
    except (ValidationError, OverflowError):
        raise ValueError(f"{shown(value)} is not a duration: use {DURATION_FORMS}") from None
    return _seconds(parsed.total_seconds(), value)


_hostname = matching(_WILDCARD_HOST, 253, lambda value: (
    f"{shown(value)} is not a hostname: lower-case RFC 1123 names (shop.example.com), optionally with a "
    "leading '*.' wildcard, at most 253 characters"
))
_dns_subdomain = matching(_DNS_SUBDOMAIN, 253, lambda value: (
    f"{shown(value)} is not a Kubernetes name: lower-case letters, digits, '-' and '.', starting and ending "
    "with a letter or digit, at most 253 characters"
))


def check_annotations(annotations: object, field: str) -> None:
    """Kubernetes refuses an object whose annotations are over 256 KiB together; say so before anything changes."""
    if not isinstance(annotations, dict):
        return
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > MAX_ANNOTATION_BYTES:
        raise ValueError(f"{field}: {size} bytes of annotations; Kubernetes allows at most 256 KiB in total")


def nested(value: object, *path: str) -> Any:
    """value[path[0]][path[1]]..., or None as soon as a step is not a mapping holding the key."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


LabelValue = Annotated[str, AfterValidator(_label_value)]
QualifiedName = Annotated[str, AfterValidator(_qualified_name)]
ImageReference = Annotated[str, AfterValidator(image_reference)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_non_negative)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
Port = Annotated[int, Field(ge=1, le=65535)]
Hostname = Annotated[str, AfterValidator(_hostname)]
KubeName = Annotated[str, AfterValidator(_dns_subdomain)]


def image_tag(image: str) -> str | None:
    match = _IMAGE_REF.match(image)
    return match.group("tag") if match else None
