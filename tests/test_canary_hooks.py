"""Hooks and notifications of a canary release: each hook point at its place, what a failing hook does there, and
what a local receiver is told. Time-skipping server, real activities, the simulator as the cluster."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.hooks import ask_confirmation, run_http_hook, run_job_hook
from deployflow import kube
from deployflow.sim.server import Simulator
from deployflow.status import Phase
from tests.canary_support import ACTIVITIES, Rates, Release, replays
from tests.hooks_support import index_of, job_manifest, messages
from tests.receiver_support import Receiver, closed_port
from workflows.canary import CanaryDeployment

STEPS = [{"set_weight": 25}, {"pause": {"duration": "5m"}}, {"set_weight": 50}]


@pytest.fixture
async def release(time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str) -> AsyncIterator[Release]:
    """v1 serves on the stable track; a worker with the hook and notification activities is running."""
    key = uuid.uuid4().hex[:8]
    task_queue = f"canary-hooks-{key}"
    activities = [*ACTIVITIES, run_job_hook, run_http_hook, ask_confirmation]
    async with Worker(time_skipping_env.client, task_queue=task_queue, workflows=[CanaryDeployment],
                      activities=activities):
        # No step here measures anything: the metric endpoint is never asked.
        r = Release(time_skipping_env, sim, namespace, "http://127.0.0.1:9", Rates(), key, task_queue)
        first = await r.deploy(r.spec("v1"))
        assert first.phase == Phase.SUCCEEDED
        yield r
        assert await r.still_running() == []


def jobs(namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.request_json("sim", "GET", kube.batch_path(namespace))["items"]
    return items


async def test_every_hook_point_runs_at_its_place_and_each_phase_is_notified(
    release: Release, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_CANARY_HOOK_URL", f"{receiver.url}/hook")
    receiver.answers["/confirm"] = [503, 200]  # confirmed on the second ask
    hooks = {
        "pre_deploy": [{"kind": "job", "name": "migrate", "manifest": job_manifest("migrated 3 tables\n")}],
        "pre_promote": [{"kind": "http", "name": "smoke", "service": "web", "path": "/healthz", "requests": 3}],
        "post_deploy": [{"kind": "confirm", "name": "qa", "url": f"{receiver.url}/confirm", "interval_seconds": 60}],
    }
    spec = release.spec("v2", steps=STEPS, hooks=hooks,
                        notifications=[{"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_CANARY_HOOK_URL"}])
    handle = await release.start(spec)
    final = await handle.result()
    await replays(handle)

    assert final.phase == Phase.SUCCEEDED
    release.assert_serving("v2")
    events = messages(final)
    order = [
        index_of(events, "pre_deploy hook migrate (job): passed"),
        index_of(events, "canary weight 25%"),
        index_of(events, "canary weight 50%"),
        index_of(events, "pre_promote hook smoke (http): passed"),
        index_of(events, "canary weight 100%"),
        index_of(events, "promoted: web-stable runs v2"),
        index_of(events, "post_deploy hook qa (confirm): passed: confirmed after 2 ask(s)"),
    ]
    assert order == sorted(order), events
    # The migration ran as a Job before the canary existed, and completed.
    created = jobs(release.namespace)
    assert len(created) == 1 and created[0]["metadata"]["labels"]["deployflow.io/hook-point"] == "pre_deploy"
    asks = receiver.bodies("/confirm")
    assert [a["attempt"] for a in asks] == [1, 2]
    assert asks[0]["point"] == "post_deploy" and asks[0]["version"] == "v2" and asks[0]["previous_version"] == "v1"

    notified = receiver.bodies("/hook")
    assert [b["event"] for b in notified] == ["started", "promoted", "succeeded"]
    assert all(b["strategy"] == "canary" and b["version"] == "v2" and b["workflow_id"] == handle.id
               for b in notified)
    assert notified[1]["reason"] == "web-stable runs v2"
    assert notified[2]["reason"] == "v2 promoted: it is the stable version"
    assert notified[2]["previous_version"] == "v1"


async def test_failing_pre_promote_hook_rolls_back_and_the_rollback_is_notified(
    release: Release, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_CANARY_HOOK_URL", f"{receiver.url}/hook")
    receiver.answers["/smoke"] = [500]
    hooks = {
        "pre_promote": [{"kind": "http", "name": "smoke", "url": f"{receiver.url}/smoke", "requests": 2}],
        "on_rollback": [{"kind": "http", "name": "page", "url": f"{receiver.url}/page", "requests": 1}],
    }
    spec = release.spec("v2", steps=STEPS, hooks=hooks,
                        notifications=[{"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_CANARY_HOOK_URL"}])
    handle = await release.start(spec)
    err = await release.fails(handle)

    assert err.type == "RolledBack"
    assert err.message.startswith("rolled back at step 4 (50%): pre_promote hook smoke (http) failed"), err.message
    assert "status 500" in err.message and err.message.endswith("traffic is back on v1")
    release.assert_serving("v1")  # stable serves every request, the canary has no pods
    final = await release.wait_for(handle, lambda s: s.phase == Phase.ROLLED_BACK)
    assert final.weights == {"stable": 100, "canary": 0}
    events = messages(final)
    assert index_of(events, "rolling back") < index_of(events, "on_rollback hook page (http): passed")
    assert len([p for p, _ in receiver.requests if p == "/page"]) == 1

    notified = receiver.bodies("/hook")
    assert [b["event"] for b in notified] == ["started", "rolled-back"]
    assert notified[1]["phase"] == "RolledBack"
    assert "pre_promote hook smoke (http) failed" in notified[1]["reason"]
    assert "traffic is back on v1" in notified[1]["reason"]


async def test_failing_pre_deploy_hook_changes_nothing(release: Release) -> None:
    log = "applying 0042_add_index\nERROR: relation \"users_email_idx\" already exists\n"
    hooks = {"pre_deploy": [{"kind": "job", "name": "migrate", "manifest": job_manifest(log, fail=True)}]}
    handle = await release.start(release.spec("v2", steps=STEPS, hooks=hooks))
    err = await release.fails(handle)

    assert err.type == "HookFailed"
    assert "pre_deploy hook migrate (job) failed" in err.message
    assert 'ERROR: relation "users_email_idx" already exists' in err.message
    assert err.message.endswith("nothing in the cluster was changed")
    assert (await release.wait_for(handle, lambda s: s.phase == Phase.FAILED)).weights == {}
    assert not release.tracks().read("canary").exists  # the canary was never created
    release.assert_serving("v1")


async def test_failing_post_deploy_hook_restores_the_previous_version_and_a_failing_on_rollback_hook_is_a_warning(
    release: Release, receiver: Receiver
) -> None:
    receiver.answers["/confirm"] = [403]
    receiver.answers["/page"] = [502]
    hooks = {
        "post_deploy": [{"kind": "confirm", "name": "qa", "url": f"{receiver.url}/confirm", "interval_seconds": 60,
                         "timeout_seconds": 180}],
        "on_rollback": [{"kind": "http", "name": "page", "url": f"{receiver.url}/page", "requests": 1}],
    }
    handle = await release.start(release.spec("v2", steps=[{"set_weight": 50}], hooks=hooks))
    err = await release.fails(handle)

    assert err.type == "RolledBack"
    assert err.message.startswith("rolled back after promotion: post_deploy hook qa (confirm) failed: not confirmed"), \
        err.message
    assert "on_rollback" not in err.message  # the release's reason, not the hook's
    assert err.message.endswith("v1 serves again")
    release.assert_serving("v1")
    final = await release.wait_for(handle, lambda s: s.phase == Phase.ROLLED_BACK)
    events = messages(final)
    assert index_of(events, "promoted: web-stable runs v2") < index_of(events, "restoring v1")
    warnings = [e.message for e in final.events if e.kind == "warning"]
    assert any("on_rollback hook page (http) failed" in w and "rollback itself completed" in w for w in warnings)


async def test_a_dead_receiver_does_not_fail_the_release(
    release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_CANARY_DEAD_URL", f"http://127.0.0.1:{closed_port()}/nobody")
    spec = release.spec("v2", steps=[{"set_weight": 50}],
                        notifications=[{"kind": "slack", "url_env": "DEPLOYFLOW_CRED_TEST_CANARY_DEAD_URL"}])
    final = await release.deploy(spec)

    assert final.phase == Phase.SUCCEEDED
    release.assert_serving("v2")
    warnings = [e.message for e in final.events if e.kind == "warning"]
    assert any("notification succeeded" in w and "not delivered" in w for w in warnings), warnings
