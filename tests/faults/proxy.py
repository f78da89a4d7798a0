"""An HTTP proxy that misbehaves on request: what a flaky API server, a slow control plane or a network cut does to
the client behind it.

It sits between a worker's kubeconfig (or a spec's Prometheus address) and the real server, and runs in a thread
of its own so that blocking calls in a test never stall it. Faults are drawn from a seeded generator, so a failing
run can be replayed with the seed the suite prints. The simulator has no fault endpoint over HTTP, and its
process cannot be restarted without losing the cluster's state: the proxy gives the fault suite both.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from deployflow.dev import HOST, free_port

# Hop-by-hop headers are the proxy's own business; the rest passes through unchanged.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "upgrade",
              "proxy-connection", "te", "trailer"}
REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class FaultPlan:
    """What the proxy does to each request. Rates are probabilities per request."""

    error_rate: float = 0.0  # answered with one of `codes` instead of reaching the server
    codes: tuple[int, ...] = (500, 503, 429)
    conflict_rate: float = 0.0  # writes answered 409 Conflict, as on a stale resourceVersion
    slow_rate: float = 0.0  # requests held for `slow_seconds` before they are forwarded
    slow_seconds: float = 0.0
    empty_query_results: bool = False  # Prometheus: every query answers success with no series ("no data")

    def describe(self) -> str:
        parts = []
        if self.error_rate:
            parts.append(f"{self.error_rate:.0%} of requests answered {'/'.join(map(str, self.codes))}")
        if self.conflict_rate:
            parts.append(f"{self.conflict_rate:.0%} of writes answered 409")
        if self.slow_rate:
            parts.append(f"{self.slow_rate:.0%} of requests delayed {self.slow_seconds:g}s")
        if self.empty_query_results:
            parts.append("every query answers no data")
        return ", ".join(parts) or "no faults"


@dataclass
class ProxyCounters:
    forwarded: int = 0
    injected: dict[int, int] = field(default_factory=dict)
    slowed: int = 0
    refused_while_down: int = 0  # connections cut when the proxy went down

    @property
    def injected_total(self) -> int:
        return sum(self.injected.values())


class FaultProxy:
    """A reverse proxy from 127.0.0.1:<port> to `upstream`, with `set_plan()`, `go_down()` and `come_up()`."""

    def __init__(self, upstream: str, seed: int, name: str = "proxy") -> None:
        self.upstream = upstream.rstrip("/")
        self.name = name
        self.port = free_port()
        self.plan = FaultPlan()
        self.counters = ProxyCounters()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # ---- control, from the test's thread ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._open())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fault-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError(f"{self.name}: the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._thread = None

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan

    def clear(self) -> None:
        self.set_plan(FaultPlan())

    def answer_no_data(self) -> None:
        """Prometheus that answers every query with success and no series, as after losing its targets."""
        self.set_plan(FaultPlan(empty_query_results=True))

    def go_down(self) -> None:
        """Stops listening and cuts every open connection: clients get `connection refused` until `come_up()`."""
        self._call(self._down())

    def come_up(self) -> None:
        self._call(self._up())

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None, "the proxy is not running"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # ---- the proxy's own loop --------------------------------------------------------------------------------

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                              auto_decompress=False)
        await self._up()

    async def _close(self) -> None:
        await self._down()
        if self._session is not None:
            await self._session.close()

    async def _up(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, HOST, self.port, reuse_address=True).start()
        self._runner = runner

    async def _down(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        server = runner.server
        if server is not None:
            self.counters.refused_while_down += len(server.connections)
        await runner.cleanup()

    def _draw(self, method: str) -> tuple[int | None, float, bool]:
        with self._lock:
            plan, rng = self.plan, self._rng
            code: int | None = None
            if plan.error_rate and rng.random() < plan.error_rate:
                code = rng.choice(plan.codes)
            elif method in WRITES and plan.conflict_rate and rng.random() < plan.conflict_rate:
                code = 409
            delay = plan.slow_seconds if plan.slow_rate and rng.random() < plan.slow_rate else 0.0
            return code, delay, plan.empty_query_results

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        code, delay, empty = self._draw(request.method)
        if delay:
            self.counters.slowed += 1
            await asyncio.sleep(delay)
        if code is not None:
            self.counters.injected[code] = self.counters.injected.get(code, 0) + 1
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": f"injected by the fault proxy: {code} for {request.method} {request.path}",
                 "reason": REASONS.get(code, "InternalError"), "code": code},
                status=code, headers={"Retry-After": "1"} if code == 429 else None,
            )
        if empty and request.path.startswith("/api/v1/query"):
            return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.counters.forwarded += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        body = await request.read()
        try:
            upstream = await self._session.request(request.method, self.upstream + request.path_qs,
                                                   headers=headers, data=body or None, allow_redirects=False)
        except aiohttp.ClientError as err:
            return web.json_response({"kind": "Status", "status": "Failure", "code": 502, "reason": "BadGateway",
                                      "message": f"fault proxy: upstream unreachable: {err}"}, status=502)
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            if upstream.headers.get("Content-Encoding"):
                response.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await response.prepare(request)
            # Watches stream for as long as they last: pass every chunk on as it comes.
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientPayloadError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
            return response

