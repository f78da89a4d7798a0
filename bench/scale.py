"""How the cost of canary releases grows with the number running at once, on one worker process and on two.

For each size N: N apps get v1 (a first CanaryDeployment, not measured), the trivial-activity floor is measured (a
workflow of sequential no-op activities, on the same server and worker process), then N canaries (v1 -> v2,
replicas router, 20% / pause / 50% / pause / 100%) start at once. Figures per size: wall time to the last result,
worker CPU seconds per release (/proc/<pid>/stat of the worker processes), peak worker RSS during the phase
(VmHWM, reset before it), history events and activities per release (fetch_history), Kubernetes API requests per
release (the simulator's request counter, reset before the phase), activities per second against the floor, and
how long tasks waited for the worker (activity and workflow task schedule-to-start, from the histories).
Temporal dev server, simulator and workers are processes of their own on loopback.

    .venv/bin/python bench/scale.py [--sizes 10,50] [--workers 1,2] [--replicas 2] [--floor-activities 100]
        [worker knobs: --max-concurrent-activities 32 --max-concurrent-workflow-tasks N --max-cached-workflows N
         --max-concurrent-workflow-task-polls N --max-concurrent-activity-task-polls N
         --nonsticky-to-sticky-poll-ratio F --sticky-queue-schedule-to-start-timeout S]

Prints one JSON object and one line for the README's *Measured* table; asserts nothing.

What the numbers point at (worker settings). Measured so far only on the shared 2-core machine under a load average
of 7-8.5 from other processes, so these are leads to confirm on a quiet machine, not README figures:
- max_cached_workflows (SDK default 1,000) must stay above the releases one process runs at once. From 10 to 100
  releases, events per release stayed at 82 and worker CPU per release at 0.13-0.16 s: no eviction. With
  --max-cached-workflows 2 at N=6, CPU per release rose from about 0.10 to 0.45 s and the wall time from 3.9 to 6.7 s:
  every evicted run is replayed from its whole history on its next task. Above ~1,000 concurrent releases per
  process raise it (peak RSS grows with it: 140 MiB at N=10, 185 MiB at N=100) or add processes.
- At N=100 tasks queue: workflow task schedule-to-start median 1.2 s and activity 0.3 s on one worker, while that
  worker used only a quarter of a core (the simulator and the dev server a fifth and a quarter each). A second
  worker process cut the workflow task wait to 0.7 s but not the wall time; 16 instead of 5 workflow and activity
  task pollers (--max-concurrent-workflow-task-polls/--max-concurrent-activity-task-polls) gave 45 s instead of
  53 s, within the noise of that load. First settings to try on a quiet machine at N=500-1,000: the poller counts,
  then max_concurrent_workflow_tasks (SDK default 100), then a second process.
- max_concurrent_activities (worker.build_worker: 32, also the size of the activity thread pool): the canary's
  activities are short API calls plus heartbeating waits for pods; an activity schedule-to-start wait that grows
  with N while no process is CPU-bound means the slots are the limit. Raise it with the thread pool.
- Sticky queues (nonsticky_to_sticky_poll_ratio, sticky_queue_schedule_to_start_timeout, default 10 s) keep a run
  on the process that caches it; with two processes the timeout bounds how long a task waits for a busy process
  before another replays the run.
worker.build_worker exposes only max_concurrent_activities; the other knobs are set here on a copy of its
configuration (see _common.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    KNOBS,
    Child,
    SimProcess,
    cpu_seconds,
    dev_server_pid,
    emit,
    floor,
    log,
    machine,
    run_main,
    scratch_dir,
    sim_process,
    spread,
    temporal_dev_server,
    workers,
)
from temporalio.client import Client  # noqa: E402

from deployflow.spec.canary import CanaryRequest  # noqa: E402

QUEUE = "bench-scale"
STEPS: list[dict[str, Any]] = [{"set_weight": 20}, {"pause": {"duration": "1s"}}, {"set_weight": 50},
                               {"pause": {"duration": "1s"}}, {"set_weight": 100}]
HISTORY_READERS = 16  # concurrent fetch_history calls after a phase


def canary(namespace: str, app: str, version: str, replicas: int, steps: list[dict[str, Any]]) -> CanaryRequest:
    return CanaryRequest.model_validate({
        "target": {"cluster": "sim", "namespace": namespace, "app": app},
        "workload": {"image": f"registry.example.com/bench/{app}:{version}", "replicas": replicas},
        "traffic": {"router": "replicas"},
        "steps": steps,
    })


async def release_all(client: Client, requests: list[CanaryRequest]) -> tuple[float, list[str]]:
    """Starts every release at once and waits for all; wall seconds and the workflow ids."""
    began = time.monotonic()
    handles = await asyncio.gather(*(client.start_workflow("CanaryDeployment", r, id=r.target.workflow_id(),
                                                           task_queue=QUEUE) for r in requests))
    await asyncio.gather(*(h.result() for h in handles))
    return time.monotonic() - began, [h.id for h in handles]


def history_figures(history: Any) -> dict[str, float]:
    """Events, activities and wall seconds (first event to last) of one run's history."""
    events = list(history.events)
    activities = sum(1 for e in events if e.WhichOneof("attributes") == "activity_task_scheduled_event_attributes")
    wall = (events[-1].event_time.ToDatetime() - events[0].event_time.ToDatetime()).total_seconds() if events else 0
    return {"events": len(events), "activities": activities, "wall": wall}


def waits(history: Any) -> dict[str, list[float]]:
    """Schedule-to-start waits of activity and workflow tasks: time a task spent queued for a worker slot."""
    scheduled: dict[int, Any] = {}
    out: dict[str, list[float]] = {"activity": [], "workflow_task": []}
    for event in history.events:
        kind = event.WhichOneof("attributes")
        when = event.event_time.ToDatetime()
        if kind in ("activity_task_scheduled_event_attributes", "workflow_task_scheduled_event_attributes"):
            scheduled[event.event_id] = when
        elif kind == "activity_task_started_event_attributes":
            began = scheduled.get(event.activity_task_started_event_attributes.scheduled_event_id)
            if began:
                out["activity"].append((when - began).total_seconds())
        elif kind == "workflow_task_started_event_attributes":
            began = scheduled.get(event.workflow_task_started_event_attributes.scheduled_event_id)
            if began:
                out["workflow_task"].append((when - began).total_seconds())
    return out


async def read_histories(client: Client, ids: list[str]) -> list[Any]:
    gate = asyncio.Semaphore(HISTORY_READERS)

    async def one(workflow_id: str) -> Any:
        async with gate:
            return await client.get_workflow_handle(workflow_id).fetch_history()

    return await asyncio.gather(*(one(i) for i in ids))


