"""kube.wait: waits follow watches, resume after drops and 410s, back off on errors, heartbeat, stop when cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.workloads import ApplyWorkloadInput, WaitHealthyInput, apply_workload, wait_healthy
from deployflow import kube
from deployflow.hooks import job as jobs
from deployflow.kube import health, wait
from deployflow.sim.server import Simulator
from deployflow.spec.common import Target, Workload
from deployflow.spec.hooks import HookContext, HookPoint, JobHook


def obj(version: int, done: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": str(version)}, "done": done}


class Script:
    """What the fake API server answers: `lists` in turn, and for each watch the next entry of `streams` (a list
    of events, or an exception to raise); a watch past the script waits for ever."""

    def __init__(self, lists: list[list[dict[str, Any]]], streams: list[list[dict[str, Any]] | Exception]) -> None:
        self.lists, self.streams = lists, streams
        self.listed = 0
        self.watched_from: list[str] = []
        self.closed = False
        self.open_streams = 0


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Script]]:
    holder: list[Script] = []

    class FakeKube:
        def __init__(self, api: Any) -> None:
            self.s = holder[0]

        async def aclose(self) -> None:
            self.s.closed = True

        async def list(self, watch: wait.Watch) -> tuple[list[dict[str, Any]], str]:
            items = self.s.lists[min(self.s.listed, len(self.s.lists) - 1)]
            self.s.listed += 1
            return items, max((i["metadata"]["resourceVersion"] for i in items), default="1")

        async def events(self, watch: wait.Watch, resource_version: str) -> AsyncIterator[dict[str, Any]]:
            self.s.watched_from.append(resource_version)
            n = len(self.s.watched_from) - 1
            self.s.open_streams += 1
            try:
                if n >= len(self.s.streams):
                    await asyncio.Event().wait()
                step = self.s.streams[n]
                if isinstance(step, Exception):
                    raise step
                for event in step:
                    yield event
            finally:
                self.s.open_streams -= 1

    monkeypatch.setattr(wait, "AsyncKube", FakeKube)
    monkeypatch.setattr(wait, "BACKOFF_MIN_SECONDS", 0.001)
    monkeypatch.setattr(wait, "SETTLE_SECONDS", 0.0)
    yield holder


def watches() -> dict[str, wait.Watch]:
    return {"web": wait.Watch(api=object(), path="/apis/apps/v1/namespaces/ns/deployments", name="web")}  # type: ignore[arg-type]


def done(snapshot: wait.Snapshot) -> tuple[bool, str]:
    items = snapshot["web"]
    return bool(items and items[0]["done"]), f"version {items[0]['metadata']['resourceVersion']}" if items else "none"


async def until_done(timeout: float = 60.0) -> str:
    return await wait.wait_until(watches(), done, timeout=timeout, on_timeout=lambda d: TimeoutError(d),
                                 progress=lambda _: None)


async def test_a_dropped_stream_resumes_from_the_last_version_seen(script: list[Script]) -> None:
    s = Script([[obj(1)]], [[{"type": "MODIFIED", "object": obj(2)}], [{"type": "MODIFIED", "object": obj(3, True)}]])
    script.append(s)
    assert await until_done() == "version 3"
    assert s.listed == 1 and s.watched_from[:2] == ["1", "2"]


async def test_a_wait_logs_its_timeline_at_debug(script: list[Script], caplog: pytest.LogCaptureFixture) -> None:
    s = Script([[obj(1)]], [[{"type": "MODIFIED", "object": obj(2, True)}]])
    script.append(s)
    with caplog.at_level(logging.DEBUG, logger=wait.__name__):
        await until_done()
    path = watches()["web"].path
    messages = [r.getMessage() for r in caplog.records]
    # The judgements interleave with the stream as the event loop schedules them; what each says does not vary.
    assert {f"listed {path}: 1 items at 1", f"watching {path} from 1", f"{path} MODIFIED ns/web at 2"} <= set(messages)
    assert messages.index(f"listed {path}: 1 items at 1") < messages.index(f"watching {path} from 1")
    assert messages[-1] == "judged done: version 2"


async def test_bookmarks_move_the_resume_point_without_a_new_judgement(script: list[Script]) -> None:
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}}
    s = Script([[obj(1)]], [[bookmark], [{"type": "MODIFIED", "object": obj(8, True)}]])
    script.append(s)
    await until_done()
    assert s.watched_from[:2] == ["1", "7"]


async def test_a_stream_closed_without_a_word_is_reopened_from_the_same_version(script: list[Script]) -> None:
    s = Script([[obj(1)]], [[], [{"type": "MODIFIED", "object": obj(2, True)}]])
    script.append(s)
    await until_done()
    assert s.watched_from[:2] == ["1", "1"] and s.listed == 1


async def test_the_async_client_carries_the_official_clients_credentials() -> None:
    cfg = client.Configuration(host="https://api.example:6443")
    cfg.verify_ssl = False
    cfg.tls_server_name = "kubernetes.default"
    cfg.api_key = {"authorization": "expired"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    tokens = iter(["first", "rotated"])
    cfg.refresh_api_key_hook = lambda c: c.api_key.update(authorization=next(tokens))
    reader = wait.AsyncKube(client.ApiClient(cfg))
    try:
        assert (await reader._headers())["authorization"] == "Bearer first"
        assert (await reader._headers())["authorization"] == "Bearer rotated"  # a rotated token is used at once
        assert reader.extensions == {"sni_hostname": "kubernetes.default"}
        assert str(reader.http.base_url).startswith("https://api.example:6443")
    finally:
        await reader.aclose()


async def test_an_expired_version_lists_again(script: list[Script]) -> None:
    s = Script([[obj(1)], [obj(9, True)]], [wait.Gone()])
    script.append(s)
    assert await until_done() == "version 9"
    assert s.listed == 2


async def test_server_errors_back_off_and_resume_from_the_same_version(script: list[Script]) -> None:
    s = Script([[obj(1)]], [kube.KubeError(503, "busy"), kube.KubeError(429, "slow down"),
                            [{"type": "MODIFIED", "object": obj(2, True)}]])
    script.append(s)
    await until_done()
    assert s.watched_from[:3] == ["1", "1", "1"] and s.listed == 1


async def test_a_list_that_keeps_failing_heartbeats_until_the_timeout(script: list[Script]) -> None:
    script.append(Script([[obj(1)]], []))
    s = script[0]

    async def failing(*_: Any) -> Any:
        s.listed += 1
        raise kube.KubeError(503, "etcd is unavailable")

    beats: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wait, "HEARTBEAT_SECONDS", 0.01)
        patch.setattr(type(wait.AsyncKube(None)), "list", failing)  # type: ignore[arg-type]
        with pytest.raises(TimeoutError) as late:
            await wait.wait_until(watches(), done, timeout=0.2, on_timeout=TimeoutError, progress=beats.append)
    assert str(late.value).startswith("listing ") and len(beats) > 1 and s.listed > 1


async def test_a_refused_watch_fails_the_wait(script: list[Script]) -> None:
    script.append(Script([[obj(1)]], [kube.KubeError(403, "pods is forbidden")]))
    with pytest.raises(kube.KubeError) as refused:
        await until_done()
    assert refused.value.status == 403


async def test_a_deleted_object_leaves_the_snapshot(script: list[Script]) -> None:
    script.append(Script([[obj(1)]], [[{"type": "DELETED", "object": obj(2)}]]))

    def gone(snapshot: wait.Snapshot) -> tuple[bool, str]:
        return not snapshot["web"], f"{len(snapshot['web'])} left"

    # Were the deletion missed, the object would stay and the wait would end in its timeout's error instead.
    assert await wait.wait_until(watches(), gone, timeout=30, on_timeout=TimeoutError, progress=lambda _: None) == (
        "0 left"
    )


async def test_an_event_older_than_what_the_caller_wrote_does_not_win() -> None:
    follower = wait._Follower(None, watches()["web"], asyncio.Event())  # type: ignore[arg-type]
    follower.put(obj(5, True))
    follower.put(obj(4))
    assert next(iter(follower.items.values()))["done"] is True


async def test_timing_out_raises_the_callers_error_with_the_last_detail(script: list[Script]) -> None:
    script.append(Script([[obj(1)]], []))
    with pytest.raises(TimeoutError) as late:
        await until_done(timeout=0)
    assert str(late.value) == "version 1"


async def test_cancelling_a_wait_stops_its_watches(script: list[Script]) -> None:
    s = Script([[obj(1)]], [])  # the watch never answers
    script.append(s)
    judged = asyncio.Event()

    def check(snapshot: wait.Snapshot) -> tuple[bool, str]:
        judged.set()
        return False, "waiting"

    task = asyncio.create_task(
        wait.wait_until(watches(), check, timeout=3600, on_timeout=TimeoutError, progress=lambda _: None)
    )
    await judged.wait()
    while s.open_streams == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s.closed and s.open_streams == 0


# --- against the simulator ------------------------------------------------------------------------------------------


async def test_wait_healthy_heartbeats_its_progress_and_ends_when_ready(namespace: str) -> None:
    target = Target(cluster="sim", namespace=namespace, app="web")
    selector = {"app": "web", "deployflow.io/color": "blue"}
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.extend(details)
    workload = Workload(image="web:1.0", replicas=3)
    env.run(apply_workload, ApplyWorkloadInput(target=target, name="web-blue", workload=workload, replicas=3,
                                                     selector=selector))
    report = await env.run(wait_healthy, WaitHealthyInput(
        target=target, name="web-blue", replicas=3, image="web:1.0", pod_selector=selector,
        timeout=timedelta(minutes=10),
    ))
    assert report.ready_replicas == 3
    assert beats and beats[-1].startswith("3/3 ready")


async def test_a_flaky_api_server_slows_a_wait_but_does_not_fail_it(
    sim: Simulator, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wait, "BACKOFF_MAX_SECONDS", 0.5)
    target = Target(cluster="sim", namespace=namespace, app="web")
    selector = {"app": "web", "deployflow.io/color": "blue"}
    env = ActivityEnvironment()
    env.run(apply_workload, ApplyWorkloadInput(target=target, name="web-blue", workload=Workload(image="web:1.0"),
                                               replicas=2, selector=selector))
    before = sim.faults.injected
    sim.faults.set(error_rate=0.3, codes=(500, 503, 429), seed=7)
    try:
        report = await wait.wait_until(
            {"pods": kube.watch_events("sim", kube.core_path(namespace, "pods"), labels=selector)},
            lambda snapshot: (sum(1 for p in snapshot["pods"] if health.pod_ready(p)) == 2, "pods ready"),
            timeout=600, on_timeout=TimeoutError, progress=lambda _: None,
        )
    finally:
        sim.faults.clear()
    assert report == "pods ready" and sim.faults.injected > before


async def test_wait_healthy_of_a_missing_deployment_fails_for_good(namespace: str) -> None:
    target = Target(cluster="sim", namespace=namespace, app="web")
    with pytest.raises(ApplicationError) as missing:
        await ActivityEnvironment().run(wait_healthy, WaitHealthyInput(
            target=target, name="nothing", replicas=1, image=None, pod_selector={"app": "nothing"},
            timeout=timedelta(minutes=10),
        ))
    assert missing.value.type == "NotFound" and missing.value.non_retryable


async def test_a_job_is_followed_to_its_end(namespace: str) -> None:
    target = Target(cluster="sim", namespace=namespace, app="web")
    hook = JobHook.model_validate({"kind": "job", "name": "migrate", "image": "migrate:1"})
    context = HookContext(point=HookPoint.PRE_DEPLOY, workflow_id="w", run_id="r", strategy="rolling",
                          version="1")
    manifest = jobs.job_manifest(target, hook, context)
    await asyncio.to_thread(jobs.ensure_job, "sim", manifest)
    outcome = await jobs.wait_job("sim", namespace, manifest["metadata"]["name"], timeout=600)
    assert outcome.state == "succeeded"
