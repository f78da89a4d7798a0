"""The canary request: a new version takes a growing share of traffic while analysis watches it.

Steps are one kind each, as in Argo Rollouts: `set_weight`, `pause` (for a duration, or until `promote`), and
`analysis` (blocks: success goes on, failure rolls back, inconclusive pauses for a decision). The compact form
`stages: [{weight: 5, duration: 5m, max_error_rate: 0.02}, ...]` expands into those steps: see `Stage`.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from deployflow.spec.analysis import (
    MAX_MEASUREMENTS,
    Analysis,
    Metric,
    PrometheusProvider,
    Provider,
    format_duration,
)
from deployflow.spec.common import (
    SOURCE_DESCRIPTION,
    DnsLabel,
    Duration,
    FetchableUrl,
    Hostname,
    KubeName,
    PositiveDuration,
    Source,
    StrictModel,
    Target,
    Workload,
)
from deployflow.spec.hooks import Hooks
from deployflow.spec.notify import Notifier

ROUTERS = ("replicas", "gateway-api", "istio", "nginx")

# Share of 5xx answers of one version over the last 30 s. A healthy version has no 5xx series at all, hence
# `or vector(0)`; a version with no traffic has no total either, which stays "no data".
DEFAULT_QUERY_WINDOW = timedelta(seconds=30)
DEFAULT_ERROR_RATE_QUERY = (
    '(sum(rate(http_requests_total{namespace="{{ args.namespace }}",version="{{ args.version }}",code=~"5.."}[30s]))'
    " or vector(0))"
    ' / sum(rate(http_requests_total{namespace="{{ args.namespace }}",version="{{ args.version }}"}[30s]))'
)
# The canary version's share (0 to 1) of the requests the router split over the last 30 s: `args.services` is
# `<app>` for the replicas router, `<app>-stable|<app>-canary` (the route's backends) for a mesh.
_APP_REQUESTS = 'http_requests_total{namespace="{{ args.namespace }}",service=~"{{ args.services }}"'
DEFAULT_OBSERVED_QUERY = (
    f'sum(rate({_APP_REQUESTS},version="{{{{ args.version }}}}"}}[30s])) / sum(rate({_APP_REQUESTS}}}[30s]))'
)


class TrafficRouting(StrictModel):
    """How traffic is split between the stable and canary versions, chosen by router name."""

    router: Literal["replicas", "gateway-api", "istio", "nginx"] = Field(
        default="replicas",
        description=(
            "replicas: no mesh, the split follows the replica ratio behind one Service; gateway-api: HTTPRoute "
            "backendRef weights; istio: VirtualService route weights; nginx: a canary Ingress with canary-weight"
        ),
    )
    route: DnsLabel | None = Field(
        default=None, description="name of the HTTPRoute, VirtualService or primary Ingress; defaults to <app>"
    )
    gateway: DnsLabel | None = Field(default=None, description="gateway-api: the Gateway the HTTPRoute attaches to")
    hosts: list[Hostname] = Field(default_factory=list, max_length=16, description="hostnames the route serves")
    ingress_class: KubeName = Field(default="nginx", description="nginx: ingressClassName")
    max_extra_pods: int | None = Field(
        default=None, ge=0, le=1000,
        description="replicas: how many pods the two tracks may run beyond workload.replicas to bring the canary's "
        "share of pods (which is its share of requests) closer to a step's weight; default: workload.replicas, so "
        "5% of 4 replicas runs 1 canary pod beside 7 stable (12.5%) instead of beside 3 (25%). 0 keeps the app at "
        "its size. Small weights of small apps stay coarse: `deployflow validate` names the steps it cannot give",
    )
    observed_query: str | None = Field(
        default=DEFAULT_OBSERVED_QUERY, min_length=1, max_length=4096,
        description="PromQL for the observed split: the share (0 to 1) of the app's requests the canary version "
        "({{ args.version }}) answered over the last interval; {{ args.services }} is a regex of the Services the "
        "router splits across (<app> for replicas, <app>-stable|<app>-canary for a mesh's route). It runs on the "
        "request's Prometheus: error_rate.prometheus_address, else error_rate.provider when it is Prometheus, else "
        "the first Prometheus provider of the steps' analyses, then of background_analysis; beside every measurement "
        "an analysis takes while the canary holds a weight, and as each timed pause ends. No Prometheus, or null "
        "here: no observed split. It never fails a release",
    )

    def observed_args(self, app: str) -> dict[str, str]:
        """The template arguments of `observed_query` beyond namespace, app and version."""
        services = app if self.router == "replicas" else f"{app}-stable|{app}-canary"
        return {"services": services}


class SetWeightStep(StrictModel):
    set_weight: int = Field(ge=0, le=100, description="percent of traffic for the canary")


class PauseSpec(StrictModel):
    duration: Duration | None = Field(default=None, description="how long; without it, until promote")


class PauseStep(StrictModel):
    pause: PauseSpec = Field(default_factory=PauseSpec)


class AnalysisStep(StrictModel):
    analysis: Analysis


STEP_KINDS = ("set_weight", "pause", "analysis")


def _given_step_kind(value: Any) -> str | None:
    """The kind a step was written as, from its key, so an error speaks of that kind only."""
    if isinstance(value, dict):
        given = [kind for kind in STEP_KINDS if kind in value]
        if not value:
            return "pause"  # `- {}` has always been a pause until promoted
        return given[0] if given else None
    kinds: dict[type, str] = {SetWeightStep: "set_weight", PauseStep: "pause", AnalysisStep: "analysis"}
    return kinds.get(type(value))


Step = Annotated[
    Annotated[SetWeightStep, Tag("set_weight")] | Annotated[PauseStep, Tag("pause")]
    | Annotated[AnalysisStep, Tag("analysis")],
    Discriminator(
        _given_step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step is one of set_weight, pause or analysis (e.g. `- set_weight: 20`)",
    ),
]


def step_kind(step: Step) -> str:
    if isinstance(step, SetWeightStep):
        return "set_weight"
    if isinstance(step, PauseStep):
        return "pause"
    return "analysis"


def describe_step(step: Step) -> str:
    if isinstance(step, SetWeightStep):
        return f"set weight {step.set_weight}%"
    if isinstance(step, PauseStep):
        return f"pause {format_duration(step.pause.duration)}" if step.pause.duration else "pause until promoted"
    return "analysis: " + ", ".join(m.name for m in step.analysis.metrics)


class ErrorRate(StrictModel):
    """How `stages` and the post-promotion watch measure the error rate of one version."""

    provider: Provider | None = Field(
        default=None,
        description="where the number comes from; default: Prometheus at prometheus_address, 5xx share over 30 s",
    )
    prometheus_address: FetchableUrl | None = Field(
        default=None, description="Prometheus HTTP API for the default query"
    )
    interval: PositiveDuration = Field(default=timedelta(seconds=30), description="time between measurements")
    initial_delay: Duration | None = Field(
        default=None,
        description="how long a stage waits after setting its weight before the first measurement, so that "
        "Prometheus has scraped traffic at the new weight into the query's window (a query over pods it has not "
        "scraped yet answers no data, which pauses the release as inconclusive); default: the interval, at least "
        "30 s (the default query's rate window). Raise it when Prometheus scrapes less often than every 15 s",
    )
    failure_limit: int = Field(default=0, ge=0, description="failed measurements tolerated per stage")
    baseline_factor: float | None = Field(
        default=None,
        gt=0,
        description="fail when the canary's error rate exceeds factor x the stable version's (max_error_rate is "
        "then the floor): result > max(factor * baseline, max_error_rate)",
    )

    def first_measurement_after(self) -> timedelta:
        """The delay before a stage's first measurement (`initial_delay`, or its default)."""
        if self.initial_delay is not None:
            return self.initial_delay
        return max(self.interval, DEFAULT_QUERY_WINDOW)

    def metric(self, max_error_rate: float, count: int, baseline_factor: float | None = None) -> Metric:
        factor = baseline_factor if baseline_factor is not None else self.baseline_factor
        condition = f"result > {max_error_rate:g}"
        if factor:
            condition = f"result > max({factor:g} * baseline, {max_error_rate:g})"
        provider = self.provider
        if provider is None:
            assert self.prometheus_address is not None
            provider = PrometheusProvider(address=self.prometheus_address, query=DEFAULT_ERROR_RATE_QUERY)
        return Metric(
            name="error_rate",
            provider=provider,
            interval=self.interval,
            count=count,
            failure_condition=condition,
            failure_limit=self.failure_limit,
            baseline=factor is not None,
        )


