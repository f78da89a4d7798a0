"""Orchestration overhead of a release: what Temporal and the worker add on top of the Kubernetes work itself.

Runs blue-green releases on a throwaway local stack (`deployflow.dev.DevStack`: the Temporal dev server, the
simulator, a worker) and reads each run's history: wall time from start to close, the time activities spent
executing (started -> completed), durable timers, and what is left: scheduling, task dispatch, history writes and
workflow tasks. Then the same release for several apps at once, for throughput.

    .venv/bin/python bench/orchestration_overhead.py [--releases 6] [--parallel 8]

Prints figures; asserts nothing. Judge them against the floor measured on this machine for trivial activities
(about 41 ms per sequential activity with the dev server and worker on one 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployflow.demo import create_namespace, deep_merge  # noqa: E402
from deployflow.dev import DevPorts, DevStack  # noqa: E402
from deployflow.spec import BlueGreenRequest  # noqa: E402
from deployflow.temporal import DEFAULT_TASK_QUEUE  # noqa: E402

NAMESPACE = "bench"


def spec(app: str, version: str) -> BlueGreenRequest:
    base = yaml.safe_load((ROOT / "examples" / "bluegreen.yaml").read_text())
    doc = deep_merge(base, {
        "target": {"namespace": NAMESPACE, "app": app},
        "workload": {"image": f"registry.example.com/shop/web:{version}", "replicas": 2},
        "standby": "0s",
    })
    return BlueGreenRequest.model_validate(doc)


def breakdown(history: Any) -> dict[str, float]:
    """Seconds of wall time, activity execution and timers in one run's history, and the activity count."""
    first: datetime | None = None
    last: datetime | None = None
    started: dict[int, datetime] = {}
    timers: dict[int, datetime] = {}
    busy = timer = 0.0
    activities = 0
    for event in history.events:
        when = event.event_time.ToDatetime()
        first = first or when
        last = when
        kind = event.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            activities += 1
        elif kind == "activity_task_started_event_attributes":
            started[event.activity_task_started_event_attributes.scheduled_event_id] = when
        elif kind == "activity_task_completed_event_attributes":
            begin = started.get(event.activity_task_completed_event_attributes.scheduled_event_id)
            if begin:
                busy += (when - begin).total_seconds()
        elif kind == "timer_started_event_attributes":
            timers[event.event_id] = when
        elif kind == "timer_fired_event_attributes":
            begin = timers.get(event.timer_fired_event_attributes.started_event_id)
            if begin:
                timer += (when - begin).total_seconds()
    wall = (last - first).total_seconds() if first and last else 0.0
    return {"wall": wall, "busy": busy, "timers": timer, "activities": activities,
            "overhead": max(0.0, wall - busy - timer), "events": len(history.events)}


async def release(client: Any, app: str, version: str) -> dict[str, float]:
    request = spec(app, version)
    workflow_id = request.target.workflow_id()
    handle = await client.start_workflow("BlueGreenDeployment", request, id=workflow_id, task_queue=DEFAULT_TASK_QUEUE)
    await handle.result()
    return breakdown(await handle.fetch_history())


async def main(releases: int, parallel: int) -> None:
    with tempfile.TemporaryDirectory(prefix="deployflow-bench-") as state:
        stack = DevStack(DevPorts.free(), state_dir=Path(state), time_factor=50.0, prometheus=False, persistent=False)
        async with stack:
            create_namespace(stack.kubeconfig, NAMESPACE)
            client = await stack.client()
            print(f"blue-green releases of one app, one after another ({releases}, the first creates it):")
            runs = [await release(client, "shop", f"1.0.{i}") for i in range(releases)]
            steady = runs[1:] or runs
            per_activity = [r["overhead"] / r["activities"] for r in steady if r["activities"]]
            print(f"  wall per release          {statistics.median(r['wall'] for r in steady) * 1000:8.0f} ms (median)")
            print(f"  activities per release    {statistics.median(r['activities'] for r in steady):8.0f}")
            print(f"  activity execution        {statistics.median(r['busy'] for r in steady) * 1000:8.0f} ms")
            print(f"  durable timers            {statistics.median(r['timers'] for r in steady) * 1000:8.0f} ms")
            print(f"  orchestration overhead    {statistics.median(r['overhead'] for r in steady) * 1000:8.0f} ms "
                  f"per release, {statistics.median(per_activity) * 1000:.0f} ms per activity "
                  "(floor on this machine: ~41 ms)")
            print(f"  history events            {statistics.median(r['events'] for r in steady):8.0f}")

            print(f"\n{parallel} apps released at once (each created, then upgraded):")
            apps = [f"app{i}" for i in range(parallel)]
            await asyncio.gather(*(release(client, a, "1.0.0") for a in apps))
            began = time.monotonic()
            results = await asyncio.gather(*(release(client, a, "2.0.0") for a in apps))
            elapsed = time.monotonic() - began
            activities = sum(r["activities"] for r in results)
            print(f"  all {parallel} releases done in {elapsed:.2f} s: {parallel / elapsed * 60:.0f} releases/min, "
                  f"{activities / elapsed:.0f} activities/s")
            median_wall = statistics.median(r['wall'] for r in results) * 1000
            print(f"  wall per release          {median_wall:8.0f} ms (median)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=6)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.releases, args.parallel))
