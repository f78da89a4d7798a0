"""Prometheus: an instant PromQL query over the HTTP API."""

from __future__ import annotations

import math

import httpx

from deployflow.analysis.providers.base import (
    MeasureContext,
    MetricProvider,
    ProviderError,
    Value,
    fill_template,
    register_provider,
    resolve_headers,
)
from deployflow.spec.analysis import PrometheusProvider


@register_provider("prometheus")
class Prometheus(MetricProvider):
    def __init__(self, spec: PrometheusProvider) -> None:
        self.spec = spec

    async def measure(self, ctx: MeasureContext) -> Value:
        query = fill_template(self.spec.query, ctx.template_args())
        headers = resolve_headers(self.spec.headers, ctx)
        url = self.spec.address.rstrip("/") + "/api/v1/query"
        try:
            async with httpx.AsyncClient(timeout=self.spec.timeout_seconds) as http:
                response = await http.get(url, params={"query": query}, headers=headers)
        except httpx.HTTPError as err:
            raise ProviderError(f"Prometheus at {self.spec.address} unreachable: {err!r}") from None
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"Prometheus answered {response.status_code} without JSON") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise ProviderError(f"Prometheus query failed ({response.status_code}): {body.get('error', body)}")
        return parse_result(body.get("data", {}))


def parse_result(data: dict) -> Value:
    """Vector -> one number per series (a single series -> that number); empty or NaN -> None ("no data")."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        values = [float(result[1])] if result else []
    elif kind == "vector":
        values = [float(sample["value"][1]) for sample in result or []]
    else:
        raise ProviderError(f"unsupported Prometheus result type {kind!r}: use an instant vector or scalar query")
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    return values[0] if len(values) == 1 else values
