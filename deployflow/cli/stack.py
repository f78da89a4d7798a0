"""Processes: the worker, the simulator, the local dev stack and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from deployflow.cli.base import EXIT_FAILED, app, console, err_console, fail, run_async
from deployflow.cli.client import connect_client, task_queue


def _stop_event_on_signals(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def cluster_names(clusters: str) -> tuple[str, ...]:
    """`--clusters 3` -> sim, sim-2, sim-3 (the first keeps the examples' context); `a,b` -> a, b."""
    if clusters.strip().isdigit():
        count = int(clusters)
        if not 1 <= count <= 10:
            fail(f"--clusters: between 1 and 10 (got {count})")
        return ("sim", *(f"sim-{i}" for i in range(2, count + 1)))
    names = tuple(n.strip() for n in clusters.split(",") if n.strip())
    if not names or len(set(names)) != len(names):
        fail(f"--clusters: a count or distinct comma-separated context names (got {clusters!r})")
    return names


@app.command()
def worker() -> None:
    """Run a worker for the deployment workflows and activities (stops gracefully on SIGINT/SIGTERM)."""
    import logging
    from datetime import timedelta

    from worker import run_worker

    logging.basicConfig(level=os.environ.get("DEPLOYFLOW_LOG_LEVEL", "INFO"))
    shutdown = timedelta(seconds=float(os.environ.get("DEPLOYFLOW_SHUTDOWN_SECONDS", "30")))

    async def go() -> None:
        client = await connect_client()
        stop = _stop_event_on_signals(asyncio.get_running_loop())
        err_console.print(f"worker polling task queue {task_queue()} at {client.service_client.config.target_host}")
        await run_worker(client, task_queue(), stop_event=stop, shutdown_timeout=shutdown)

    run_async(go)


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one)")] = 8081,
    kubeconfig: Annotated[Path, typer.Option(help="kubeconfig to write (one context)")] = Path(
        ".deployflow/kubeconfig"),
    context: Annotated[str, typer.Option(help="name of the kubeconfig context (and cluster)")] = "sim",
    time_factor: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1.0,
) -> None:
    """Run the Kubernetes simulator in the foreground (tests and demos only; never a production target)."""
    from deployflow.dev import port_in_use
    from deployflow.sim.config import SimConfig
    from deployflow.sim.server import Simulator

    if port and port_in_use(host, port):
        err_console.print(f"error: port {port} on {host} is already in use; choose another with --port")
        raise typer.Exit(EXIT_FAILED)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    bound = sock.getsockname()[1]
    simulator = Simulator(SimConfig(time_factor=time_factor))
    simulator.url = f"http://{host}:{bound}"

    async def serve() -> None:
        serving = asyncio.ensure_future(simulator.serve(host, bound, sock=sock))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, serving.cancel)
        # The kubeconfig appears only once the API answers, so whoever waits for the file can use it at once.
        while not simulator.started.is_set() and not serving.done():
            await asyncio.sleep(0.01)
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        simulator.write_kubeconfig(str(kubeconfig), context=context)
        err_console.print(f"simulator serving the Kubernetes API at {simulator.url} (time factor {time_factor:g})")
        err_console.print(f"  KUBECONFIG={kubeconfig} kubectl get pods -A")
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    asyncio.run(serve())


@app.command()
def dev(
    temporal_port: Annotated[int, typer.Option(help="Temporal gRPC port")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port")] = 8233,
    sim_port: Annotated[int, typer.Option(help="simulator (Kubernetes API) port")] = 8081,
    prometheus_port: Annotated[int, typer.Option(help="Prometheus port")] = 9090,
    state_dir: Annotated[Path, typer.Option(help="where the Temporal database, kubeconfig and logs live")] = Path(
        ".deployflow"),
    time_factor: Annotated[float, typer.Option(help="simulator speed: simulated seconds per real second")] = 1.0,
    no_prometheus: Annotated[bool, typer.Option("--no-prometheus", help="do not start Prometheus")] = False,
    clusters: Annotated[str, typer.Option(
        help="simulated clusters: a count (sim, sim-2, ...) or context names (staging,prod-1); one simulator each, "
        "on --sim-port and the ports after it, all in one kubeconfig")] = "1",
) -> None:
    """Run the whole local stack: Temporal dev server, simulators, Prometheus and a worker. Ctrl-C stops it all."""
    from deployflow.dev import DevPorts, DevStack, StackError

    names = cluster_names(clusters)
    stack = DevStack(
        DevPorts(temporal=temporal_port, ui=ui_port, sim=sim_port, prometheus=prometheus_port),
        state_dir=state_dir, time_factor=time_factor, prometheus=not no_prometheus, clusters=names,
    )

    async def go() -> None:
        stop = _stop_event_on_signals(asyncio.get_running_loop())
        try:
            await stack.start()
        except StackError as err:
            await stack.stop()
            fail(str(err))
        try:
            stack.print_addresses(console)
            console.print("[dim]Ctrl-C stops everything.[/dim]")
            await stack.wait(stop)
        finally:
            await stack.stop()
            console.print("stopped")

    run_async(go)


@app.command()
def demo(
    time_factor: Annotated[float, typer.Option(help="simulator speed: simulated seconds per real second")] = 20.0,
    step_timeout: Annotated[float, typer.Option(help="seconds before a demo step is declared stuck")] = 180.0,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="keep the stack up afterwards")] = False,
    state_dir: Annotated[Path, typer.Option(help="scratch directory for the demo stack")] = Path(
        ".deployflow/demo"),
) -> None:
    """Run the end-to-end demo on a local stack: blue-green (and canary, rolling) releases, then a summary."""
    from deployflow.demo import run_demo

    ok = run_async(lambda: run_demo(console, time_factor=time_factor, step_timeout=step_timeout,
                                    keep_running=keep_running, state_dir=state_dir))
    if not ok:
        raise typer.Exit(EXIT_FAILED)
