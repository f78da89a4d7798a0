"""Canary traffic activities: read the two tracks, deploy a track, shift traffic, roll traffic back.

Each takes one model and is idempotent: a retry after a crash lands on the same cluster state. Kubernetes calls
are blocking, so they run in a thread while the activity heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import api_for, require_namespace
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


class ScaleRequest(BaseModel):
    target: Target
    track: str = Field(pattern="^(stable|canary)$")
    replicas: int = Field(ge=0)


def _heartbeat(detail: str) -> None:
    # Cluster work runs in a thread, where the activity context is not reachable; _run heartbeats for it.
    return None


def _non_retryable(err: Exception) -> ApplicationError:
    if isinstance(err, TrackError):
        return ApplicationError(str(err), type=err.kind, non_retryable=True)
    if isinstance(err, RouterError):
        return ApplicationError(str(err), type="RoutingError", non_retryable=True)
    assert isinstance(err, ApiException)
    return ApplicationError(
        f"Kubernetes API refused the request ({err.status} {err.reason}): {str(err.body)[:500]}",
        type="KubernetesRequestRejected",
        non_retryable=True,
    )


async def _run(fn: Callable[..., T], *args: Any) -> T:
    """Runs blocking cluster work in a thread, heartbeating meanwhile; errors a retry cannot fix stop retries."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(1.0)
            activity.heartbeat()

    beating = asyncio.create_task(beat())
    work = asyncio.ensure_future(asyncio.to_thread(functools.partial(fn, *args)))
    try:
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            # A thread cannot be stopped: let it finish its change before reporting the cancellation, so the
            # rollback that follows never races with it.
            with contextlib.suppress(Exception):
                await work
            raise
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

    return await _run(read)


@activity.defn
async def prepare_routing(request: RoutingRequest) -> int | None:
    """Creates the Services and route objects the router needs (verifying existing ones); returns the canary's
    current weight."""

    def ensure() -> int | None:
        router = _router(request)
        router.ensure()
        return router.weight()

    return await _run(ensure)


@activity.defn
async def deploy_track(request: TrackRequest) -> TrackInfo:
    """Puts a version on a track (create or update its Deployment) and, with `wait`, waits until it is ready."""
    if request.template is None and request.workload is None:
        raise ApplicationError("deploy_track needs a workload or a template", type="BadRequest", non_retryable=True)

    def apply() -> TrackInfo:
        tracks = Tracks(api_for(request.target), request.target)
        if request.template is not None:
            template = retarget_template(request.template, request.track)
        else:
            assert request.workload is not None
            template = pod_template(request.target, request.workload, request.track)
        tracks.apply(request.track, template, request.replicas)
        if request.wait and request.replicas > 0:
            return TrackInfo.of(
                tracks.wait_ready(request.track, request.replicas, request.timeout_seconds, _heartbeat)
            )
        return TrackInfo.of(tracks.read(request.track))

    return await _run(apply)


@activity.defn
async def set_weight(request: WeightRequest) -> WeightResult:
    """Sets the canary's share of traffic to `weight` (never adds to it). Pods that will take traffic are ready
    before the route sends it to them, and pods lose traffic before they are removed."""

    def shift() -> WeightResult:
        router = _router(request)
        tracks = router.tracks
        stable_n, canary_n = router.replicas(request.weight, request.replicas)
        stable, canary = tracks.read(STABLE), tracks.read(CANARY)
        if not stable.exists or not canary.exists:
            missing = STABLE if not stable.exists else CANARY
            raise TrackError(f"the {missing} Deployment of {request.target.app} does not exist", "NotFound")
        timeout = request.timeout_seconds
        # Grow first, and wait: a route must never point at pods that cannot answer.
        if canary_n > canary.replicas or canary.ready < min(canary_n, canary.replicas):
            tracks.scale(CANARY, canary_n)
            tracks.wait_ready(CANARY, canary_n, timeout, _heartbeat)
        if router.scales_stable and (stable_n > stable.replicas or stable.ready < min(stable_n, stable.replicas)):
            tracks.scale(STABLE, stable_n)
            tracks.wait_ready(STABLE, stable_n, timeout, _heartbeat)
        router.set_weight(request.weight)
        if canary_n < canary.replicas:
            tracks.scale(CANARY, canary_n)
        if router.scales_stable and stable_n < stable.replicas:
            tracks.scale(STABLE, stable_n)
        # Without a mesh the split is the pod ratio, which holds only once surplus pods are gone; with one, this
        # makes "canary at N pods" true when the step ends, not a little later.
        tracks.wait_scaled_down(CANARY, canary_n, timeout, _heartbeat)
        if router.scales_stable:
            tracks.wait_scaled_down(STABLE, stable_n, timeout, _heartbeat)
        return WeightResult(weight=request.weight, stable_replicas=stable_n, canary_replicas=canary_n)

    return await _run(shift)


@activity.defn
async def rollback_traffic(request: WeightRequest) -> WeightResult:
    """Sends all traffic back to stable as fast as it safely can, then restores stable's size and scales the
    canary to zero. `weight` is ignored: a rollback always ends at 0%."""

    def rollback() -> WeightResult:
        router = _router(request)
        tracks = router.tracks
        stable = tracks.read(STABLE)
        if not stable.exists:
            raise TrackError(f"the stable Deployment of {request.target.app} does not exist", "NotFound")
        if router.scales_stable and stable.ready == 0:
            # Without a mesh the canary pods are the only backends until stable pods are ready again.
            tracks.scale(STABLE, request.replicas)
            tracks.wait_ready(STABLE, 1, request.timeout_seconds, _heartbeat)
        try:
            routed = router.weight() is not None
        except RouterError:
            routed = False  # a route that never pointed at our Services carries none of our traffic
        if routed or router.scales_stable:
            router.set_weight(0)
        if stable.replicas < request.replicas:
            tracks.scale(STABLE, request.replicas)
        if tracks.read(CANARY).exists:
            tracks.scale(CANARY, 0)
        tracks.wait_ready(STABLE, request.replicas, request.timeout_seconds, _heartbeat)
        tracks.wait_scaled_down(CANARY, 0, request.timeout_seconds, _heartbeat)
        return WeightResult(weight=0, stable_replicas=request.replicas, canary_replicas=0)

    return await _run(rollback)


@activity.defn
async def scale_track(request: ScaleRequest) -> None:
    def scale() -> None:
        tracks = Tracks(api_for(request.target), request.target)
        if tracks.read(request.track).exists:
            tracks.scale(request.track, request.replicas)

    await _run(scale)


TRAFFIC_ACTIVITIES: list[Callable[..., Any]] = [
    inspect_release, prepare_routing, deploy_track, set_weight, rollback_traffic, scale_track,
]
