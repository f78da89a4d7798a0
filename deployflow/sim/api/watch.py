"""Watch: the current state as ADDED (or a resume from a resourceVersion, 410 Gone when it is too old), then live
events, bookmarks and `timeoutSeconds`; selectors turn objects that start or stop matching into ADDED and DELETED."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from aiohttp import web

from deployflow.sim.api.errors import status_body
from deployflow.sim.api.filters import object_filter
from deployflow.sim.api.http import CONTENT_JSON, wants_table
from deployflow.sim.api.tables import table_for
from deployflow.sim.store import Obj, Resource, Store, StoreError, WatchEvent

DEFAULT_WATCH_TIMEOUT = 1800.0
BOOKMARK_INTERVAL = 1.0


def _parse_rv(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value or 0)
    except ValueError as e:
        raise StoreError(400, "BadRequest", f"invalid resource version {value!r}") from e


def _obj_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class _Visibility:
    """What a watch with a selector has shown: an object that stops matching is DELETED for this watcher, one
    that starts matching is ADDED, as the apiserver's watch cache reports selector transitions."""

    def __init__(self, keep: Callable[[Obj], bool], visible: list[tuple[str, str]]) -> None:
        self.keep = keep
        self.visible = set(visible)

    def translate(self, etype: str, obj: Obj, old: Obj | None = None) -> str | None:
        key, matches = _obj_key(obj), self.keep(obj)
        was = self.keep(old) if old is not None else key in self.visible
        if etype == "DELETED":
            self.visible.discard(key)
            return "DELETED" if was or matches else None
        if matches:
            self.visible.add(key)
            return "MODIFIED" if was and etype == "MODIFIED" else "ADDED"
        if was:
            self.visible.discard(key)
            return "DELETED"
        return None


async def watch(store: Store, request: web.Request, res: Resource, namespace: str | None) -> web.StreamResponse:
    keep = object_filter(request)
    rv_param = request.query.get("resourceVersion")
    since = _parse_rv(rv_param)
    bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true", "True")
    timeout = float(request.query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()

    def enqueue(event: WatchEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    initial: list[Obj] = []
    initial_keys: list[tuple[str, str]] = []
    error: StoreError | None = None

    def unsubscribe() -> None:
        return None

    with store.lock:
        if since in (None, 0):
            # No (or "any") resourceVersion: the current state as ADDED events, then changes, like the apiserver.
            initial = store.list(res, namespace)
            current_rv = store.resource_version
            unsubscribe = store.subscribe(res, namespace, enqueue)
        else:
            initial_keys = [_obj_key(o) for o in store.list(res, namespace, keep)]
            current_rv = since or 0
            try:
                unsubscribe = store.subscribe(
                    res, namespace, enqueue, since=since)
            except StoreError as e:
                error = e

    resp = web.StreamResponse(headers={"Content-Type": CONTENT_JSON, "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)

    selective = bool(request.query.get("labelSelector") or request.query.get("fieldSelector"))
    visibility = _Visibility(keep, initial_keys + [_obj_key(o) for o in initial if keep(o)]) if selective else None
    as_table = wants_table(request)
    include = request.query.get("includeObject", "Metadata")

    async def send(etype: str, obj: Obj) -> None:
        if as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
            obj = table_for(res, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")}, include)
        await resp.write(json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n")

    try:
        if error is not None:
            await send("ERROR", status_body(error.code, error.reason, error.message))
            return resp
        for obj in initial:
            if keep(obj):
                await send("ADDED", obj)
        deadline = time.monotonic() + timeout
        last_rv = current_rv
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                event = await asyncio.wait_for(queue.get(), min(remaining, BOOKMARK_INTERVAL))
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away; aiohttp does not cancel handlers for that
                if bookmarks:
                    await send("BOOKMARK", {"kind": res.kind, "apiVersion": res.group_version,
                                            "metadata": {"resourceVersion": str(last_rv)}})
                continue
            if event is None:
                break
            last_rv = event.resource_version
            etype = visibility.translate(event.type, event.object, event.old) if visibility else (
                event.type if keep(event.object) else None)
            if etype:
                await send(etype, event.object)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return resp
