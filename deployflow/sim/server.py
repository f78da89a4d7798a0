"""The `Simulator`: object store, API server, controllers and traffic in one event loop.

Tests run it in a background thread (`start_in_thread`); `python -m deployflow.sim` and `deployflow sim` run it
in the foreground (`serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading

import yaml
from aiohttp import web

from deployflow.sim import resources as R
from deployflow.sim.api import ApiServer
from deployflow.sim.api.accounting import Snapshot
from deployflow.sim.config import Clock, SimConfig
from deployflow.sim.controllers import ControllerManager
from deployflow.sim.faults import Faults
from deployflow.sim.store import Store, StoreError
from deployflow.sim.traffic import Traffic

log = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public")


class Simulator:
    """A simulated cluster that speaks the Kubernetes REST API."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = Clock(self.config.time_factor)
        self.store = Store()
        self.faults = Faults(self.config.seed)
        self.controllers = ControllerManager(self.store, self.clock, self.config)
        self.traffic = Traffic(self.store, self.clock, self.config)
        self.api = ApiServer(self.store, self.faults, self.traffic)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        # Set once the API answers: `serve()` callers wait on it before handing out a kubeconfig.
        self.started = threading.Event()
        for ns in DEFAULT_NAMESPACES:
            self.store.create(R.NAMESPACES, {"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]},
                                             "status": {"phase": "Active"}})

    # ---- running ------------------------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 8001, sock: socket.socket | None = None) -> None:
        """Serves until cancelled (or `stop()`), with the controllers and traffic running beside the API."""
        runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site: web.BaseSite = web.SockSite(runner, sock) if sock else web.TCPSite(runner, host, port)
        await site.start()
        if not self.url:
            self.url = f"http://{host}:{port}"
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.started.set()
        tasks = [asyncio.create_task(self.controllers.run()), asyncio.create_task(self.traffic.run())]
        try:
            await self._stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await runner.cleanup()
            self.started.clear()

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Starts serving in a daemon thread and returns the URL once the port is bound."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def main() -> None:
                serving = asyncio.create_task(self.serve(host, sock.getsockname()[1], sock=sock))
                while not self.started.is_set() and not serving.done():
                    await asyncio.sleep(0.005)
                ready.set()
                await serving

            try:
                loop.run_until_complete(main())
            except BaseException as e:  # surfaced to the starting thread
                errors.append(e)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="deployflow-sim", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise RuntimeError(f"simulator failed to start: {errors[0]!r}") from errors[0]
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    # ---- clients ------------------------------------------------------------------------------------

    def write_kubeconfig(self, path: str, context: str = "sim") -> str:
        """A kubeconfig with one context pointing at this simulator (plain HTTP, no credentials)."""
        if not self.url:
            raise RuntimeError("the simulator is not serving yet")
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                       "namespace": "default"}}],
            "current-context": context,
            "preferences": {},
        }
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        return path

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        try:
            self.store.create(R.NAMESPACES, {"metadata": {"name": name, "labels": labels or {}},
                                             "status": {"phase": "Active"}})
        except StoreError as e:
            if e.code != 409:
                raise

    def api_requests(self, reset: bool = False, **filters: str) -> Snapshot:
        """The Kubernetes API requests served so far, as `GET /debug/requests` answers (filters: verb, resource,
        client, label); `reset=True` starts the counts again from zero."""
        return self.api.counts.snapshot(filters, reset=reset)

    # ---- traffic pass-throughs ------------------------------------------------------------------------

    def no_backend_requests(self, namespace: str | None = None, service: str | None = None) -> int:
        return self.traffic.no_backend(namespace, service)

    def requests_to_terminating(self, namespace: str | None = None, service: str | None = None) -> int:
        return self.traffic.to_terminating(namespace, service)

    def send_requests(self, namespace: str, entry: str, n: int) -> dict[str, int]:
        return self.traffic.send(namespace, entry, n)

    def request_counts(self, namespace: str) -> dict[str, dict[str, dict[str, int]]]:
        return self.traffic.counts(namespace)


def run(
    host: str = "127.0.0.1",
    port: int = 8001,
    kubeconfig: str | None = None,
    time_factor: float = 1.0,
    context: str = "sim",
    seed: int = 0,
) -> None:
    """Runs a simulator in the foreground until interrupted; writes a kubeconfig for it when asked."""
    sim = Simulator(SimConfig(time_factor=time_factor, seed=seed))
    sim.url = f"http://{host}:{port}"
    if kubeconfig:
        sim.write_kubeconfig(kubeconfig, context)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sim.serve(host, port))
