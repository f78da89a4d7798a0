"""Kubernetes: the measured version's own pods (restarts, readiness), read from the API server."""

from __future__ import annotations

import asyncio

from deployflow import kube
from deployflow.analysis.providers.base import MeasureContext, MetricProvider, ProviderError, Value, register_provider
from deployflow.kube import health
from deployflow.spec.analysis import KubernetesProvider
from deployflow.traffic.tracks import APP_LABEL, VERSION_LABEL


@register_provider("kubernetes")
class Kubernetes(MetricProvider[KubernetesProvider]):
    async def measure(self, ctx: MeasureContext) -> Value:
        return await asyncio.to_thread(self._measure, ctx)

    def _measure(self, ctx: MeasureContext) -> Value:
        selector = kube.label_selector({APP_LABEL: ctx.app, VERSION_LABEL: ctx.version})
        path = kube.core_path(ctx.namespace, "pods")
        try:
            pods = kube.request_json(ctx.cluster, "GET", path, query={"labelSelector": selector})
        except kube.KubeError as err:
            raise ProviderError(f"cannot list pods {selector} in {ctx.namespace}: {err.message}") from None
        live = health.live(pods.get("items") or [])
        if not live:
            return None
        if self.spec.measure == "restarts":
            return float(
                sum(int(cs.get("restartCount") or 0) for p in live for cs in (p.get("status") or {}).get(
                    "containerStatuses") or [])
            )
        return sum(1 for p in live if health.pod_ready(p)) / len(live)
