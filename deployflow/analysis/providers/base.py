"""The provider interface: one small class per source of numbers, chosen by name from the spec."""

from __future__ import annotations

import asyncio
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel

from deployflow.kube import KubeError
from deployflow.security import outbound
from deployflow.security.credentials import CredentialMissing, CredentialRefused, Credentials
from deployflow.security.outbound import OutboundRefused
from deployflow.security.redact import BODY_EXCERPT, Redactor
from deployflow.spec.analysis import Header

Value = float | list[float] | None


class ProviderError(Exception):
    """The provider could not produce a number (the measurement is judged `Error`)."""


class RefusedByPolicy(ProviderError):
    """The spec asks for a credential or a URL the worker does not allow: no later measurement can succeed."""


@dataclass(frozen=True)
class MeasureContext:
    """What a measurement is about: the app, and which of its versions is measured."""

    cluster: str
    namespace: str
    app: str
    version: str
    args: Mapping[str, str] = field(default_factory=dict)
    # Masks the credentials fetched for this measurement in every message it produces.
    redactor: Redactor = field(default_factory=Redactor, compare=False)

    def template_args(self) -> dict[str, str]:
        return {"namespace": self.namespace, "app": self.app, "version": self.version, **self.args}


_TEMPLATE = re.compile(r"\{\{\s*(?:args\.)?([A-Za-z0-9_.-]+)\s*\}\}")


def fill_template(text: str, args: Mapping[str, str]) -> str:
    """`{{ args.version }}` (or `{{ version }}`) -> its value; an unknown name is an error, never left in place."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in args:
            raise ProviderError(f"unknown template argument `{name}` (known: {', '.join(sorted(args))})")
        return args[name]

    return _TEMPLATE.sub(replace, text)


def resolve_headers(headers: list[Header], ctx: MeasureContext) -> dict[str, str]:
    """Header values come from the worker's credential variables or labelled Secrets, so no credential enters
    workflow history and no spec can pick an arbitrary one; each value is masked in every message that follows."""
    credentials = Credentials(ctx.redactor)
    resolved: dict[str, str] = {}
    for i, header in enumerate(headers):
        source = header.value_from
        field_name = f"headers[{i}] ({header.name}).value_from"
        try:
            if source.env is not None:
                resolved[header.name] = credentials.env(source.env, f"{field_name}.env")
            elif source.secret is not None:
                ref = source.secret
                resolved[header.name] = credentials.secret(
                    ctx.cluster, ctx.namespace, ref.name, ref.key, f"{field_name}.secret"
                )
        except CredentialRefused as err:
            raise RefusedByPolicy(str(err)) from None
        except (CredentialMissing, KubeError) as err:
            raise ProviderError(str(err)) from None
    return resolved


async def fetch_json(
    url: str,
    headers: list[Header],
    ctx: MeasureContext,
    *,
    timeout: float,
    what: str,
    params: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """GETs `url` under the outbound policy with the resolved headers; returns the status and the decoded JSON
    (None when the answer is not JSON). Messages never quote a header value or more than an excerpt."""
    resolved = await asyncio.to_thread(resolve_headers, headers, ctx)
    try:
        async with outbound.async_client(timeout) as http:
            response = await http.get(url, params=params, headers=resolved)
    except OutboundRefused as err:
        raise RefusedByPolicy(ctx.redactor(str(err))) from None
    except httpx.HTTPError as err:
        detail = ctx.redactor(str(err))[:BODY_EXCERPT]
        raise ProviderError(f"{what} failed: {type(err).__name__}" + (f": {detail}" if detail else "")) from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


SpecT = TypeVar("SpecT", bound=BaseModel)


class MetricProvider(ABC, Generic[SpecT]):
    """One provider kind, made from its spec (`self.spec`)."""

    kind: ClassVar[str]

    def __init__(self, spec: SpecT) -> None:
        self.spec = spec

    @abstractmethod
    async def measure(self, ctx: MeasureContext) -> Value:
        """The current value for `ctx.version`: a number, a list of numbers, or None for "no data"."""


def as_value(numbers: list[float]) -> Value:
    """The measurement from the numbers a provider read: NaN dropped; none left is "no data" (None), one is that
    number, more stay a list."""
    values = [v for v in numbers if not math.isnan(v)]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


_REGISTRY: dict[str, Callable[[Any], MetricProvider]] = {}


def register_provider(kind: str) -> Callable[[type[MetricProvider]], type[MetricProvider]]:
    def decorate(cls: type[MetricProvider]) -> type[MetricProvider]:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return decorate


def provider_for(spec: BaseModel) -> MetricProvider:
    # Importing here registers the built-in providers without an import cycle at module load.
    from deployflow.analysis.providers import kubernetes, prometheus, web  # noqa: F401

    kind = getattr(spec, "kind", None)
    factory = _REGISTRY.get(str(kind))
    if factory is None:
        raise ProviderError(f"unknown metric provider {kind!r} (known: {', '.join(sorted(_REGISTRY))})")
    return factory(spec)
