"""The fault suite's stack: `deployflow dev`'s own parts (Temporal dev server on a SQLite file, simulator,
Prometheus), with workers the suite starts, kills and replaces itself, and a fault proxy in front of the simulator.

Workers reach the Kubernetes API only through the proxy (their kubeconfig names it); the suite's own checks go to
the simulator directly, so an injected fault never blurs what the suite observes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from deployflow.dev import DevStack, Part, StackError
from tests.faults.proxy import FaultProxy

REPO = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = REPO / "worker.py"
# Workers will refuse outbound requests to loopback unless allowed; the whole stack lives there.
ALLOWED_HOSTS = "127.0.0.0/8,localhost"
EXIT_TIMEOUT = 60.0  # bounds a hang of a stopping worker; not a speed assertion


@dataclass
class FaultStack(DevStack):
    seed: int = 0
    api_proxy: FaultProxy | None = None
    workers_started: int = 0
    shutdown_seconds: float = 20.0  # what a SIGTERM'd worker gives its running activities

    async def start(self) -> None:
        await super().start()
        self.api_proxy = FaultProxy(self.sim_url, seed=self.seed, name="kube-api").start()
        self.worker_kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(self.api_proxy.url)))

    async def stop(self) -> None:
        await super().stop()
        if self.api_proxy is not None:
            self.api_proxy.stop()
            self.api_proxy = None

    async def _start_worker(self) -> None:
        """The stack starts no worker: each scenario starts (and kills) its own."""
        return None

    @property
    def worker_kubeconfig(self) -> Path:
        return (self.state_dir / "kubeconfig-via-proxy").resolve()

    # ---- workers --------------------------------------------------------------------------------------------

    async def start_worker(self, task_queue: str) -> Part:
        """`python worker.py` on `task_queue`, as an operator runs it; returns once it polls."""
        self.workers_started += 1
        env = {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "DEPLOYFLOW_TASK_QUEUE": task_queue,
            "KUBECONFIG": str(self.worker_kubeconfig),
            "DEPLOYFLOW_ALLOWED_HOSTS": ALLOWED_HOSTS,
            "DEPLOYFLOW_SHUTDOWN_SECONDS": f"{self.shutdown_seconds:g}",
            "PYTHONUNBUFFERED": "1",
        }
        part = await self._spawn(f"worker-{self.workers_started}", [sys.executable, str(WORKER_SCRIPT)], env)

        async def polling() -> bool:
            return "worker polling" in part.log_path.read_text(errors="replace")

        await self._wait_ready(part, polling, f"polling task queue {task_queue}")
        return part

    async def kill_worker(self, part: Part) -> None:
        """`kill -9`: no shutdown, no goodbye to the server; running activities are simply lost."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(part.proc.pid, signal.SIGKILL)
        await part.proc.wait()
        self._forget(part)

    async def terminate_worker(self, part: Part) -> int:
        """SIGTERM, as Kubernetes stops a pod: the worker stops polling and lets running activities finish.
        Returns the exit code."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(part.proc.pid, signal.SIGTERM)
        try:
            code = await asyncio.wait_for(part.proc.wait(), timeout=EXIT_TIMEOUT)
        except TimeoutError as err:
            raise StackError(f"{part.name} did not exit within {EXIT_TIMEOUT:.0f}s of SIGTERM:\n"
                             f"{part.log_tail()}") from err
        self._forget(part)
        return code

    def _forget(self, part: Part) -> None:
        if part in self.parts:
            self.parts.remove(part)
        part.log.close()

    # ---- the Temporal server --------------------------------------------------------------------------------

    async def restart_temporal(self, down_seconds: float) -> None:
        """Stops the dev server, waits `down_seconds`, starts it again on the same port and SQLite file."""
        part = next(p for p in self.parts if p.name == "temporal")
        await self._stop_part(part)
        self.parts.remove(part)
        part.log_path.rename(part.log_path.with_name("temporal-before-restart.log"))
        await asyncio.sleep(down_seconds)
        await self._start_temporal()


def kubeconfig_for(server: str, context: str = "sim") -> dict[str, object]:
    """A kubeconfig with one context, as the simulator writes its own, for a server in front of it."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    }


@dataclass
class Workers:
    """The one worker a scenario runs at a time on its task queue, replaced whenever the scenario kills it."""

    stack: FaultStack
    task_queue: str
    current: Part | None = None
    kills: int = 0
    terminations: int = 0

    async def start(self) -> Part:
        self.current = await self.stack.start_worker(self.task_queue)
        return self.current

    async def kill(self) -> None:
        assert self.current is not None, "no worker is running"
        part, self.current = self.current, None
        await self.stack.kill_worker(part)
        self.kills += 1

    async def roll(self) -> int:
        """SIGTERM to the worker while its replacement starts, as a rolling update of a worker Deployment does;
        returns the old worker's exit code."""
        assert self.current is not None, "no worker is running"
        old = self.current
        self.terminations += 1
        code, self.current = await asyncio.gather(self.stack.terminate_worker(old),
                                                  self.stack.start_worker(self.task_queue))
        return code

    async def stop(self) -> None:
        if self.current is not None:
            await self.stack.kill_worker(self.current)
            self.current = None
