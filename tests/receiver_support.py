"""A local HTTP receiver for webhooks, notifications and confirmations: it records what arrives and answers from a
script. A plugin of tests/conftest.py, so the `receiver` fixture is there for every test module."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class Receiver:
    """A local HTTP endpoint that records every request and answers from a script (default 200)."""

    url: str = ""
    requests: list[tuple[str, Any]] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.requests if p == path]

    async def handle(self, req: web.Request) -> web.Response:
        try:
            body: Any = await req.json()
        except ValueError:
            body = await req.text()
        self.requests.append((req.path, body))
        script = self.answers.get(req.path, [])
        status = script.pop(0) if len(script) > 1 else (script[0] if script else 200)
        return web.json_response({"ok": 200 <= status < 300}, status=status)


@asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as rec:
        yield rec


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
