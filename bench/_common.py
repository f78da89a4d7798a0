"""Shared pieces of the bench scripts: the Temporal dev server, the simulator and workers as child processes, the
trivial-activity floor, /proc and history readings, and the output (one JSON object, one README table line).
The in-process stack (simulator thread, worker in the bench process) is in rollback_latency.py.

Child processes start from this file: `python bench/_common.py sim ...` serves a simulator with a given pod start
delay, `python bench/_common.py worker ...` runs the project's worker (worker.build_worker) with tuning knobs, and a
trivial workflow of sequential no-op activities on `<queue>-floor`, the floor the real activities are judged by.
Run without arguments (as `make bench` does) it measures nothing and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import httpx  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from temporalio import activity, workflow  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from deployflow.temporal import dev_server_search_attribute_args, temporal_cli_path  # noqa: E402

HOST = "127.0.0.1"
# Workers of this project refuse outbound requests to loopback unless these are allowed; everything here is local.
WORKER_ENV = {"DEPLOYFLOW_ALLOWED_HOSTS": "127.0.0.0/8,localhost", "PYTHONUNBUFFERED": "1"}
STARTUP_SECONDS = 60.0  # bounds a hang while a child starts; not a speed figure
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- figures and output ---------------------------------------------------------------------------------------


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict[str, float | int]:
    """Median, min and max (times `scale`), and the count: how every figure here is reported."""
    if not values:
        return {"n": 0}
    return {"median": round(statistics.median(values) * scale, digits), "min": round(min(values) * scale, digits),
            "max": round(max(values) * scale, digits), "n": len(values)}


def ms(values: Sequence[float]) -> str:
    """'72 ms (60–78)': median and range in milliseconds, the README's style."""
    if not values:
        return "n/a"
    return f"{statistics.median(values) * 1000:.0f} ms ({min(values) * 1000:.0f}–{max(values) * 1000:.0f})"


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the JSON object and the table line."""
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any], what: str, figure: str) -> None:
    print(json.dumps(result, sort_keys=True, default=str))
    print(f"| {what} | {figure} |")


def run_main(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, then leave without interpreter finalisation: temporalio's core threads can still hold the GIL
    machinery then ("PyGILState_Release ... finalizing", exit 134), which would fail `make bench` after the figures
    were printed."""
    asyncio.run(main)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def machine() -> dict[str, Any]:
    """Context every result carries: figures from a loaded machine are not comparable with a quiet one's."""
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg_1m": round(load[0], 2), "python": sys.version.split()[0]}


# --- Temporal -------------------------------------------------------------------------------------------------


async def temporal_dev_server() -> WorkflowEnvironment:
    """The Temporal dev server (SQLite in memory) with the project's search attributes, UI off.

    The server inherits this process's stdout and prints its banner there; it gets stderr instead, so stdout
    carries only the figures."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli_path(),
            data_converter=pydantic_data_converter,
            dev_server_extra_args=dev_server_search_attribute_args(),
            ui=False,
        )
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def address(client: Client) -> str:
    return client.service_client.config.target_host


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def dev_server_pid() -> int | None:
    """The Temporal dev server this process started (the SDK does not expose its pid): a child running start-dev."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"start-dev" in (proc / "cmdline").read_bytes():
                return int(proc.name)
    return None


# --- the trivial-activity floor -------------------------------------------------------------------------------


class FloorInput(BaseModel):
    activities: int


class NoopInput(BaseModel):
    index: int


@activity.defn(name="bench_noop")
async def noop(request: NoopInput) -> int:
    return request.index


@workflow.defn(name="BenchFloor")
class FloorWorkflow:
    """N sequential no-op activities: what the server and worker cost per activity when the activity costs nothing."""

    @workflow.run
    async def run(self, request: FloorInput) -> int:
        for i in range(request.activities):
            await workflow.execute_activity(noop, NoopInput(index=i), start_to_close_timeout=timedelta(seconds=30))
        return request.activities


async def floor(client: Client, queue: str, activities: int) -> dict[str, float]:
    """Runs the floor workflow on `<queue>-floor` (served by a worker child) and reads its history."""
    began = time.monotonic()
    handle = await client.start_workflow(FloorWorkflow.run, FloorInput(activities=activities),
                                         id=f"bench-floor-{queue}-{time.time_ns()}", task_queue=f"{queue}-floor")
    await handle.result()
    wall = time.monotonic() - began
    return {"activities": activities, "wall_s": round(wall, 3), "per_activity_ms": round(wall / activities * 1000, 1),
            "activities_per_s": round(activities / wall, 1)}


# --- child processes ------------------------------------------------------------------------------------------


@dataclass
class Child:
    """A child process started from this file, in its own process group, its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def memory_mib(self) -> dict[str, float]:
        """Peak (VmHWM) and current (VmRSS) resident memory."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
        return {"peak_rss_mib": values.get("VmHWM", 0.0), "rss_mib": values.get("VmRSS", 0.0)}

    def reset_peak_memory(self) -> None:
        """Starts VmHWM again from the current RSS, so the peak belongs to the phase measured next."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")


def spawn(name: str, args: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Child:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(HERE / "_common.py"), *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **WORKER_ENV, **(env or {})}, start_new_session=True)
    return Child(name, proc, log_path)


@dataclass
class SimProcess:
    """The simulator in a process of its own: its CPU is not the worker's, and kubectl reaches it as a cluster."""

    child: Child
    url: str
    kubeconfig: str

    def requests(self, reset: bool = False) -> dict[str, Any]:
        """API requests served since the last reset (`DELETE` answers the counts and starts them again)."""
        method = "DELETE" if reset else "GET"
        result: dict[str, Any] = httpx.request(method, f"{self.url}/debug/requests", timeout=30).json()
        return result


