"""Abort and rollback latency: how fast an operator's `abort` (or `rollback`), or a failing post-promotion
measurement, brings users back to the stable version, per strategy and traffic router.

Scenarios (each run on a fresh app that first gets v1, then a release of v2):
- `bluegreen-abort`: blue-green waiting at a manual promotion gate (before the switch); `abort` update.
- `canary-abort-<router>`: a canary holding at 25% (a pause step) behind the replicas, gateway-api, istio or nginx
  router; `abort` update.
- `rolling-abort`: a rolling release in batches of one pod, aborted while its second batch moves (the first new pod
  serves, the next is starting); rolls back all at once.
- `bluegreen-rollback`: blue-green after the switch, old colour on standby; `rollback` update.
- `canary-post-promotion`: a canary promoted to 100% whose post-promotion watch fails its first measurement; the
  previous version is restored.

Figures per scenario: from the update (or the failing measurement) to the last answer of the new version through
the app's entry point (`to_stable`: users on the stable version only), to the update's answer (`ack`), and to the
end of the run (`closed`: rollback finished, new pods scaled away). A poller sends requests through the entry point
every few milliseconds (the simulator's traffic, in this process); blue-green before the switch never served the
new version to users, so its `to_stable` is 0 by construction and `served_new` says so.

    .venv/bin/python bench/abort_latency.py [--runs 3] [--scenarios all] [--pod-start 0.05] [--rolling-pod-start 1]

Prints one JSON object and one line for the README's *Measured* table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, log, machine, ms, run_main, spread  # noqa: E402
from kubectl_vs_workflow import catalog_manifests, kubectl  # noqa: E402
from rollback_latency import ENTRY, Lab, VersionPoller, canary, closed, lab  # noqa: E402

from deployflow.spec import BlueGreenRequest, RollingRequest  # noqa: E402
from deployflow.spec.control import AbortRequest, RollbackRequest  # noqa: E402
from deployflow.status import DeploymentStatus, Phase  # noqa: E402

READY_DELAY_ANNOTATION = "sim.deployflow.io/ready-delay-seconds"  # the simulator's per-pod start delay
TIME_FACTOR = 20.0
Figures = dict[str, Any]


async def wait_until(handle: Any, done: Callable[[DeploymentStatus], bool], poller: VersionPoller | None = None,
                     version: str | None = None, timeout: float = 120.0) -> DeploymentStatus:
    """Queries `status` every 20 ms until `done(status)` (and, with a poller, until `version` answered)."""
    deadline = time.monotonic() + timeout
    while True:
        status: DeploymentStatus = await handle.query("status", result_type=DeploymentStatus)
        if done(status) and (poller is None or version is None or version in poller.last):
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"{handle.id}: the awaited state never came; phase {status.phase}: {status.message}")
        await asyncio.sleep(0.02)


async def steer(handle: Any, poller: VersionPoller, message: str, request: Any) -> Figures:
    """Sends the update and measures from the moment it was sent."""
    sent = time.time()
    await handle.execute_update(message, request, result_type=DeploymentStatus)
    acked = time.time()
    failed = await closed(handle)
    ended = time.time()
    poller.finish()
    return figures(poller, sent, acked=acked, ended=ended, failed=failed)


def figures(poller: VersionPoller, since: float, ended: float, failed: bool, acked: float | None = None) -> Figures:
    last_new = poller.last.get("v2")
    return {"to_stable": max(0.0, last_new - since) if last_new is not None else 0.0,
            "served_new": last_new is not None, "ack": acked - since if acked is not None else None,
            "closed": ended - since, "run_failed": failed}


# --- the scenarios ------------------------------------------------------------------------------------------------


def bluegreen(namespace: str, version: str, **fields: Any) -> BlueGreenRequest:
    return BlueGreenRequest.model_validate({
        "target": {"cluster": "sim", "namespace": namespace, "app": "web"},
        "workload": {"image": f"web:{version}", "replicas": 4}, "standby": "0s", **fields,
    })


async def bluegreen_abort(the_lab: Lab) -> Figures:
    namespace = the_lab.namespace("bg-abort")
    await the_lab.execute("BlueGreenDeployment", bluegreen(namespace, "v1"))
    poller = VersionPoller(the_lab.sim, namespace, "service/web")
    poller.start()
    handle = await the_lab.start("BlueGreenDeployment", bluegreen(namespace, "v2", promotion={"mode": "manual"}))
    await wait_until(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    return await steer(handle, poller, "abort", AbortRequest(reason="bench: abort before the switch"))


async def bluegreen_rollback(the_lab: Lab) -> Figures:
    namespace = the_lab.namespace("bg-rollback")
    await the_lab.execute("BlueGreenDeployment", bluegreen(namespace, "v1"))
    poller = VersionPoller(the_lab.sim, namespace, "service/web")
    poller.start()
    handle = await the_lab.start("BlueGreenDeployment", bluegreen(namespace, "v2", standby="10m"))
    await wait_until(handle, lambda s: s.phase == Phase.STANDBY, poller, "v2")
    return await steer(handle, poller, "rollback", RollbackRequest(reason="bench: rollback during standby"))


def canary_abort(router: str) -> Callable[[Lab], Awaitable[Figures]]:
    async def scenario(the_lab: Lab) -> Figures:
        namespace = the_lab.namespace("canary-abort")
        await the_lab.execute("CanaryDeployment", canary(namespace, "v1", router, []))
        poller = VersionPoller(the_lab.sim, namespace, ENTRY[router])
        poller.start()
        steps: list[dict[str, Any]] = [{"set_weight": 25}, {"pause": {}}]
        handle = await the_lab.start("CanaryDeployment", canary(namespace, "v2", router, steps))
        await wait_until(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, poller, "v2")
        return await steer(handle, poller, "abort", AbortRequest(reason="bench: abort at 25%"))

    return scenario


async def canary_post_promotion(the_lab: Lab) -> Figures:
    namespace = the_lab.namespace("canary-watch")
    watch = {"error_rate": {"provider": the_lab.metric(), "interval": "1s", "initial_delay": "1s"},
             "post_promotion": {"window": "10m", "interval": "1s", "max_error_rate": 0.02}}
    await the_lab.execute("CanaryDeployment", canary(namespace, "v1", "replicas", [], **watch))
    poller = VersionPoller(the_lab.sim, namespace, ENTRY["replicas"])
    poller.start()
    handle = await the_lab.start("CanaryDeployment",
                                 canary(namespace, "v2", "replicas", [{"set_weight": 50}], **watch))
    failed = await closed(handle)
    ended = time.time()
    poller.finish()
    status: DeploymentStatus = await handle.query("status", result_type=DeploymentStatus)
    failing = [m for m in status.measurements if m.verdict == "Failed"]
    if not failing:
        raise RuntimeError(f"the post-promotion watch never failed: {status.message}")
    return figures(poller, failing[0].time.timestamp(), ended=ended, failed=failed)


def rolling_abort(rolling_pod_start: float) -> Callable[[Lab], Awaitable[Figures]]:
    async def scenario(the_lab: Lab) -> Figures:
        namespace = the_lab.namespace("rolling-abort")
        kubectl(the_lab.kubeconfig, "apply", "-f", "-", stdin=catalog_manifests(namespace, 4))
        kubectl(the_lab.kubeconfig, "-n", namespace, "rollout", "status", "deployment/catalog", "--timeout=120s")
        poller = VersionPoller(the_lab.sim, namespace, "service/catalog")
        poller.start()
        # The new pods start slowly, so the abort (sent when the first new pod serves) lands while the second
        # batch's pod is still starting.
        request = RollingRequest.model_validate({
            "target": {"cluster": "sim", "namespace": namespace, "app": "catalog"},
            "image": "registry.example.com/shop/catalog:v2", "batch_size": 1, "max_surge": 1, "max_unavailable": 0,
            "pod_annotations": {READY_DELAY_ANNOTATION: str(rolling_pod_start * TIME_FACTOR)},
        })
        handle = await the_lab.start("RollingDeployment", request)
        await wait_until(handle, lambda s: True, poller, "v2")
        return await steer(handle, poller, "abort", AbortRequest(reason="bench: abort mid-batch"))

    return scenario


def scenarios(args: argparse.Namespace) -> dict[str, Callable[[Lab], Awaitable[Figures]]]:
    every: dict[str, Callable[[Lab], Awaitable[Figures]]] = {"bluegreen-abort": bluegreen_abort}
    every.update({f"canary-abort-{router}": canary_abort(router) for router in ENTRY})
    every["rolling-abort"] = rolling_abort(args.rolling_pod_start)
    every["bluegreen-rollback"] = bluegreen_rollback
    every["canary-post-promotion"] = canary_post_promotion
    if args.scenarios == "all":
        return every
    return {name: every[name] for name in args.scenarios.split(",")}


def table_line(result: dict[str, Any], seconds: dict[str, list[float]]) -> tuple[str, str]:
    what = (f"abort and rollback latency (`bench/abort_latency.py`: update, or first failing post-promotion "
            f"measurement → last answer of the new version; dev server, 4 replicas, {result['runs']} runs each, "
            "median (min–max))")
    parts = [f"{name} {ms(values)}" for name, values in seconds.items()]
    return what, ", ".join(parts) + "; blue-green before the switch never serves the new version (0 by construction)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="all", help="comma-separated scenario names, or all")
    parser.add_argument("--pod-start", type=float, default=0.05, help="real seconds from pod creation to Ready")
    parser.add_argument("--rolling-pod-start", type=float, default=1.0,
                        help="real seconds for the rolling release's new pods to become Ready")
    args = parser.parse_args()

    runs: dict[str, list[Figures]] = {}
    async with lab(args.pod_start, TIME_FACTOR) as the_lab:
        for name, scenario in scenarios(args).items():
            runs[name] = [await scenario(the_lab) for _ in range(args.runs)]
            log(f"{name}: to stable {ms([r['to_stable'] for r in runs[name]])}, "
                f"closed {ms([r['closed'] for r in runs[name]])}")
    to_stable = {name: [r["to_stable"] for r in rs] for name, rs in runs.items()}
    result: dict[str, Any] = {
        "bench": "abort_latency", "runs": args.runs, "pod_start_s": args.pod_start, "replicas": 4,
        "rolling_pod_start_s": args.rolling_pod_start, "machine": machine(),
        "scenarios": {name: {
            "to_stable_ms": spread(to_stable[name], scale=1000, digits=1),
            "ack_ms": spread([r["ack"] for r in rs if r["ack"] is not None], scale=1000, digits=1),
            "closed_ms": spread([r["closed"] for r in rs], scale=1000, digits=1),
            "served_new_version": [r["served_new"] for r in rs],
            "run_failed": [r["run_failed"] for r in rs],
        } for name, rs in runs.items()},
    }
    emit(result, *table_line(result, to_stable))


if __name__ == "__main__":
    run_main(main())
