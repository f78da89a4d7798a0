"""Notifications say how a release ended and link to its run in the Temporal UI."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from deployflow.notify.base import run_link
from deployflow.notify.slack import SlackSender
from deployflow.notify.webhook import WebhookSender
from deployflow.spec.control import AbortRequest
from deployflow.spec.notify import Notifier, NotifyEvent, NotifyMessage
from deployflow.status import Phase
from tests.bluegreen_support import bluegreen_request, running_worker, start, wait_for
from tests.receiver_support import serve_receiver

ROLLED_BACK = NotifyMessage(
    event=NotifyEvent.ROLLED_BACK,
    time=datetime(2026, 1, 1, tzinfo=UTC),
    workflow_id="deploy/prod/shop/cart",
    strategy="canary",
    cluster="prod",
    namespace="shop",
    app="cart",
    version="3.0",
    previous_version="2.0",
    phase="RolledBack",
    reason="rolled back at step 2 (10%): error_rate 0.18 > 0.02",
    details={"outcome": "rolled_back", "duration": "2m05s", "rollback_reason": "analysis",
             "measurement": "error_rate = 0.18 (condition < 0.02): Failed"},
)


def test_run_link_escapes_the_workflow_id() -> None:
    assert (run_link("http://localhost:8233/", "default", "deploy/sim/demo/shop", "r1")
            == "http://localhost:8233/namespaces/default/workflows/deploy%2Fsim%2Fdemo%2Fshop/r1")


def _in_activity(fn: Any, *args: Any) -> Any:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_namespace="prod-ns", workflow_id="deploy/prod/shop/cart",
                                   workflow_run_id="run-42")
    return env.run(fn, *args)


def test_slack_says_outcome_duration_reason_measurement_and_links_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYFLOW_UI_URL", "http://ui.example:8233")
    notifier = Notifier.model_validate({"kind": "slack", "url_env": "DEPLOYFLOW_CRED_SLACK"})
    body = _in_activity(SlackSender().payload, notifier, ROLLED_BACK)
    text = body["text"]
    assert "outcome: rolled_back after 2m05s" in text
    assert "rollback reason: analysis" in text
    assert "measurement: error_rate = 0.18 (condition < 0.02): Failed" in text
    assert "<http://ui.example:8233/namespaces/prod-ns/workflows/deploy%2Fprod%2Fshop%2Fcart/run-42|" in text
    titles = {f["title"] for f in body["attachments"][0]["fields"]}
    assert not titles & {"link", "outcome", "measurement"}  # said once, in the text


def test_webhook_carries_the_link_and_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYFLOW_UI_URL", "http://ui.example:8233")
    notifier = Notifier.model_validate({"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_HOOK"})
    body = _in_activity(WebhookSender().payload, notifier, ROLLED_BACK)
    assert body["details"]["link"].endswith("/namespaces/prod-ns/workflows/deploy%2Fprod%2Fshop%2Fcart/run-42")
    assert body["details"]["rollback_reason"] == "analysis"


def test_no_link_without_a_ui_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYFLOW_UI_URL", raising=False)
    notifier = Notifier.model_validate({"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_HOOK"})
    body = _in_activity(WebhookSender().payload, notifier, ROLLED_BACK)
    assert "link" not in body["details"]


async def test_a_rolled_back_release_notifies_its_outcome_and_links_its_run(
    dev_env: WorkflowEnvironment, kubeconfig: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = dev_env.client
    monkeypatch.setenv("DEPLOYFLOW_UI_URL", "http://localhost:8233")
    async with serve_receiver() as receiver:
        monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_HOOK_URL", f"{receiver.url}/hook")
        notify = [{"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_HOOK_URL", "events": ["rolled-back"]}]
        spec = bluegreen_request(namespace, "1.0", promotion={"mode": "manual", "timeout": "10m"}, standby="0s",
                                 notifications=notify)
        async with running_worker(client) as queue:
            handle = await start(client, queue, spec)
            await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the promotion gate")
            await handle.execute_update("abort", AbortRequest(reason="wrong build"))
            with pytest.raises(WorkflowFailureError):
                await handle.result()
        [body] = receiver.bodies("/hook")
    details = body["details"]
    assert body["event"] == "rolled-back"
    assert details["outcome"] == "rolled_back" and details["rollback_reason"] == "abort" and details["duration"]
    run_id = (await handle.describe()).run_id
    assert details["link"] == run_link("http://localhost:8233", client.namespace, handle.id, run_id)
