"""Notifications against a local HTTP receiver: payloads, Secrets, and a dead receiver that must not matter."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from deployflow import kube
from deployflow.notify.slack import SlackSender
from deployflow.sim.controllers.pods import CRASH_LOOP
from deployflow.sim.server import Simulator
from deployflow.spec.notify import Notifier, NotifyEvent, NotifyMessage
from deployflow.status import Phase
from tests.receiver_support import Receiver, closed_port
from tests.rolling_support import (
    CLUSTER,
    create_deployment,
    request,
    rolling_worker,
    start,
    status_of,
    versions,
    wait_phase,
    wait_ready,
    wait_step,
)


async def test_slack_and_webhook_receive_each_event_of_a_deployment(
    time_skipping_env: WorkflowEnvironment,
    sim: Simulator,
    namespace: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_SLACK_URL", f"{receiver.url}/slack")
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_HOOK_URL", f"{receiver.url}/hook")
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    req = request(
        namespace,
        batch_size=1,
        approval={"after_batch": 1},
        notifications=[
            {"kind": "slack", "url_env": "DEPLOYFLOW_CRED_TEST_SLACK_URL", "channel": "#deploys"},
            {"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_HOOK_URL"},
        ],
    )
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, req)
        for _ in range(400):
            if (await status_of(handle)).phase == Phase.WAITING_PROMOTION:
                break
        await handle.execute_update("approve", {"approver": "alice"})
        assert (await handle.result()).phase == Phase.SUCCEEDED

    hooks = receiver.bodies("/hook")
    assert [b["event"] for b in hooks] == ["started", "waiting-approval", "promoted", "succeeded"]
    for body in hooks:
        assert body["app"] == "web" and body["namespace"] == namespace and body["cluster"] == CLUSTER
        assert body["version"] == "2.0.0" and body["strategy"] == "rolling"
        assert body["workflow_id"] == handle.id
    assert hooks[-1]["previous_version"] == "1.0.0"
    assert hooks[-1]["details"]["approved_by"] == "alice"

    slack = receiver.bodies("/slack")
    assert len(slack) == 4 and all(b["channel"] == "#deploys" for b in slack)
    first_line, *rest = slack[-1]["text"].splitlines()
    assert "*web* 2.0.0" in first_line and first_line.endswith("succeeded: Deployment web runs 2.0.0 on all 2 pods")
    assert rest and rest[-1].startswith("outcome: succeeded after ")  # how it ended, said by the workflow
    assert hooks[-1]["details"]["outcome"] == "succeeded"
    assert "is waiting for approval" in slack[1]["text"]
    assert slack[-1]["attachments"][0]["color"] == "#2EB886"


async def test_pause_and_resume_are_notified(
    time_skipping_env: WorkflowEnvironment,
    sim: Simulator,
    namespace: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_HOOK_URL", f"{receiver.url}/hook")
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    hook = {"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_HOOK_URL"}
    req = request(namespace, batch_size=1, notifications=[hook])
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, req)
        await wait_step(handle, "batch 1/2")
        await handle.execute_update("pause", {"reason": "lunch"})
        await wait_phase(handle, Phase.PAUSED)
        await handle.execute_update("resume")
        assert (await handle.result()).phase == Phase.SUCCEEDED
    events = [b["event"] for b in receiver.bodies("/hook")]
    assert events == ["started", "paused", "resumed", "promoted", "succeeded"]
    assert receiver.bodies("/hook")[1]["reason"] == "paused: lunch"


async def test_a_rollback_is_notified_with_its_reason_and_the_url_can_come_from_a_secret(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str, receiver: Receiver
) -> None:
    kube.create(
        CLUSTER,
        kube.core_path(namespace, "secrets"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "chat", "namespace": namespace, "labels": {"deployflow.io/credential": "true"}},
            "data": {"url": base64.b64encode(f"{receiver.url}/secret-hook".encode()).decode()},
        },
    )
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    req = request(
        namespace,
        batch_size=1,
        pod_annotations={CRASH_LOOP: "true"},
        notifications=[
            {"kind": "webhook", "secret": {"name": "chat", "key": "url"}, "events": ["rolled-back", "failed"]}
        ],
    )
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, req)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    bodies = receiver.bodies("/secret-hook")
    assert [b["event"] for b in bodies] == ["rolled-back"]
    assert "CrashLoopBackOff" in bodies[0]["reason"] and bodies[0]["phase"] == "RolledBack"
    assert sorted(versions(sim, namespace).values()) == ["1.0.0", "1.0.0"]


async def test_a_dead_or_failing_receiver_never_fails_the_deployment(
    time_skipping_env: WorkflowEnvironment,
    sim: Simulator,
    namespace: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_DEAD_URL", f"http://127.0.0.1:{closed_port()}/nobody")
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_FLAKY_URL", f"{receiver.url}/flaky")
    receiver.answers["/flaky"] = [500, 200]  # the first try of the first message fails, then all succeed
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    req = request(
        namespace,
        batch_size=2,
        notifications=[
            {"kind": "slack", "url_env": "DEPLOYFLOW_CRED_TEST_DEAD_URL"},
            {"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_FLAKY_URL", "events": ["succeeded"]},
            {"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_UNSET"},
        ],
    )
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, req)
        final = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    assert sorted(versions(sim, namespace).values()) == ["2.0.0", "2.0.0"]
    warnings = [e.message for e in final.events if e.kind == "warning"]
    assert any("not delivered" in w and "unreachable" in w for w in warnings), warnings
    assert any("DEPLOYFLOW_CRED_TEST_UNSET" in w and "not set" in w for w in warnings), warnings
    # The flaky receiver got the message on the retry.
    assert [b["event"] for b in receiver.bodies("/flaky")] == ["succeeded", "succeeded"]


def test_a_literal_url_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError) as err:
        Notifier.model_validate({"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/secret"})
    text = str(err.value)
    assert "url" in text and "credential" in text and "url_env" in text and "secret" in text
    with pytest.raises(ValidationError, match="exactly one"):
        Notifier.model_validate({"kind": "webhook"})


def test_slack_payload_reads_like_a_message() -> None:
    message = NotifyMessage(
        event=NotifyEvent.FAILED,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        workflow_id="deploy/prod/shop/web",
        strategy="rolling",
        cluster="prod",
        namespace="shop",
        app="web",
        version="2.0.0",
        previous_version="1.0.0",
        phase="Failed",
        reason="rollback failed",
    )
    body = SlackSender().payload(Notifier(kind="slack", url_env="DEPLOYFLOW_CRED_X"), message)
    assert body["text"] == "rolling deployment of *web* 2.0.0 in prod/shop failed: rollback failed"
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert fields["Previous"] == "1.0.0" and fields["Workflow"] == "deploy/prod/shop/web"
    assert json.dumps(body)  # plain JSON, ready to post


def test_rolling_spec_still_reads_notify_as_notifications() -> None:
    # Specs and recorded runs from before the field took the other strategies' name keep validating.
    from deployflow.spec import RollingRequest

    base = {"strategy": "rolling", "target": {"cluster": "sim", "namespace": "shop", "app": "web"},
            "image": "web:2.0"}
    hook = [{"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_HOOK_URL"}]
    old = RollingRequest.model_validate({**base, "notify": hook})
    new = RollingRequest.model_validate({**base, "notifications": hook})
    assert old.notifications == new.notifications and old.notifications[0].url_env == "DEPLOYFLOW_CRED_TEST_HOOK_URL"
    assert "notifications" in old.model_dump() and "notify" not in old.model_dump()