class Stage(StrictModel):
    """Compact form of one stage: set the weight, then hold it for `duration` while watching the error rate.

    With `max_error_rate` a stage expands into two steps: `set_weight: weight`, then an `analysis` of one
    `error_rate` metric (failure condition `result > max_error_rate`) whose measurements are spread over the
    stage. The first comes `error_rate.initial_delay` after the weight is set (default: the interval, at least
    30 s), so Prometheus has scraped the pods at the new weight; then one every `error_rate.interval` until
    `duration` is reached: ceil((duration - initial_delay) / interval) + 1 measurements, at least one. With the
    defaults, `{weight: 5, duration: 5m}` measures at 30 s, 1 m, ... 5 m: 10 measurements, the last as the stage
    ends. The weight is held for `duration` rounded up to the next measurement, and at least `initial_delay`.
    Without `max_error_rate` a stage is `set_weight` then `pause: {duration}`.
    """

    weight: int = Field(ge=1, le=100)
    duration: Duration = Field(
        default=timedelta(0),
        description="how long the weight is held, from the moment it is set; with max_error_rate the last "
        "measurement comes then (rounded up to the next interval), the first after error_rate.initial_delay",
    )
    max_error_rate: float | None = Field(
        default=None, ge=0, le=1,
        description="roll back when a measurement of the canary's error rate is above it (see error_rate)",
    )


