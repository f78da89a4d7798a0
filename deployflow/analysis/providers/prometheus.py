"""Prometheus: an instant PromQL query over the HTTP API."""

from __future__ import annotations

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
from deployflow.spec.analysis import PrometheusProvider


@register_provider("prometheus")
class Prometheus(MetricProvider[PrometheusProvider]):
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
    return as_value(values)
