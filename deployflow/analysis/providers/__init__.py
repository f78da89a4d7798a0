"""Metric providers, chosen by the `kind` of a metric's provider block."""

from deployflow.analysis.providers.base import (
    MeasureContext,
    MetricProvider,
    ProviderError,
    provider_for,
    register_provider,
)

__all__ = ["MeasureContext", "MetricProvider", "ProviderError", "provider_for", "register_provider"]
