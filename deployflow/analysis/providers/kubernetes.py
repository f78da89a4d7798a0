"""Kubernetes: the measured version's own pods (restarts, readiness), read from the API server."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployflow.analysis.providers.base import MeasureContext, MetricProvider, ProviderError, Value, register_provider
from deployflow.kube import api_client
from deployflow.spec.analysis import KubernetesProvider
from deployflow.traffic.tracks import APP_LABEL, VERSION_LABEL


@register_provider("kubernetes")
class Kubernetes(MetricProvider):
    def __init__(self, spec: KubernetesProvider) -> None:
        self.spec = spec

    async def measure(self, ctx: MeasureContext) -> Value:
        return await asyncio.to_thread(self._measure, ctx)

    def _measure(self, ctx: MeasureContext) -> Value:
        selector = f"{APP_LABEL}={ctx.app},{VERSION_LABEL}={ctx.version}"
        try:
            core: Any = client.CoreV1Api(api_client(ctx.cluster))
            pods = core.list_namespaced_pod(ctx.namespace, label_selector=selector)
        except ApiException as err:
            raise ProviderError(f"cannot list pods {selector} in {ctx.namespace}: {err.reason}") from None
        live = [p for p in pods.items if not p.metadata.deletion_timestamp]
        if not live:
            return None
        if self.spec.measure == "restarts":
            return float(
                sum(cs.restart_count or 0 for p in live for cs in (p.status.container_statuses or []))
            )
        ready = sum(
            1 for p in live if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        )
        return ready / len(live)
