"""Prometheus: an instant PromQL query over the HTTP API."""

from __future__ import annotations

import math

from deployflow.analysis.providers.base import (
    MeasureContext,
    MetricProvider,
    ProviderError,
    Value,
    fetch_json,
    fill_template,
    register_provider,
)
from deployflow.spec.analysis import PrometheusProvider


@register_provider("prometheus")
class Prometheus(MetricProvider):
    def __init__(self, spec: PrometheusProvider) -> None:
        self.spec = spec

    async def measure(self, ctx: MeasureContext) -> Value:
        query = fill_template(self.spec.query, ctx.template_args())
        url = self.spec.address.rstrip("/") + "/api/v1/query"
        status, body = await fetch_json(
            url, self.spec.headers, ctx, timeout=self.spec.timeout_seconds, params={"query": query},
            what=f"Prometheus query at {self.spec.address}",
        )
        if not isinstance(body, dict):
            raise ProviderError(f"Prometheus answered {status} without JSON")
        if status != 200 or body.get("status") != "success":
            detail = ctx.redactor.excerpt(str(body.get("error", body)))
            raise ProviderError(f"Prometheus query failed ({status}): {detail}")
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
