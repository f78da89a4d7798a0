"""The embedded local stack behind `deployflow dev` and the demo: Temporal dev server, simulator, Prometheus, worker.

Every part runs as a child process so a crash in one is reported by name, the worker and the simulator each get a
core of their own, and shutdown can go in order (worker first, so in-flight activities finish against a live
cluster and server). Children also get a parent-death signal so nothing outlives a `kill -9` of `deployflow dev`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx
from rich.console import Console
from rich.table import Table

from deployflow.prometheus import prometheus_binary, scrape_config
from deployflow.temporal import DEFAULT_TASK_QUEUE, dev_server_search_attribute_args, temporal_cli_path

if TYPE_CHECKING:
    from temporalio.client import Client

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class StackError(Exception):
    """A part of the stack could not start or died; the message says which and shows its log."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def merge_kubeconfigs(sources: list[Path], path: Path) -> Path:
    """One kubeconfig with every context of `sources`; the first one's is current."""
    import yaml

    docs = [yaml.safe_load(source.read_text()) for source in sources]
    merged = {**docs[0], **{key: [item for doc in docs for item in doc[key]]
                            for key in ("clusters", "users", "contexts")}}
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return path


@dataclass
class DevPorts:
    temporal: int = 7233
    ui: int = 8233
    sim: int = 8081
    prometheus: int = 9090

    @classmethod
    def free(cls) -> DevPorts:
        """Free ports for a throwaway stack (the demo, tests) that must not collide with a running `deployflow dev`."""
        ports: set[int] = set()
        while len(ports) < 4:
            ports.add(free_port())
        t, u, s, p = sorted(ports)
        return cls(temporal=t, ui=u, sim=s, prometheus=p)


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when the stack process dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Part:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    log: IO[bytes]
    stop_signal: int = signal.SIGTERM

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return "\n".join("    " + line for line in text[-lines:])
        return ""


