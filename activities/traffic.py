"""Canary traffic activities: read the two tracks, deploy a track, shift traffic, roll traffic back.

Each takes one model and is idempotent: a retry after a crash lands on the same cluster state. Calls that change
the cluster are blocking (the official client) and run in a thread; the waits follow watches on the event loop, so
a waiting release holds no thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import api_for, require_namespace
from deployflow.errors import ErrorType
from deployflow.kube.wait import blocking
from deployflow.spec.canary import TrafficRouting
from deployflow.spec.common import Target, Workload
from deployflow.traffic.base import RouterError, TrafficRouter, router_for
from deployflow.traffic.tracks import CANARY, STABLE, TrackError, Tracks, TrackState, pod_template, retarget_template

T = TypeVar("T")


class TrackInfo(BaseModel):
    track: str
    exists: bool
    replicas: int = 0
    ready: int = 0
    version: str | None = None
    image: str | None = None
    template: dict[str, Any] | None = None

    @classmethod
    def of(cls, state: TrackState) -> TrackInfo:
        return cls(
            track=state.track,
            exists=state.exists,
            replicas=state.replicas,
            ready=state.ready,
            version=state.version,
            image=state.image,
            template=state.template,
        )


class ReleaseState(BaseModel):
    stable: TrackInfo
    canary: TrackInfo


class ReleaseQuery(BaseModel):
    target: Target


class RoutingRequest(BaseModel):
    target: Target
    traffic: TrafficRouting
    port: int = 80
    target_port: int = 8080


class TrackRequest(BaseModel):
    """Runs `workload` (or a pod `template` saved earlier) on one track with `replicas` pods."""

    target: Target
    track: str = Field(pattern="^(stable|canary)$")
    workload: Workload | None = None
    template: dict[str, Any] | None = None
    replicas: int = Field(ge=0)
    wait: bool = True
    timeout_seconds: float = 600.0


class WeightRequest(BaseModel):
    target: Target
    traffic: TrafficRouting
    weight: int = Field(ge=0, le=100)
    replicas: int = Field(ge=1, description="the app's full size; each track is scaled from it")
    port: int = 80
    target_port: int = 8080
    timeout_seconds: float = 600.0


class WeightResult(BaseModel):
    weight: int
    stable_replicas: int
    canary_replicas: int
    actual_weight: float | None = Field(
        default=None,
        description="the canary's real share of requests in percent once the step ended: its share of ready pods "
        "for the replicas router, the route's weight for a mesh; None when it could not be read (and in results "
        "recorded before it existed)",
    )


class ScaleRequest(BaseModel):
    target: Target
    track: str = Field(pattern="^(stable|canary)$")
    replicas: int = Field(ge=0)


def _non_retryable(err: Exception) -> ApplicationError:
    if isinstance(err, TrackError):
        return ApplicationError(str(err), type=err.kind, non_retryable=True)
    if isinstance(err, RouterError):
        return ApplicationError(str(err), type=ErrorType.ROUTING_ERROR, non_retryable=True)
    assert isinstance(err, ApiException)
    return ApplicationError(
        f"Kubernetes API refused the request ({err.status} {err.reason}): {str(err.body)[:500]}",
        type=ErrorType.REQUEST_REJECTED,
        non_retryable=True,
    )


async def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Runs an activity's cluster work, heartbeating meanwhile (a blocking call can outlast a heartbeat timeout);
    errors a retry cannot fix stop retries."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(1.0)
            activity.heartbeat()

    beating = asyncio.create_task(beat())
    try:
        return await work()
    except (TrackError, RouterError) as err:
        raise _non_retryable(err) from err
    except ApiException as err:
        # Conflicts, throttling and server errors are transient; other 4xx mean the request itself is wrong.
        if err.status is not None and 400 <= err.status < 500 and err.status not in (404, 409, 429):
            raise _non_retryable(err) from err
        raise
    finally:
        beating.cancel()


def _router(request: RoutingRequest | WeightRequest) -> TrafficRouter:
    return router_for(
        api_for(request.target), request.target, request.traffic, request.port, request.target_port
    )


@activity.defn
async def inspect_release(request: ReleaseQuery) -> ReleaseState:
    """The stable and canary tracks as the cluster has them now (first deployment: no stable track)."""

    def read() -> ReleaseState:
        # The first look at the cluster: an unknown context or a missing namespace fails here for good, before any
        # write, rather than as a 404 retried for minutes when the canary's Deployment is created.
        api = api_for(request.target)
        require_namespace(api, request.target)
        tracks = Tracks(api, request.target)
        return ReleaseState(stable=TrackInfo.of(tracks.read(STABLE)), canary=TrackInfo.of(tracks.read(CANARY)))

    return await _run(lambda: blocking(read))


@activity.defn
async def prepare_routing(request: RoutingRequest) -> int | None:
    """Creates the Services and route objects the router needs (verifying existing ones); returns the canary's
    current weight."""

    def ensure() -> int | None:
        router = _router(request)
        router.ensure()
        return router.weight()

    return await _run(lambda: blocking(ensure))


@activity.defn
async def deploy_track(request: TrackRequest) -> TrackInfo:
    """Puts a version on a track (create or update its Deployment) and, with `wait`, waits until it is ready."""
    if request.template is None and request.workload is None:
        raise ApplicationError(
            "deploy_track needs a workload or a template", type=ErrorType.BAD_REQUEST, non_retryable=True
        )

    def apply() -> Tracks:
        tracks = Tracks(api_for(request.target), request.target)
        if request.template is not None:
            template = retarget_template(request.template, request.track)
        else:
            assert request.workload is not None
            template = pod_template(request.target, request.workload, request.track)
        tracks.apply(request.track, template, request.replicas)
        return tracks

    async def deploy() -> TrackInfo:
        tracks = await blocking(apply)
        if request.wait and request.replicas > 0:
            return TrackInfo.of(await tracks.wait_ready(request.track, request.replicas, request.timeout_seconds))
        return TrackInfo.of(await blocking(tracks.read, request.track))

    return await _run(deploy)


@activity.defn
async def set_weight(request: WeightRequest) -> WeightResult:
    """Sets the canary's share of traffic to `weight` (never adds to it). Pods that will take traffic are ready
    before the route sends it to them, and pods lose traffic before they are removed."""

    async def shift() -> WeightResult:
        router = await blocking(_router, request)
        tracks = router.tracks
        stable_n, canary_n = router.replicas(request.weight, request.replicas)
        stable, canary = await blocking(tracks.read, STABLE), await blocking(tracks.read, CANARY)
        if not stable.exists or not canary.exists:
            missing = STABLE if not stable.exists else CANARY
            raise TrackError(f"the {missing} Deployment of {request.target.app} does not exist", ErrorType.NOT_FOUND)
        timeout = request.timeout_seconds
        # Grow first, and wait: a route must never point at pods that cannot answer.
        if canary_n > canary.replicas or canary.ready < min(canary_n, canary.replicas):
            await blocking(tracks.scale, CANARY, canary_n)
            await tracks.wait_ready(CANARY, canary_n, timeout)
        if router.scales_stable and (stable_n > stable.replicas or stable.ready < min(stable_n, stable.replicas)):
            await blocking(tracks.scale, STABLE, stable_n)
            await tracks.wait_ready(STABLE, stable_n, timeout)
        await blocking(router.set_weight, request.weight)
        if canary_n < canary.replicas:
            await blocking(tracks.scale, CANARY, canary_n)
        if router.scales_stable and stable_n < stable.replicas:
            await blocking(tracks.scale, STABLE, stable_n)
        # Without a mesh the split is the pod ratio, which holds only once surplus pods are gone; with one, this
        # makes "canary at N pods" true when the step ends, not a little later.
        await tracks.wait_scaled_down(CANARY, canary_n, timeout)
        if router.scales_stable:
            await tracks.wait_scaled_down(STABLE, stable_n, timeout)
        actual = await blocking(router.actual_weight)
        return WeightResult(
            weight=request.weight, stable_replicas=stable_n, canary_replicas=canary_n, actual_weight=actual
        )

    return await _run(shift)


@activity.defn
async def rollback_traffic(request: WeightRequest) -> WeightResult:
    """Sends all traffic back to stable as fast as it safely can, then restores stable's size and scales the
    canary to zero. `weight` is ignored: a rollback always ends at 0%."""

    def route_back(router: TrafficRouter) -> None:
        try:
            routed = router.weight() is not None
        except RouterError:
            routed = False  # a route that never pointed at our Services carries none of our traffic
        if routed or router.scales_stable:
            router.set_weight(0)

    def shrink(tracks: Tracks, stable: TrackState, extra: bool) -> None:
        if stable.replicas < request.replicas or extra:
            tracks.scale(STABLE, request.replicas)
        if tracks.read(CANARY).exists:
            tracks.scale(CANARY, 0)

    async def rollback() -> WeightResult:
        router = await blocking(_router, request)
        tracks = router.tracks
        stable = await blocking(tracks.read, STABLE)
        if not stable.exists:
            raise TrackError(f"the stable Deployment of {request.target.app} does not exist", ErrorType.NOT_FOUND)
        if router.scales_stable and stable.ready == 0:
            # Without a mesh the canary pods are the only backends until stable pods are ready again.
            await blocking(tracks.scale, STABLE, request.replicas)
            await tracks.wait_ready(STABLE, 1, request.timeout_seconds)
        await blocking(route_back, router)
        # Without a mesh stable may run extra pods for a small weight: they go once the canary has none. With a mesh
        # a larger stable is someone else's choice (an autoscaler) and stays.
        extra = router.scales_stable and stable.replicas > request.replicas
        await blocking(shrink, tracks, stable, extra)
        await tracks.wait_ready(STABLE, request.replicas, request.timeout_seconds)
        await tracks.wait_scaled_down(CANARY, 0, request.timeout_seconds)
        if extra:
            await tracks.wait_scaled_down(STABLE, request.replicas, request.timeout_seconds)
        return WeightResult(weight=0, stable_replicas=request.replicas, canary_replicas=0, actual_weight=0.0)

    return await _run(rollback)


@activity.defn
async def scale_track(request: ScaleRequest) -> None:
    def scale() -> None:
        tracks = Tracks(api_for(request.target), request.target)
        if tracks.read(request.track).exists:
            tracks.scale(request.track, request.replicas)

    await _run(lambda: blocking(scale))


TRAFFIC_ACTIVITIES: list[Callable[..., Any]] = [
    inspect_release, prepare_routing, deploy_track, set_weight, rollback_traffic, scale_track,
]
