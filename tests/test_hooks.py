"""Hooks at every point of a rolling deployment, and what a failing hook does at each point."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from deployflow import kube
from deployflow.sim.controllers.pods import CRASH_LOOP
from deployflow.sim.resources import REPLICASETS
from deployflow.sim.server import Simulator
from deployflow.spec.hooks import Hooks
from deployflow.status import DeploymentStatus, Phase
from tests.hooks_support import index_of, job_manifest, messages
from tests.receiver_support import Receiver
from tests.rolling_support import (
    CLUSTER,
    create_deployment,
    failure_message,
    request,
    rolling_worker,
    start,
    status_of,
    versions,
    wait_phase,
    wait_ready,
    workload,
)


async def test_every_hook_point_runs_at_its_place(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str, receiver: Receiver
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    receiver.answers["/confirm"] = [503, 503, 200]  # the external system confirms on the third ask
    hooks = {
        "pre_deploy": [{"kind": "job", "name": "migrate", "manifest": job_manifest("migrated 3 tables\n")}],
        "pre_promote": [{"kind": "http", "name": "smoke", "service": "web", "path": "/healthz", "requests": 3}],
        "post_deploy": [{"kind": "confirm", "name": "qa", "url": f"{receiver.url}/confirm", "interval_seconds": 60}],
    }
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1, hooks=hooks))
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    events = messages(final)
    order = [
        index_of(events, "pre_deploy hook migrate (job): passed"),
        index_of(events, "batch 1/2 healthy"),
        index_of(events, "pre_promote hook smoke (http): passed"),
        index_of(events, "batch 2/2 healthy"),
        index_of(events, "post_deploy hook qa (confirm): passed: confirmed after 3 ask(s)"),
    ]
    assert order == sorted(order), events
    jobs = kube.request_json(CLUSTER, "GET", kube.batch_path(namespace))["items"]
    assert len(jobs) == 1 and jobs[0]["metadata"]["labels"]["deployflow.io/hook-point"] == "pre_deploy"
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in jobs[0]["status"]["conditions"])
    asks = receiver.bodies("/confirm")
    assert len(asks) == 3 and [a["attempt"] for a in asks] == [1, 2, 3]
    assert asks[0]["point"] == "post_deploy" and asks[0]["version"] == "2.0.0" and asks[0]["app"] == "web"


async def test_failing_pre_deploy_job_changes_nothing_and_quotes_its_log(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    before = workload(namespace)
    log = "applying 0042_add_index\nERROR: relation \"users_email_idx\" already exists\n"
    hooks = {"pre_deploy": [{"kind": "job", "name": "migrate", "manifest": job_manifest(log, fail=True)}]}
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, hooks=hooks))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        final = await status_of(handle)
    message = failure_message(failed.value)
    assert "pre_deploy hook migrate (job) failed" in message
    assert 'ERROR: relation "users_email_idx" already exists' in message  # the Job's last log lines
    assert "nothing in the cluster was changed" in message
    assert final.phase == Phase.FAILED
    after = workload(namespace)
    assert after["spec"] == before["spec"]
    assert len(sim.store.list(REPLICASETS, namespace)) == 1
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]


async def test_failing_pre_promote_smoke_test_rolls_back(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str, receiver: Receiver
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    receiver.answers["/smoke"] = [500]
    hooks = {"pre_promote": [{"kind": "http", "name": "smoke", "url": f"{receiver.url}/smoke", "requests": 2}]}
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1, hooks=hooks))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        final = await status_of(handle)
    message = failure_message(failed.value)
    assert "rolled back to 1.0.0" in message and "pre_promote hook smoke (http) failed" in message
    assert "0/2 requests passed" in message and "status 500" in message
    assert final.phase == Phase.ROLLED_BACK
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]


async def test_failing_post_deploy_confirmation_rolls_back_a_finished_rollout(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str, receiver: Receiver
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    receiver.answers["/confirm"] = [403]
    hooks = {
        "post_deploy": [
            {"kind": "confirm", "name": "qa", "url": f"{receiver.url}/confirm", "interval_seconds": 60,
             "timeout_seconds": 300}
        ]
    }
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=2, hooks=hooks))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        final = await status_of(handle)
    message = failure_message(failed.value)
    assert "post_deploy hook qa (confirm) failed: not confirmed within 300s" in message and "403" in message
    assert len(receiver.bodies("/confirm")) >= 5
    assert index_of(messages(final), "batch 1/1 healthy") < index_of(messages(final), "rolling back")
    assert final.phase == Phase.ROLLED_BACK
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]
    assert workload(namespace)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0.0")


async def test_failing_on_rollback_hook_is_a_warning_and_the_rollback_stands(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str, receiver: Receiver
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    receiver.answers["/page"] = [502]
    hooks = {"on_rollback": [{"kind": "http", "name": "page", "url": f"{receiver.url}/page", "requests": 1}]}
    req = request(namespace, batch_size=1, pod_annotations={CRASH_LOOP: "true"}, hooks=hooks)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, req)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        final = await status_of(handle)
    message = failure_message(failed.value)
    assert "CrashLoopBackOff" in message and "on_rollback" not in message  # the rollout's reason, not the hook's
    assert final.phase == Phase.ROLLED_BACK
    warnings = [e.message for e in final.events if e.kind == "warning"]
    assert any("on_rollback hook page (http) failed" in w and "rollback itself completed" in w for w in warnings)
    assert len(receiver.bodies("/page")) >= 1
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]


async def test_approval_gate_waits_and_records_the_approver(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, request(namespace, batch_size=1, approval={"after_batch": 1}))
        waiting = await wait_phase(handle, Phase.WAITING_PROMOTION)
        assert waiting.message == "waiting for approval after batch 1/2"
        assert sorted(versions(sim, namespace).values()) == ["1.0.0", "2.0.0"]  # held after the first batch
        status = await handle.execute_update(
            "approve", {"approver": "alice", "comment": "metrics look fine"}, result_type=DeploymentStatus
        )
        assert status.details["approved_by"] == "alice"
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    assert final.details["approved_by"] == "alice"
    assert any(m == "approved by alice: metrics look fine" for m in messages(final))
    assert sorted(versions(sim, namespace).values()) == ["2.0.0", "2.0.0"]


async def test_approval_timeout_rolls_back(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str
) -> None:
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    req = request(namespace, batch_size=1, approval={"after_batch": 1, "timeout": "1h"})
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, req)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "nobody approved after batch 1/2 within 1:00:00" in failure_message(failed.value)
    await wait_ready(sim, namespace, 2)
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]


def test_hook_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of 'manifest'"):
        Hooks.model_validate({"pre_deploy": [{"kind": "job", "name": "m"}]})
    with pytest.raises(ValueError, match="must be a batch/v1 Job"):
        Hooks.model_validate({"pre_deploy": [{"kind": "job", "name": "m", "manifest": {"kind": "Pod"}}]})
    with pytest.raises(ValueError, match="repeated: smoke"):
        Hooks.model_validate(
            {"pre_promote": [{"kind": "http", "name": "smoke", "service": "a"}, {"kind": "http", "name": "smoke",
                                                                                  "service": "b"}]}
        )
    with pytest.raises(ValueError, match="cannot fail"):
        Hooks.model_validate({"pre_promote": [{"kind": "http", "name": "s", "service": "a", "requests": 1,
                                               "max_failures": 1}]})