async def phase(
    client: Client, sim: SimProcess, procs: list[Child], size: int, args: argparse.Namespace
) -> dict[str, Any]:
    namespace = f"scale-{len(procs)}w-{size}"
    sim_create_namespace(sim, namespace)
    apps = [f"app{i:04d}" for i in range(size)]
    setup, _ = await release_all(client, [canary(namespace, a, "v1", args.replicas, []) for a in apps])
    log(f"  {size} apps at v1 in {setup:.1f}s; floor ({args.floor_activities} sequential no-op activities)...")
    floor_figures = await floor(client, QUEUE, args.floor_activities)

    sim.requests(reset=True)
    for proc in procs:
        proc.reset_peak_memory()
    server = dev_server_pid()
    others = {"simulator": sim.child.proc.pid, **({"temporal_dev_server": server} if server else {})}
    cpu0 = sum(p.cpu_seconds() for p in procs)
    others0 = {name: cpu_seconds(pid) for name, pid in others.items()}
    wall, ids = await release_all(client, [canary(namespace, a, "v2", args.replicas, STEPS) for a in apps])
    cpu = sum(p.cpu_seconds() for p in procs) - cpu0
    shares = {name: round((cpu_seconds(pid) - others0[name]) / wall, 2) for name, pid in others.items()}
    api = sim.requests()
    memory = [p.memory_mib() for p in procs]

    histories = await read_histories(client, ids)
    figures = [history_figures(h) for h in histories]
    queued = [waits(h) for h in histories]
    activities = sum(f["activities"] for f in figures)
    result = {
        "size": size, "worker_processes": len(procs), "setup_wall_s": round(setup, 2), "wall_s": round(wall, 3),
        "releases_per_min": round(size / wall * 60, 1),
        "worker_cpu_s_per_release": round(cpu / size, 4), "worker_cpu_share_of_one_core": round(cpu / wall, 2),
        "other_cpu_share_of_one_core": shares,
        "peak_rss_mib": [m["peak_rss_mib"] for m in memory],
        "events_per_release": spread([f["events"] for f in figures], digits=0),
        "activities_per_release": spread([f["activities"] for f in figures], digits=0),
        "release_wall_s": spread([f["wall"] for f in figures]),
        "k8s_requests_per_release": round(api["total"] / size, 1),
        "k8s_requests_by_verb_per_release": {v: round(n / size, 1) for v, n in sorted(api["by_verb"].items())},
        "activities_per_s": round(activities / wall, 1),
        "floor": floor_figures,
        "schedule_to_start_ms": {
            "activity": spread([w for q in queued for w in q["activity"]], scale=1000, digits=1),
            "workflow_task": spread([w for q in queued for w in q["workflow_task"]], scale=1000, digits=1),
        },
    }
    result["activities_per_s_vs_floor"] = round(result["activities_per_s"] / floor_figures["activities_per_s"], 2)
    log(f"  N={size} on {len(procs)} worker(s): {wall:.2f}s, {result['worker_cpu_s_per_release']} CPU s/release, "
        f"{result['activities_per_s']} activities/s (floor {floor_figures['activities_per_s']}/s sequential)")
    return result


def sim_create_namespace(sim: SimProcess, name: str) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=sim.kubeconfig, context="sim"))
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def knob_flags(args: argparse.Namespace) -> list[str]:
    flags: list[str] = []
    for knob in KNOBS:
        value = getattr(args, knob)
        if value is not None:
            flags += ["--" + knob.replace("_", "-"), str(value)]
    return flags


def table_line(result: dict[str, Any]) -> tuple[str, str]:
    parts = []
    for p in result["phases"]:
        parts.append(f"N={p['size']} on {p['worker_processes']} worker(s): {p['wall_s']:.1f} s, "
                     f"{p['worker_cpu_s_per_release'] * 1000:.0f} ms worker CPU, "
                     f"{p['events_per_release']['median']:.0f} events, {p['k8s_requests_per_release']:.0f} API "
                     f"requests per release, peak RSS {max(p['peak_rss_mib']):.0f} MiB, "
                     f"{p['activities_per_s']:.0f} activities/s (floor {p['floor']['activities_per_s']:.0f}/s)")
    what = (f"scale (`bench/scale.py`: N canaries at once, {result['replicas']} replicas, replicas router, "
            "20/50/100% with two 1 s pauses)")
    return what, "; ".join(parts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50", help="concurrent releases, e.g. 10,100,500,1000")
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--pod-start", type=float, default=0.1, help="real seconds from pod creation to Ready")
    parser.add_argument("--floor-activities", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    for knob, kind in KNOBS.items():
        parser.add_argument("--" + knob.replace("_", "-"), dest=knob, type=kind, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(w) for w in args.workers.split(",")]

    workdir = scratch_dir()
    env = await temporal_dev_server()
    phases = []
    try:
        with sim_process(workdir, args.pod_start, time_factor=20.0, seed=args.seed) as sim:
            for count in counts:
                async with workers(env.client, workdir, count, QUEUE, sim.kubeconfig, knob_flags(args)) as procs:
                    log(f"{count} worker process(es):")
                    for size in sizes:
                        phases.append(await phase(env.client, sim, procs, size, args))
    finally:
        await env.shutdown()
    result = {"bench": "scale", "sizes": sizes, "worker_processes": counts, "replicas": args.replicas,
              "pod_start_s": args.pod_start, "seed": args.seed, "steps": STEPS, "machine": machine(),
              "knobs": {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}, "phases": phases}
    if phases:
        result["floor_median_activities_per_s"] = statistics.median(p["floor"]["activities_per_s"] for p in phases)
    emit(result, *table_line(result))


if __name__ == "__main__":
    run_main(main())
