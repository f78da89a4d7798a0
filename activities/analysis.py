"""Analysis activities: take one measurement of one metric and judge it."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deployflow.analysis.judge import judge_measurement
from deployflow.analysis.providers import MeasureContext, ProviderError, provider_for
from deployflow.analysis.providers.base import RefusedByPolicy
from deployflow.errors import ErrorType
from deployflow.security.redact import BODY_EXCERPT, Redactor
from deployflow.spec.analysis import Metric
from deployflow.spec.common import Target
from deployflow.status import Measurement


class MeasureInput(BaseModel):
    target: Target
    metric: Metric
    version: str = Field(description="the version measured (args.version)")
    baseline_version: str | None = Field(default=None, description="the version measured as `baseline`")
    baseline_value: float | None = Field(
        default=None, description="a baseline measured earlier (the pre-deployment one), used instead of measuring"
    )
    args: dict[str, str] = Field(default_factory=dict)


@activity.defn
async def measure(request: MeasureInput) -> Measurement:
    """One measurement, judged by the metric's conditions. Provider failures become an `Error` verdict (the
    metric's consecutive_error_limit decides what they mean) rather than activity retries that would hide them."""
    metric = request.metric
    target = request.target
    provider = provider_for(metric.provider)
    redactor = Redactor()

    def context(version: str) -> MeasureContext:
        return MeasureContext(target.cluster, target.namespace, target.app, version, request.args, redactor)

    value: float | list[float] | None = None
    baseline: float | list[float] | None = None
    error: str | None = None
    try:
        value = await provider.measure(context(request.version))
        if metric.baseline:
            if request.baseline_value is not None:
                baseline = request.baseline_value
            elif request.baseline_version is not None:
                baseline = await provider.measure(context(request.baseline_version))
    except RefusedByPolicy as err:
        # The spec asks for what the worker refuses: fail now, naming the field and the rule, rather than count
        # errors until the limit.
        raise ApplicationError(
            f"metric {metric.name}: {redactor(str(err))}", type=ErrorType.INVALID_SPEC, non_retryable=True
        ) from None
    except ProviderError as err:
        error = redactor(str(err))
    except Exception as err:  # an unexpected failure is still a measurement error, shown to the operator
        error = f"{type(err).__name__}: {redactor(str(err))[:BODY_EXCERPT]}"
    return judge_measurement(metric, value, time=datetime.now(UTC), baseline=baseline, error=error)