@dataclass
class DevStack:
    ports: DevPorts = field(default_factory=DevPorts)
    state_dir: Path = Path(".deployflow")
    time_factor: float = 1.0
    prometheus: bool = True
    persistent: bool = True  # keep Temporal's history in state_dir/temporal.db across restarts
    task_queue: str = DEFAULT_TASK_QUEUE
    namespaces: tuple[str, ...] = ("demo",)  # created in each simulator, so the examples run as they are
    clusters: tuple[str, ...] = ("sim",)  # one simulator per kubeconfig context, on ports sim, sim+1, ...
    parts: list[Part] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prometheus_url: str | None = None
    # The worker's metrics and the SDK's, on free ports so a stack never collides with another worker on the machine.
    metrics_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    _client: Client | None = None

    # ----------------------------------------------------------------------------------------------- addresses
    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.ports.temporal}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ports.ui}"

    @property
    def sim_url(self) -> str:
        return f"http://{HOST}:{self.ports.sim}"

    @property
    def sim_urls(self) -> dict[str, str]:
        return {name: f"http://{HOST}:{self.ports.sim + i}" for i, name in enumerate(self.clusters)}

    @property
    def kubeconfig(self) -> Path:
        return (self.state_dir / "kubeconfig").resolve()

    def ui_workflow_url(self, workflow_id: str, run_id: str | None = None, namespace: str = "default") -> str:
        from urllib.parse import quote

        url = f"{self.ui_url}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"
        return f"{url}/{run_id}/history" if run_id else url

    def child_env(self) -> dict[str, str]:
        """The environment a shell needs to use this stack: the same variables the temporal CLI and kubectl read."""
        return {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "DEPLOYFLOW_TASK_QUEUE": self.task_queue,
            "KUBECONFIG": str(self.kubeconfig),
        }

    # ----------------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._check_ports()
        await self._start_temporal()
        await self._start_simulator()
        await asyncio.to_thread(self._create_namespaces)
        if self.prometheus:
            await self._start_prometheus()
        await self._start_worker()

    async def client(self) -> Client:
        if self._client is None:
            from deployflow.temporal import ConnectionSettings, connect

            self._client = await connect(ConnectionSettings(address=self.temporal_address, task_queue=self.task_queue))
        return self._client

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; raises StackError when a part dies on its own."""
        stopper = asyncio.ensure_future(stop.wait())
        watchers = {asyncio.ensure_future(p.proc.wait()): p for p in self.parts}
        try:
            done, _ = await asyncio.wait({stopper, *watchers}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in watchers:
                    part = watchers[task]
                    raise StackError(f"{part.name} exited with code {part.proc.returncode}; its log "
                                     f"({part.log_path}):\n{part.log_tail()}")
        finally:
            for task in (stopper, *watchers):
                task.cancel()

    async def stop(self) -> None:
        """Stops the parts in reverse order of start: worker, Prometheus, simulator, Temporal."""
        for part in reversed(self.parts):
            await self._stop_part(part)
        self.parts.clear()
        self._client = None

    async def __aenter__(self) -> DevStack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def pids(self) -> dict[str, int]:
        return {p.name: p.proc.pid for p in self.parts}

    # ----------------------------------------------------------------------------------------------- parts
    def _check_ports(self) -> None:
        wanted = {"Temporal gRPC": self.ports.temporal, "Temporal UI": self.ports.ui}
        wanted |= {"simulator" + (f" {name}" if i else ""): self.ports.sim + i for i, name in enumerate(self.clusters)}
        if self.prometheus:
            wanted["Prometheus"] = self.ports.prometheus
        taken = [f"{name} port {port}" for name, port in wanted.items() if port_in_use(HOST, port)]
        if len(set(wanted.values())) != len(wanted):
            raise StackError(f"the ports must differ: {wanted}")
        if taken:
            raise StackError(
                f"{', '.join(taken)} already in use (another `deployflow dev` running?). "
                "Stop it, or choose other ports with --temporal-port/--ui-port/--sim-port/--prometheus-port."
            )

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Part:
        log_path = self.state_dir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in _stop_part
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # Ctrl-C in the terminal reaches only us; we stop the children in order
            preexec_fn=_die_with_parent,
        )
        part = Part(name, proc, log_path, log)
        self.parts.append(part)
        return part

    async def _wait_ready(self, part: Part, check: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last_error = ""
        while time.monotonic() < deadline:
            if part.proc.returncode is not None:
                raise StackError(f"{part.name} exited with code {part.proc.returncode} while starting; "
                                 f"its log ({part.log_path}):\n{part.log_tail()}")
            try:
                if await check():
                    return
            except Exception as err:
                last_error = str(err)
            await asyncio.sleep(0.2)
        raise StackError(f"{part.name} did not become ready ({what}) within {READY_TIMEOUT:.0f}s: {last_error}\n"
                         f"{part.log_tail()}")

    async def _start_temporal(self) -> None:
        argv = [
            temporal_cli_path(), "server", "start-dev",
            "--ip", HOST, "--port", str(self.ports.temporal), "--ui-port", str(self.ports.ui),
            "--log-level", "warn",
            *dev_server_search_attribute_args(),
        ]
        if self.persistent:
            argv += ["--db-filename", str(self.state_dir / "temporal.db")]
        part = await self._spawn("temporal", argv)
        part.stop_signal = signal.SIGINT

        async def ready() -> bool:
            self._client = None
            client = await asyncio.wait_for(self.client(), timeout=5)
            await client.count_workflows()  # answers only once the namespace and visibility are up
            return True

        await self._wait_ready(part, ready, f"gRPC on {self.temporal_address}")

    async def _start_simulator(self) -> None:
        self.kubeconfig.unlink(missing_ok=True)
        own = [self.state_dir / f"kubeconfig.{name}" for name in self.clusters]
        for (name, url), kubeconfig in zip(self.sim_urls.items(), own, strict=True):
            kubeconfig.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "deployflow.cli", "sim", "--host", HOST, "--port", url.rsplit(":", 1)[1],
                    "--kubeconfig", str(kubeconfig), "--context", name, "--time-factor", str(self.time_factor)]
            part = await self._spawn("simulator" if name == "sim" else f"simulator-{name}", argv)

            async def ready(url: str = url, kubeconfig: Path = kubeconfig) -> bool:
                async with httpx.AsyncClient(timeout=2) as http:
                    resp = await http.get(f"{url}/version")
                return resp.status_code == 200 and kubeconfig.exists()

            await self._wait_ready(part, ready, f"Kubernetes API on {url}")
        merge_kubeconfigs(own, self.kubeconfig)

    def _create_namespaces(self) -> None:
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        for cluster in self.clusters:
            api = client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig), context=cluster))
            for name in self.namespaces:
                try:
                    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
                except ApiException as err:
                    if err.status != 409:
                        raise StackError(f"could not create namespace {name} in {cluster}: {err.reason}") from err

    async def _start_prometheus(self) -> None:
        import yaml

        binary = prometheus_binary()
        if not binary:
            self.notes.append("Prometheus skipped: the prometheus binary is not installed "
                              "(apt-get install prometheus, or scripts/bootstrap.sh)")
            return
        data_dir = (self.state_dir / "prometheus").resolve()
        data_dir.mkdir(exist_ok=True)
        config = data_dir / "prometheus.yml"
        worker_targets = [f"http://{HOST}:{port}/metrics" for port in self.metrics_ports]
        scrape = scrape_config([*(f"{url}/metrics" for url in self.sim_urls.values()), *worker_targets], 1.0)
        for job in scrape["scrape_configs"]:
            job["scrape_timeout"] = "900ms"  # Prometheus rejects fractional units such as "0.9s"
        config.write_text(yaml.safe_dump(scrape))
        argv = [
            binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address={HOST}:{self.ports.prometheus}", "--storage.tsdb.retention.time=2h",
            "--log.level=warn",
        ]
        part = await self._spawn("prometheus", argv)
        url = f"http://{HOST}:{self.ports.prometheus}"

        async def ready() -> bool:
            async with httpx.AsyncClient(timeout=2) as http:
                resp = await http.get(f"{url}/-/ready")
            return resp.status_code == 200

        await self._wait_ready(part, ready, f"HTTP on {url}")
        self.prometheus_url = url

    async def _start_worker(self) -> None:
        argv = [sys.executable, "-m", "deployflow.cli", "worker"]
        # Activities get 10 s to finish on Ctrl-C, inside the 15 s the stack waits before it kills a part.
        env = {**self.child_env(), "PYTHONUNBUFFERED": "1", "DEPLOYFLOW_SHUTDOWN_SECONDS": "10"}
        # Workers refuse loopback URLs by default; this stack's Prometheus and test endpoints live there.
        allowed = [h for h in os.environ.get("DEPLOYFLOW_ALLOWED_HOSTS", "").split(",") if h.strip()]
        env["DEPLOYFLOW_ALLOWED_HOSTS"] = ",".join([*allowed, HOST])
        if self.prometheus_url:
            env["DEPLOYFLOW_PROMETHEUS_URL"] = self.prometheus_url
        env["DEPLOYFLOW_UI_URL"] = self.ui_url  # notifications link to the run
        env["DEPLOYFLOW_METRICS_PORT"], env["DEPLOYFLOW_SDK_METRICS_PORT"] = map(str, self.metrics_ports)
        part = await self._spawn("worker", argv, env)

        async def ready() -> bool:
            from temporalio.api.enums.v1 import TaskQueueType
            from temporalio.api.taskqueue.v1 import TaskQueue
            from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

            client = await self.client()
            resp = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=self.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            return len(resp.pollers) > 0

        await self._wait_ready(part, ready, f"polling task queue {self.task_queue}")

    async def _stop_part(self, part: Part) -> None:
        proc = part.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, part.stop_signal)
            try:
                await asyncio.wait_for(proc.wait(), timeout=STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        # Anything the part itself started (its process group) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        part.log.close()

    # ----------------------------------------------------------------------------------------------- display
    def print_addresses(self, console: Console) -> None:
        table = Table(title="deployflow dev stack", title_justify="left", show_header=False, show_edge=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("Temporal gRPC", f"{self.temporal_address}   (TEMPORAL_ADDRESS={self.temporal_address})")
        table.add_row("Temporal UI", self.ui_url)
        for name, url in self.sim_urls.items():
            table.add_row(f"Kubernetes API (simulator, context {name})", url)
        table.add_row("Prometheus", self.prometheus_url or "not running")
        table.add_row("kubeconfig", f"{self.kubeconfig}  (contexts {', '.join(self.clusters)})")
        table.add_row("worker", f"task queue {self.task_queue}")
        table.add_row("worker metrics", "   ".join(f"http://{HOST}:{port}/metrics" for port in self.metrics_ports))
        table.add_row("logs", str(self.state_dir.resolve()))
        console.print(table)
        for note in self.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
        console.print(f"\n  export TEMPORAL_ADDRESS={self.temporal_address} KUBECONFIG={self.kubeconfig}")
        console.print(f"  KUBECONFIG={self.kubeconfig} kubectl get pods -A")
        console.print("  deployflow start examples/bluegreen.yaml --wait\n")
