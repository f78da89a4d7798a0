"""Web: an HTTP GET answering JSON, and a JSONPath to the number."""

from __future__ import annotations

from typing import Any

from jsonpath_ng.ext import parse

from deployflow.analysis.providers.base import (
    MeasureContext,
    MetricProvider,
    ProviderError,
    Value,
    as_value,
    fetch_json,
    fill_template,
    register_provider,
)
from deployflow.spec.analysis import WebProvider


@register_provider("web")
class Web(MetricProvider[WebProvider]):
    def __init__(self, spec: WebProvider) -> None:
        super().__init__(spec)
        self.path = parse(spec.json_path)

    async def measure(self, ctx: MeasureContext) -> Value:
        url = fill_template(self.spec.url, ctx.template_args())
        status, body = await fetch_json(
            url, self.spec.headers, ctx, timeout=self.spec.timeout_seconds, what=f"GET {url}"
        )
        if status >= 400:
            raise ProviderError(f"GET {url} answered {status}")
        if body is None:
            raise ProviderError(f"GET {url} did not answer JSON")
        numbers = [_number(match.value, url, ctx) for match in self.path.find(body)]
        return as_value([v for v in numbers if v is not None])


def _number(value: Any, url: str, ctx: MeasureContext) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, list):
        raise ProviderError(f"{url}: the JSONPath selects a list; select its elements, e.g. $.values[*]")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProviderError(f"{url}: {ctx.redactor.excerpt(repr(value), 60)} is not a number") from None