class BackgroundAnalysis(StrictModel):
    """Analysis that runs from `starting_step` until the release is promoted; a failure rolls back at once."""

    starting_step: int = Field(default=0, ge=0, description="0-based index of the step it starts at")
    analysis: Analysis


class PostPromotion(StrictModel):
    """After promotion, keep measuring for `window`; roll back to the previous version if the error rate climbs
    above `factor` x the pre-deployment baseline (at least `max_error_rate`)."""

    window: PositiveDuration = Field(description="how long to watch after promotion, e.g. 24h")
    interval: PositiveDuration = Field(default=timedelta(minutes=1))
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="floor of the threshold")
    factor: float = Field(default=2.0, gt=0)
    failure_limit: int = Field(default=0, ge=0)


class CanaryRequest(StrictModel):
    """Input of the CanaryDeployment workflow.

    The app runs as `<app>-stable` and `<app>-canary` Deployments. The canary takes the traffic the steps give
    it; when the steps are done it is promoted: the stable Deployment moves to the new version and the canary
    scales to zero. The first deployment of an app has nothing to compare against and skips the steps.
    """

    strategy: Literal["canary"] = "canary"
    target: Target
    workload: Workload
    traffic: TrafficRouting = Field(default_factory=TrafficRouting)
    steps: list[Step] = Field(default_factory=list, max_length=200)
    stages: list[Stage] = Field(default_factory=list, max_length=50, description="compact form of steps")
    error_rate: ErrorRate | None = Field(default=None, description="how stages measure the error rate")
    background_analysis: BackgroundAnalysis | None = None
    post_promotion: PostPromotion | None = None
    hooks: Hooks = Field(
        default_factory=Hooks,
        description="pre_deploy before the canary is created, pre_promote before the final promotion, post_deploy "
        "once the stable track runs the new version (a failure restores the previous version), on_rollback after "
        "a rollback",
    )
    notifications: list[Notifier] = Field(default_factory=list, max_length=20)
    source: Source | None = Field(default=None, description=SOURCE_DESCRIPTION)

    @model_validator(mode="after")
    def _consistent(self) -> CanaryRequest:
        if self.steps and self.stages:
            raise ValueError("stages: give either steps or stages, not both")
        needs_error_rate = any(s.max_error_rate is not None for s in self.stages) or self.post_promotion is not None
        if needs_error_rate:
            where = "post_promotion" if self.post_promotion is not None else "stages"
            if self.error_rate is None:
                raise ValueError(f"error_rate: required by {where} (a provider, or a prometheus_address)")
            if self.error_rate.provider is None and not self.error_rate.prometheus_address:
                raise ValueError("error_rate: set provider or prometheus_address")
        self._check_measurement_counts()
        if self.background_analysis and self.background_analysis.starting_step >= max(len(self.expanded_steps()), 1):
            raise ValueError(
                f"background_analysis.starting_step: {self.background_analysis.starting_step} is past the last step"
            )
        for i, app_name in enumerate((f"{self.target.app}-stable", f"{self.target.app}-canary")):
            if len(app_name) > 63:
                raise ValueError(f"target.app: {app_name!r} would be longer than 63 characters ({i})")
        return self

    def _check_measurement_counts(self) -> None:
        """What the run would otherwise find out at the stage: more measurements than one analysis may take."""
        if self.error_rate is None:
            return
        interval = format_duration(self.error_rate.interval)
        for i, stage in enumerate(self.stages):
            count = self._stage_count(stage)
            if count > MAX_MEASUREMENTS:
                raise ValueError(
                    f"stages[{i}].duration: {format_duration(stage.duration)} with a measurement every {interval} "
                    f"is {count} measurements, more than {MAX_MEASUREMENTS}; raise error_rate.interval"
                )
        watch = self.post_promotion
        if watch is not None and self._post_promotion_count(watch) > MAX_MEASUREMENTS:
            raise ValueError(
                f"post_promotion.window: {format_duration(watch.window)} with a measurement every "
                f"{format_duration(watch.interval)} is {self._post_promotion_count(watch)} measurements, more than "
                f"{MAX_MEASUREMENTS}; raise post_promotion.interval"
            )

    def _stage_count(self, stage: Stage, delayed_measurements: bool = True) -> int:
        assert self.error_rate is not None
        interval = self.error_rate.interval.total_seconds()
        duration = stage.duration.total_seconds()
        if delayed_measurements:
            delay = self.error_rate.first_measurement_after().total_seconds()
            return max(1, math.ceil((duration - delay) / interval) + 1)
        return max(1, math.ceil(duration / interval))

    @staticmethod
    def _post_promotion_count(watch: PostPromotion) -> int:
        return max(1, math.ceil(watch.window.total_seconds() / watch.interval.total_seconds()))

    @property
    def version(self) -> str:
        return self.workload.resolved_version(self.target.container_name) or ""

    def expanded_steps(self, *, delayed_measurements: bool = True) -> list[Step]:
        """The steps the workflow runs: `steps` as given, or `stages` expanded (see `Stage`).

        `delayed_measurements=False` is the expansion runs started before stages waited for their first
        measurement: `ceil(duration / interval)` measurements from the moment the weight is set. Only a workflow
        replaying such a run asks for it.
        """
        if not self.stages:
            return list(self.steps)
        steps: list[Step] = []
        for stage in self.stages:
            steps.append(SetWeightStep(set_weight=stage.weight))
            if stage.max_error_rate is not None and self.error_rate is not None:
                count = self._stage_count(stage, delayed_measurements)
                delay = self.error_rate.first_measurement_after() if delayed_measurements else timedelta(0)
                metric = self.error_rate.metric(stage.max_error_rate, count).model_copy(
                    update={"initial_delay": delay}
                )
                steps.append(AnalysisStep(analysis=Analysis(metrics=[metric])))
            elif stage.duration > timedelta(0):
                steps.append(PauseStep(pause=PauseSpec(duration=stage.duration)))
        return steps

    def observed_metric(self) -> Metric | None:
        """The measurement of the observed split (see `TrafficRouting.observed_query`), or None without a
        Prometheus at hand. It takes the headers of the provider it borrows the address from."""
        query = self.traffic.observed_query
        prometheus = self._prometheus()
        if query is None or prometheus is None:
            return None
        return Metric(name="observed_split", provider=prometheus.model_copy(update={"query": query}))

    def _prometheus(self) -> PrometheusProvider | None:
        rate = self.error_rate
        if rate is not None and rate.prometheus_address:
            return PrometheusProvider(address=rate.prometheus_address, query=DEFAULT_OBSERVED_QUERY)
        analyses = [s.analysis for s in self.steps if isinstance(s, AnalysisStep)]
        if self.background_analysis is not None:
            analyses.append(self.background_analysis.analysis)
        providers = [rate.provider] if rate is not None else []
        providers += [m.provider for a in analyses for m in a.metrics]
        return next((p for p in providers if isinstance(p, PrometheusProvider)), None)

    def post_promotion_metric(self) -> Metric | None:
        watch = self.post_promotion
        if watch is None or self.error_rate is None:
            return None
        count = self._post_promotion_count(watch)
        metric = self.error_rate.metric(watch.max_error_rate, count, baseline_factor=watch.factor)
        return metric.model_copy(update={"interval": watch.interval, "failure_limit": watch.failure_limit})