@contextlib.contextmanager
def sim_process(workdir: Path, pod_start: float, time_factor: float = 1.0, seed: int = 0) -> Iterator[SimProcess]:
    """`pod_start` is real seconds from pod creation to Ready: the physical limit of any rollout."""
    kubeconfig = str(workdir / "kubeconfig")
    port_file = workdir / "sim.port"
    child = spawn("simulator", ["sim", "--time-factor", str(time_factor), "--pod-start", str(pod_start),
                                "--seed", str(seed), "--kubeconfig", kubeconfig, "--port-file", str(port_file)],
                  workdir)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not port_file.exists() or not port_file.read_text().strip():
            child.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start:\n{child.log_tail()}")
            time.sleep(0.05)
        yield SimProcess(child, f"http://{HOST}:{port_file.read_text().strip()}", kubeconfig)
    finally:
        child.stop()


async def worker_process(client: Client, workdir: Path, name: str, queue: str, kubeconfig: str,
                         knobs: Sequence[str] = ()) -> Child:
    """A worker child on `queue` (and `<queue>-floor`), returned once it polls."""
    child = spawn(name, ["worker", "--address", address(client), "--queue", queue, *knobs], workdir,
                  {"KUBECONFIG": kubeconfig, "DEPLOYFLOW_SHUTDOWN_SECONDS": "5"})
    deadline = time.monotonic() + STARTUP_SECONDS
    # Its own line, not the server's list of pollers: that list still shows a worker stopped a moment ago.
    while "polling" not in child.log_tail():
        child.check_alive()
        if time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"{name} never polled {queue}:\n{child.log_tail()}")
        await asyncio.sleep(0.1)
    return child


@contextlib.asynccontextmanager
async def workers(client: Client, workdir: Path, count: int, queue: str, kubeconfig: str,
                  knobs: Sequence[str] = ()) -> AsyncIterator[list[Child]]:
    children: list[Child] = []
    try:
        for i in range(count):
            children.append(await worker_process(client, workdir, f"worker{i}-{queue}", queue, kubeconfig, knobs))
        yield children
    finally:
        for child in children:
            child.stop()


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="deployflow-bench-"))


# --- child entry points -----------------------------------------------------------------------------------------


def _serve_sim(args: argparse.Namespace) -> None:
    from deployflow.sim.config import SimConfig
    from deployflow.sim.server import Simulator

    sim = Simulator(SimConfig(time_factor=args.time_factor, ready_delay_seconds=args.pod_start * args.time_factor,
                              seed=args.seed))
    sim.start_in_thread()
    sim.write_kubeconfig(args.kubeconfig, context="sim")
    Path(args.port_file).write_text(sim.url.rsplit(":", 1)[1])
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


KNOBS = {  # flag -> Worker argument; build_worker exposes only max_concurrent_activities, the rest are overridden
    "max_concurrent_activities": int, "max_concurrent_workflow_tasks": int, "max_cached_workflows": int,
    "max_concurrent_workflow_task_polls": int, "max_concurrent_activity_task_polls": int,
    "nonsticky_to_sticky_poll_ratio": float, "sticky_queue_schedule_to_start_timeout": float,
}


async def _run_worker(args: argparse.Namespace) -> None:
    import signal

    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    import worker as project_worker
    from deployflow.temporal import ConnectionSettings, connect

    client = await connect(ConnectionSettings(address=args.address, task_queue=args.queue, codec=None))
    threads = args.max_concurrent_activities or 32
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity")
    overrides: dict[str, Any] = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    if "sticky_queue_schedule_to_start_timeout" in overrides:
        overrides["sticky_queue_schedule_to_start_timeout"] = timedelta(
            seconds=overrides["sticky_queue_schedule_to_start_timeout"])
    unexposed = set(overrides) - {"max_concurrent_activities"}
    # Knobs build_worker does not take are set on a copy of its configuration. The template is built for another
    # task queue (never polled): the SDK refuses two workers of one process on the same queue.
    built = project_worker.build_worker(client, f"{args.queue}-template" if unexposed else args.queue,
                                        executor=executor, max_concurrent_activities=threads,
                                        shutdown_timeout=timedelta(seconds=5))
    real = Worker(**{**built.config(), "task_queue": args.queue, **overrides}) if unexposed else built
    # Same sandbox as the real worker, with this module passed through as the project's modules are.
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "deployflow", "activities", "_common"))
    floor_worker = Worker(client, task_queue=f"{args.queue}-floor", workflows=[FloorWorkflow], activities=[noop],
                          workflow_runner=runner, **{k: v for k, v in overrides.items()
                                                     if k != "max_concurrent_activities"})
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with real, floor_worker:
        print(f"polling {args.queue} with {overrides or 'the defaults'}", flush=True)
        await stop.wait()
    executor.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part")
    sim = sub.add_parser("sim")
    sim.add_argument("--time-factor", type=float, default=1.0)
    sim.add_argument("--pod-start", type=float, default=1.0, help="real seconds from pod creation to Ready")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--kubeconfig", required=True)
    sim.add_argument("--port-file", required=True)
    work = sub.add_parser("worker")
    work.add_argument("--address", required=True)
    work.add_argument("--queue", required=True)
    for knob, kind in KNOBS.items():
        work.add_argument("--" + knob.replace("_", "-"), dest=knob, type=kind, default=None)
    args = parser.parse_args(argv)
    if args.part == "sim":
        _serve_sim(args)
    elif args.part == "worker":
        import logging

        logging.basicConfig(level=logging.WARNING)
        asyncio.run(_run_worker(args))


if __name__ == "__main__":
    # Through the module's own name, so the workflow sandbox finds (and passes through) `_common.FloorWorkflow`.
    import _common

    _common.main(sys.argv[1:])
