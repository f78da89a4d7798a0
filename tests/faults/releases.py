"""Releases as a user starts them (workflow type, the spec as the one JSON input, id deploy/<cluster>/<ns>/<app>),
built from the specs in examples/, and followed from outside: the workflow's result and its `status` query.

Each release gets a namespace of its own, so the simulator's count of requests that found no ready backend is
counted per release.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from deployflow.demo import DEV_PROMETHEUS, EXAMPLES, apply_manifests, create_namespace, deep_merge
from deployflow.status import DeploymentStatus, Phase
from deployflow.temporal import DEPLOY_PHASE

WORKFLOW_TYPES = {"blue-green": "BlueGreenDeployment", "canary": "CanaryDeployment", "rolling": "RollingDeployment"}
READY_DELAY = "sim.deployflow.io/ready-delay-seconds"
ROUTERS = ("replicas", "gateway-api", "istio", "nginx")
QUERY_TIMEOUT = 10.0


def example(name: str, prometheus_url: str | None = None) -> dict[str, Any]:
    source = (EXAMPLES / name).read_text()
    if prometheus_url:  # the examples name `deployflow dev`'s Prometheus; this stack has its own port
        source = source.replace(DEV_PROMETHEUS, prometheus_url)
    loaded: dict[str, Any] = yaml.safe_load(source)
    return loaded


@dataclass
class Release:
    """One release the suite starts, and what it must end as."""

    label: str
    spec: dict[str, Any]
    expect: Phase = Phase.SUCCEEDED
    gated: bool = False  # holds at a promotion gate until the scenario sends `promote`
    handle: WorkflowHandle[Any, Any] | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    kills: int = 0  # faults that hit it while it ran
    mid_activity: int = 0  # of those, the ones that hit while an activity of it was running on the worker
    promoted: bool = False
    failure: str | None = None
    status: DeploymentStatus | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def strategy(self) -> str:
        return str(self.spec["strategy"])

    @property
    def workflow_type(self) -> str:
        return WORKFLOW_TYPES[self.strategy]

    @property
    def target(self) -> dict[str, str]:
        target: dict[str, str] = self.spec["target"]
        return target

    @property
    def namespace(self) -> str:
        return self.target["namespace"]

    @property
    def app(self) -> str:
        return self.target["app"]

    @property
    def workflow_id(self) -> str:
        return f"deploy/{self.target['cluster']}/{self.namespace}/{self.app}"

    @property
    def version(self) -> str:
        image = self.spec["image"] if self.strategy == "rolling" else self.spec["workload"]["image"]
        return str(image).rsplit(":", 1)[1]

    @property
    def running(self) -> bool:
        return self.handle is not None and self.ended_at is None

    @property
    def seconds(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at


# ---- specs ---------------------------------------------------------------------------------------------------


def slow_pods(seconds: float) -> dict[str, str]:
    """Pods that take `seconds` (simulated) to become ready: health waits last long enough for faults to land in."""
    return {READY_DELAY: f"{seconds:g}"}


def bluegreen(namespace: str, version: str, *, gated: bool = False, standby: str = "3s",
              ready_delay: float = 2.0) -> Release:
    spec = deep_merge(example("bluegreen.yaml"), {
        "target": {"namespace": namespace},
        "workload": {"image": f"registry.example.com/shop/web:{version}", "pod_annotations": slow_pods(ready_delay)},
        "standby": standby,
        "promotion": {"mode": "manual"} if gated else {"mode": "auto"},
    })
    return Release(f"blue-green {version}", spec, gated=gated)


def canary_analysis(prometheus_url: str) -> dict[str, Any]:
    """The analysis of examples/canary.yaml (Prometheus error rate of the canary's version)."""
    steps = example("canary.yaml", prometheus_url)["steps"]
    analysis: dict[str, Any] = next(s["analysis"] for s in steps if "analysis" in s)
    return analysis


def canary(namespace: str, version: str, router: str, *, prometheus_url: str,
           steps: list[dict[str, Any]] | None = None, bad: bool = False, ready_delay: float = 2.0) -> Release:
    base = example("canary-bad.yaml" if bad else "canary.yaml", prometheus_url)
    annotations = {**base["workload"].get("pod_annotations", {}), **slow_pods(ready_delay)}
    spec = deep_merge(base, {
        "target": {"namespace": namespace},
        "workload": {"image": f"registry.example.com/shop/cart:{version}", "pod_annotations": annotations},
        "traffic": {"router": router},
    })
    if steps is not None:
        spec["steps"] = steps
    label = f"canary/{router} {version}" + (" (bad: 20% errors)" if bad else "")
    return Release(label, spec, expect=Phase.ROLLED_BACK if bad else Phase.SUCCEEDED,
                   gated=any(s.get("pause") == {} for s in spec["steps"]))


def rolling(namespace: str, version: str, *, gated: bool = False, ready_delay: float = 2.0,
            bake: str = "1s", gate_after_batch: int = 3) -> Release:
    overrides: dict[str, Any] = {
        "target": {"namespace": namespace},
        "image": f"registry.example.com/shop/catalog:{version}",
        "pod_annotations": slow_pods(ready_delay),
        "bake": bake,
    }
    spec = deep_merge(example("rolling.yaml"), overrides)
    if gated:
        spec["approval"] = {"after_batch": gate_after_batch}
    return Release(f"rolling {version}", spec, gated=gated)


# ---- starting and following ------------------------------------------------------------------------------------


async def prepare_namespace(kubeconfig: Path, namespace: str, strategy: str) -> None:
    """The namespace, and for a rolling release the app as a team already runs it (examples/manifests)."""
    await asyncio.to_thread(create_namespace, kubeconfig, namespace)
    if strategy == "rolling":
        await asyncio.to_thread(apply_manifests, kubeconfig, EXAMPLES / "manifests" / "catalog.yaml", namespace, 120)


async def start(client: Client, release: Release, task_queue: str) -> Release:
    release.handle = await client.start_workflow(
        release.workflow_type, release.spec, id=release.workflow_id, task_queue=task_queue,
    )
    release.started_at = time.monotonic()
    return release


async def query(release: Release) -> DeploymentStatus | None:
    """The `status` query, or None while no worker can answer it (just killed, server restarting)."""
    assert release.handle is not None
    try:
        return await asyncio.wait_for(release.handle.query("status", result_type=DeploymentStatus),
                                      timeout=QUERY_TIMEOUT)
    except (RPCError, TimeoutError):
        return None


@dataclass(frozen=True)
class Moment:
    """Where a release is, as the server has it (no worker needed): its phase and its pending activities."""

    phase: str
    activities: tuple[str, ...]
    running_activity: bool  # an attempt has started on a worker and not finished

    def describe(self) -> str:
        return f"{self.phase}" + (f" in {', '.join(self.activities)}" if self.activities else "")


async def where(release: Release, worker_pid: int | None) -> Moment:
    """`worker_pid`: the worker about to be hurt. An activity counts as running on it when the server has the
    attempt started by that process (workers identify as `<pid>@<host>`); an attempt started by a worker killed
    earlier is still "started" for the server until its heartbeat timeout, but nothing runs it."""
    assert release.handle is not None
    desc = await release.handle.describe()
    started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    mine = f"{worker_pid}@"

    def state(a: Any) -> str:
        if a.state != started:
            return "waiting for a worker"
        return "running" if a.last_worker_identity.startswith(mine) else "lost with an earlier worker"

    pending = desc.raw_description.pending_activities
    activities = tuple(f"{a.activity_type.name} ({state(a)}, attempt {a.attempt})" for a in pending)
    running = any(state(a) == "running" for a in pending)
    return Moment(desc.typed_search_attributes.get(DEPLOY_PHASE) or "?", activities, running)


async def outcome(release: Release, timeout: float) -> Release:
    """Waits for the run to close; records the failure (if any) and the final status."""
    assert release.handle is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(release.handle.result(), timeout=max(deadline - time.monotonic(), 0))
            break
        except WorkflowFailureError as err:
            cause = err.cause
            release.failure = f"{type(cause).__name__}: {cause}" if cause else str(err)
            break
        except RPCError:
            # The server is away (a restart under test): ask again, as `temporal workflow result` would be rerun.
            await asyncio.sleep(1)
    release.ended_at = release.ended_at or time.monotonic()
    release.status = await eventually(lambda: query(release), "final status", timeout=120)
    return release


async def eventually(probe: Callable[[], Any], what: str, timeout: float, every: float = 0.5) -> Any:
    """Polls an async probe until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s")
        await asyncio.sleep(every)


async def promote_when_waiting(release: Release) -> bool:
    """Sends `promote` (a signal, as `temporal workflow signal --name promote` does) once the release waits at its
    gate; True once sent."""
    if release.promoted or release.handle is None:
        return release.promoted
    status = await query(release)
    if status is None or status.phase != Phase.WAITING_PROMOTION:
        return False
    await release.handle.signal("promote", {"full": False})
    release.promoted = True
    return True
