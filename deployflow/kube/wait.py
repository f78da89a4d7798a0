"""Waiting for the cluster to reach a state, on watches, without holding a thread.

Every wait an activity does (a Deployment becoming healthy, a track scaling, a batch of pods moving, a Job ending)
goes through `wait_until`: it lists the collections it needs once, then follows each with a watch from the list's
resourceVersion, keeping an up-to-date snapshot, and re-judges the snapshot when something changed. A dropped
stream resumes from the last resourceVersion seen; an expired one (410 Gone) is listed again; other errors back
off (bounded) and retry. Progress is sent as an activity heartbeat, so a cancelled activity learns of it within a
heartbeat and stops at once (the waits are plain awaits).

Why httpx rather than the official client: its watches block a thread per stream, and hundreds of releases
waiting at once would need hundreds of threads (or, as before, polling in a loop, which is what API priority and
fairness and client-side throttling exist to stop). The async client here is built from the official client's
Configuration (host, bearer token with its refresh hook, client certificate, CA, proxy), so both speak to the
same cluster with the same credentials; the calls that change the cluster stay on the official client.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from kubernetes import client
from temporalio import activity

from deployflow.kube.client import Api, KubeError, Obj, label_selector, resolve

T = TypeVar("T")
# DEBUG shows every list, stream, event and judgement of a wait, so a slow one can be laid out against the cluster's
# own timeline (`/debug/requests` on the simulator) to see whether an event came late or was judged late.
log = logging.getLogger(__name__)

Snapshot = dict[str, list[Obj]]
Check = Callable[[Snapshot], "tuple[bool, str] | Awaitable[tuple[bool, str]]"]

# A burst of events (ten pods starting) is judged once, not ten times.
SETTLE_SECONDS = 0.05
# Heartbeat at least this often even when nothing changes, so a cancellation is noticed and the activity is seen
# to be alive (the shortest heartbeat timeout a workflow sets is 10 s).
HEARTBEAT_SECONDS = 2.0
BACKOFF_MIN_SECONDS, BACKOFF_MAX_SECONDS = 0.2, 10.0
LIST_GRACE_SECONDS = 1.0
WATCH_SECONDS = 290  # the API server ends a watch after at most this long; it is resumed from its last version


@dataclass(frozen=True)
class Watch:
    """One collection a wait follows (list, then watch), in one cluster."""

    api: client.ApiClient
    path: str
    labels: Mapping[str, str] | None = None
    name: str | None = None  # just this object (a fieldSelector on metadata.name)

    def query(self) -> dict[str, str]:
        query = {}
        if self.labels:
            query["labelSelector"] = label_selector(self.labels)
        if self.name:
            query["fieldSelector"] = f"metadata.name={self.name}"
        return query


def watch_events(
    api: Api, path: str, *, labels: Mapping[str, str] | None = None, name: str | None = None
) -> Watch:
    """The watch events of the collection at `path` (only objects with `labels`, or only `name`), for `wait_until`
    to follow. Needs `list` and `watch` on the resource."""
    return Watch(resolve(api), path, dict(labels) if labels else None, name)


class Gone(Exception):
    """The resourceVersion a watch resumed from is too old (410): list again."""


def _ssl(cfg: client.Configuration) -> ssl.SSLContext | bool:
    if not str(cfg.host).startswith("https"):
        return True
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if not cfg.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cfg.assert_hostname is False:
        context.check_hostname = False
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    return context


class AsyncKube:
    """Reads and watches over one httpx.AsyncClient with the credentials of an official client's Configuration."""

    def __init__(self, api: client.ApiClient) -> None:
        self.cfg: client.Configuration = api.configuration
        # The name the server's certificate carries, when the kubeconfig says it differs from the host's.
        self.extensions = {"sni_hostname": self.cfg.tls_server_name} if self.cfg.tls_server_name else {}
        self.http = httpx.AsyncClient(
            base_url=str(self.cfg.host),
            verify=_ssl(self.cfg),
            proxy=self.cfg.proxy or None,
            trust_env=False,
            timeout=httpx.Timeout(30.0, read=WATCH_SECONDS + 30.0),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _headers(self) -> dict[str, str]:
        # The refresh hook may read a rotated service-account token or run an exec plugin: not on the event loop.
        settings: Mapping[str, Any] = await asyncio.to_thread(self.cfg.auth_settings)
        auth: Mapping[str, Any] = settings.get("BearerToken") or {}
        headers = {"Accept": "application/json"}
        if auth.get("value"):
            headers[str(auth["key"])] = str(auth["value"])
        return headers

    async def list(self, watch: Watch) -> tuple[list[Obj], str]:
        response = await self.http.get(
            watch.path, params=watch.query(), headers=await self._headers(), extensions=self.extensions
        )
        if response.status_code != 200:
            raise KubeError.of(response.status_code, response.text)
        body = response.json()
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def events(self, watch: Watch, resource_version: str) -> AsyncIterator[Obj]:
        """Watch events from `resource_version` until the server ends the stream; BOOKMARKs included."""
        params = {
            **watch.query(),
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        headers = await self._headers()
        async with self.http.stream(
            "GET", watch.path, params=params, headers=headers, extensions=self.extensions
        ) as response:
            if response.status_code == 410:
                raise Gone()
            if response.status_code != 200:
                raise KubeError.of(response.status_code, (await response.aread()).decode("utf-8", "replace"))
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event: Obj = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if int(status.get("code") or 0) == 410:
                        raise Gone()
                    raise KubeError(int(status.get("code") or 500), str(status.get("message") or "watch error"))
                yield event


def _version(obj: Obj) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None  # resourceVersions are opaque: when they are not numbers, the newest event wins


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _transient(err: Exception) -> bool:
    if isinstance(err, KubeError):
        return err.status in (429, 500, 502, 503, 504)
    return isinstance(err, httpx.HTTPError | json.JSONDecodeError)


class _Follower:
    """The live items of one collection, kept current by a watch that resumes after drops and 410s."""

    def __init__(self, kube: AsyncKube, watch: Watch, changed: asyncio.Event) -> None:
        self.kube = kube
        self.watch = watch
        self.changed = changed
        self.items: dict[str, Obj] = {}
        self.version = ""
        self.synced = asyncio.Event()

    def put(self, obj: Obj) -> None:
        """Keeps the newer of two versions: an object the caller wrote may be newer than an event still in flight."""
        key = _key(obj)
        old, new = _version(self.items.get(key) or {}), _version(obj)
        if old is None or new is None or new >= old:
            self.items[key] = obj

    async def relist(self) -> None:
        items, self.version = await self.kube.list(self.watch)
        log.debug("listed %s: %d items at %s", self.watch.path, len(items), self.version)
        self.items = {_key(o): o for o in items}
        self.synced.set()
        self.changed.set()

    async def run(self) -> None:
        backoff = BACKOFF_MIN_SECONDS
        while True:
            try:
                if not self.synced.is_set() or not self.version:
                    await self.relist()
                    backoff = BACKOFF_MIN_SECONDS
                events = 0
                log.debug("watching %s from %s", self.watch.path, self.version)
                async for event in self.kube.events(self.watch, self.version):
                    events += 1
                    backoff = BACKOFF_MIN_SECONDS
                    obj = event.get("object") or {}
                    kind = event.get("type")
                    if kind in ("ADDED", "MODIFIED"):
                        self.put(obj)
                    elif kind == "DELETED":
                        self.items.pop(_key(obj), None)
                    self.version = str((obj.get("metadata") or {}).get("resourceVersion") or self.version)
                    if kind != "BOOKMARK":
                        log.debug("%s %s %s at %s", self.watch.path, kind, _key(obj), self.version)
                        self.changed.set()
                # The server ended the stream (its timeout): resume from the last version seen, at once unless it
                # ended without a word (a proxy cutting watches short), which must not become a busy loop.
                log.debug("stream of %s ended after %d events", self.watch.path, events)
                if events == 0:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
            except Gone:
                log.debug("%s: version %s expired, listing again", self.watch.path, self.version)
                self.version = ""
                continue
            except Exception as err:  # noqa: BLE001 - sorted into transient and permanent just below
                if not _transient(err):
                    raise
                log.debug("%s: %r, retrying in %.1fs", self.watch.path, err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)


def heartbeat(detail: str) -> None:
    """Reports progress as the activity's heartbeat details (nothing outside an activity)."""
    if activity.in_activity():
        activity.heartbeat(detail)


async def wait_until(
    watches: Mapping[str, Watch],
    check: Check,
    *,
    timeout: float,
    on_timeout: Callable[[str], Exception],
    progress: Callable[[str], None] = heartbeat,
) -> str:
    """Judges the watched collections with `check` until it says done; returns its last detail.

    `check(snapshot)` gets each watch's current items under its key and returns (done, detail); it may raise to
    fail the wait (a broken pod) and may be async. After `timeout` seconds not done, raises `on_timeout(detail)`.
    """
    apis = {id(w.api): w.api for w in watches.values()}
    assert len(apis) == 1, "one wait follows one cluster"
    deadline = time.monotonic() + timeout
    changed = asyncio.Event()
    kube = AsyncKube(next(iter(apis.values())))
    followers = {key: _Follower(kube, w, changed) for key, w in watches.items()}
    tasks = [asyncio.create_task(f.run(), name=f"watch {f.watch.path}") for f in followers.values()]
    try:
        await _listed(list(followers.values()), tasks, deadline, on_timeout, progress)
        while True:
            changed.clear()
            snapshot = {key: list(f.items.values()) for key, f in followers.items()}
            result = check(snapshot)
            done, detail = await result if inspect.isawaitable(result) else result
            progress(detail)
            log.debug("judged %s: %s", "done" if done else "not done", detail)
            if done:
                return detail
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise on_timeout(detail)
            with contextlib.suppress(TimeoutError):
                await _first(asyncio.wait_for(changed.wait(), min(HEARTBEAT_SECONDS, remaining)), tasks)
            await asyncio.sleep(SETTLE_SECONDS)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await kube.aclose()


async def _listed(
    followers: list[_Follower],
    tasks: list[asyncio.Task[None]],
    deadline: float,
    on_timeout: Callable[[str], Exception],
    progress: Callable[[str], None],
) -> None:
    """Until every collection is listed, so the check never sees one half-known. A list that keeps failing is
    retried with back-off (by its follower) while the activity goes on heartbeating; the lists get at least a
    moment even when the wait has no time left, so a wait for a state the cluster is already in succeeds."""
    tried = False
    while unsynced := [f.watch.path for f in followers if not f.synced.is_set()]:
        detail = f"listing {', '.join(unsynced)}"
        remaining = deadline - time.monotonic()
        if remaining <= 0 and tried:
            raise on_timeout(detail)
        progress(detail)
        synced = asyncio.gather(*(f.synced.wait() for f in followers))
        with contextlib.suppress(TimeoutError):
            await _first(asyncio.wait_for(synced, min(HEARTBEAT_SECONDS, max(remaining, LIST_GRACE_SECONDS))), tasks)
        tried = True


async def _first(awaitable: Awaitable[Any], watchers: list[asyncio.Task[None]]) -> None:
    """Awaits `awaitable`, unless a watcher fails for good first: then its error is the wait's."""
    waiting = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait([waiting, *watchers], return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        waiting.cancel()
        raise
    for task in watchers:
        if task.done() and not task.cancelled() and task.exception() is not None:
            waiting.cancel()
            raise task.exception()  # type: ignore[misc]
    if not waiting.done():
        waiting.cancel()
        return
    waiting.result()


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Runs a blocking call of the official client in a thread. A thread cannot be stopped, so a cancellation
    lets a change it is making finish before it is reported: what runs next (a rollback) never races with it."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise
