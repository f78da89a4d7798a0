"""Web: an HTTP GET answering JSON, and a JSONPath to the number."""

from __future__ import annotations

import math
from typing import Any

import httpx
from jsonpath_ng.ext import parse

from deployflow.analysis.providers.base import (
    MeasureContext,
    MetricProvider,
    ProviderError,
    Value,
    fill_template,
    register_provider,
    resolve_headers,
)
from deployflow.spec.analysis import WebProvider


@register_provider("web")
class Web(MetricProvider):
    def __init__(self, spec: WebProvider) -> None:
        self.spec = spec
        self.path = parse(spec.json_path)

    async def measure(self, ctx: MeasureContext) -> Value:
        url = fill_template(self.spec.url, ctx.template_args())
        headers = resolve_headers(self.spec.headers, ctx)
        try:
            async with httpx.AsyncClient(timeout=self.spec.timeout_seconds) as http:
                response = await http.get(url, headers=headers)
        except httpx.HTTPError as err:
            raise ProviderError(f"GET {url} failed: {err!r}") from None
        if response.status_code >= 400:
            raise ProviderError(f"GET {url} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"GET {url} did not answer JSON") from None
        numbers = [_number(match.value, url) for match in self.path.find(body)]
        values = [v for v in numbers if v is not None and not math.isnan(v)]
        if not values:
            return None
        return values[0] if len(values) == 1 else values


def _number(value: Any, url: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, list):
        raise ProviderError(f"{url}: the JSONPath selects a list; select its elements, e.g. $.values[*]")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProviderError(f"{url}: {value!r} is not a number") from None
