"""The provider interface: one small class per source of numbers, chosen by name from the spec."""

from __future__ import annotations

import base64
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from deployflow.spec.analysis import Header

Value = float | list[float] | None


class ProviderError(Exception):
    """The provider could not produce a number (the measurement is judged `Error`)."""


@dataclass(frozen=True)
class MeasureContext:
    """What a measurement is about: the app, and which of its versions is measured."""

    cluster: str
    namespace: str
    app: str
    version: str
    args: Mapping[str, str] = field(default_factory=dict)

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
    """Header values come from the worker's environment or a Secret, so no credential enters workflow history."""
    resolved: dict[str, str] = {}
    for header in headers:
        source = header.value_from
        if source.env is not None:
            value = os.environ.get(source.env)
            if value is None:
                raise ProviderError(f"header {header.name}: environment variable {source.env} is not set")
            resolved[header.name] = value
        elif source.secret is not None:
            resolved[header.name] = _read_secret(ctx, source.secret.name, source.secret.key)
    return resolved


def _read_secret(ctx: MeasureContext, name: str, key: str) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from deployflow.kube import api_client

    try:
        secret = client.CoreV1Api(api_client(ctx.cluster)).read_namespaced_secret(name, ctx.namespace)
    except ApiException as err:
        raise ProviderError(f"cannot read Secret {ctx.namespace}/{name}: {err.reason}") from None
    data = (secret.data or {}).get(key)
    if data is None:
        raise ProviderError(f"Secret {ctx.namespace}/{name} has no key {key}")
    return base64.b64decode(data).decode()


class MetricProvider(ABC):
    kind: ClassVar[str]

    @abstractmethod
    async def measure(self, ctx: MeasureContext) -> Value:
        """The current value for `ctx.version`: a number, a list of numbers, or None for "no data"."""


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
