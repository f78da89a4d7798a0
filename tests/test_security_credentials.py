"""Credential sources: a spec may only name credential variables and labelled Secrets. Each way a spec could send
the worker's environment or a namespace's Secrets to a URL of its choosing is tried, and must fail closed."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.analysis import MeasureInput, measure
from activities.hooks import ConfirmInput, ask_confirmation
from activities.notify import NotificationInput, send_notification
from deployflow import kube
from deployflow.security import credentials
from deployflow.security.credentials import (
    ENV_PREFIX_SETTING,
    SECRET_LABEL_SETTING,
    check_env_name,
)
from deployflow.security.outbound import ALLOWED_HOSTS_SETTING
from deployflow.sim.server import Simulator
from deployflow.spec.analysis import Metric
from deployflow.spec.common import Target
from deployflow.spec.hooks import ConfirmHook, HookContext, HookPoint, Hooks
from deployflow.spec.notify import Notifier, NotifyEvent, NotifyMessage
from tests.rolling_support import create_deployment, failure_message, rolling_worker, start, status_of, wait_ready
from tests.rolling_support import request as rolling_request
from tests.security_support import Server, serve

CLUSTER = "sim"
LABEL = {"deployflow.io/credential": "true"}
STOLEN = "temporal-api-key-that-must-stay-home"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1")
    with serve() as s:
        yield s


@pytest.fixture
def as_in_a_workflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Specs read inside a workflow skip the prefix rule (it depends on the worker's settings): the path by which
    a spec started from any Temporal client reaches the activities unchecked."""
    monkeypatch.setattr(credentials, "_in_workflow", lambda: True)


def create_secret(namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> None:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    kube.create(CLUSTER, kube.core_path(namespace, "secrets"),
                   {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": encoded})


def web_metric(url: str, value_from: dict[str, Any]) -> Metric:
    return Metric.model_validate({
        "name": "error_rate",
        "provider": {"kind": "web", "url": url, "json_path": "$.rate",
                     "headers": [{"name": "Authorization", "value_from": value_from}]},
    })


def message(namespace: str) -> NotifyMessage:
    return NotifyMessage(event=NotifyEvent.FAILED, time=datetime(2026, 1, 1, tzinfo=UTC), workflow_id="w",
                         strategy="rolling", cluster=CLUSTER, namespace=namespace, app="web", version="2")


# --- the rule, when the spec is read ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["TEMPORAL_API_KEY", "temporal_address", "TEMPORAL_TLS_CLIENT_KEY_PATH", "HOME",
                                  "AWS_SECRET_ACCESS_KEY", "SLACK_WEBHOOK_URL", "DEPLOYFLOW_CRED_", "DEPLOYFLOW_X"])
def test_names_outside_the_credential_prefix_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="credentials come only from environment variables starting with"):
        check_env_name(name)


def test_the_configured_prefix_is_honoured_but_temporal_settings_never(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_env_name("DEPLOYFLOW_CRED_SLACK_WEBHOOK_URL") == "DEPLOYFLOW_CRED_SLACK_WEBHOOK_URL"
    monkeypatch.setenv(ENV_PREFIX_SETTING, "ACME_")
    assert check_env_name("ACME_METRICS_TOKEN") == "ACME_METRICS_TOKEN"
    with pytest.raises(ValueError, match="starting with ACME_"):
        check_env_name("DEPLOYFLOW_CRED_X", runtime=True)  # the worker allows only its own prefix
    monkeypatch.setenv(ENV_PREFIX_SETTING, "T")
    with pytest.raises(ValueError, match="never from TEMPORAL_"):
        check_env_name("TEMPORAL_API_KEY", runtime=True)
    monkeypatch.setenv(ENV_PREFIX_SETTING, "")  # an empty prefix would allow everything: the default applies
    with pytest.raises(ValueError, match="starting with DEPLOYFLOW_CRED_"):
        check_env_name("HOME", runtime=True)


def test_every_credential_field_of_the_spec_names_itself_and_the_rule() -> None:
    with pytest.raises(ValidationError) as err:
        web_metric("http://metrics.example/x", {"env": "TEMPORAL_API_KEY"})
    assert "provider.web.headers.0.value_from.env" in str(err.value) and "DEPLOYFLOW_CRED_" in str(err.value)
    with pytest.raises(ValidationError) as err:
        Notifier.model_validate({"kind": "slack", "url_env": "SLACK_WEBHOOK_URL"})
    assert "url_env" in str(err.value) and "DEPLOYFLOW_CRED_" in str(err.value)
    with pytest.raises(ValidationError) as err:
        Hooks.model_validate({"post_deploy": [{"kind": "confirm", "name": "qa", "url_env": "HOME"}]})
    assert "post_deploy.0.confirm.url_env" in str(err.value) and "DEPLOYFLOW_CRED_" in str(err.value)


@pytest.mark.usefixtures("as_in_a_workflow")
def test_inside_a_workflow_temporal_settings_are_still_refused() -> None:
    assert Notifier.model_validate({"kind": "slack", "url_env": "HOME"}).url_env == "HOME"
    with pytest.raises(ValidationError, match="TEMPORAL_API_KEY is refused"):
        Notifier.model_validate({"kind": "slack", "url_env": "TEMPORAL_API_KEY"})


# --- exfiltration attempts at run time: each credential path -----------------------------------------------------


async def test_analysis_header_from_a_worker_variable_outside_the_prefix(
    server: Server, monkeypatch: pytest.MonkeyPatch, as_in_a_workflow: None
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", STOLEN)
    metric = web_metric(f"{server.url}/collect", {"env": "AWS_SECRET_ACCESS_KEY"})
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(measure, MeasureInput(target=Target(cluster=CLUSTER, namespace="shop",
                                                                            app="web"), metric=metric, version="2"))
    assert err.value.type == "InvalidSpec" and err.value.non_retryable
    assert "headers[0] (Authorization).value_from.env" in err.value.message
    assert "starting with DEPLOYFLOW_CRED_" in err.value.message and STOLEN not in err.value.message
    assert server.seen == []


async def test_analysis_header_from_an_unlabelled_secret(server: Server, namespace: str) -> None:
    create_secret(namespace, "db", {"password": STOLEN})
    metric = web_metric(f"{server.url}/collect", {"secret": {"name": "db", "key": "password"}})
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(measure, MeasureInput(target=Target(cluster=CLUSTER, namespace=namespace,
                                                                            app="web"), metric=metric, version="2"))
    assert err.value.type == "InvalidSpec"
    assert "headers[0] (Authorization).value_from.secret" in err.value.message
    assert "labelled deployflow.io/credential=true" in err.value.message and STOLEN not in err.value.message
    assert server.seen == []


async def test_notifier_url_from_a_worker_variable_outside_the_prefix(
    server: Server, monkeypatch: pytest.MonkeyPatch, as_in_a_workflow: None
) -> None:
    monkeypatch.setenv("INTERNAL_URL", f"{server.url}/{STOLEN}")
    notifier = Notifier.model_validate({"kind": "webhook", "url_env": "INTERNAL_URL"})
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(send_notification, NotificationInput(notifier=notifier,
                                                                             message=message("shop")))
    assert err.value.type == "NotifierMisconfigured" and err.value.non_retryable
    assert "url_env: INTERNAL_URL is refused" in err.value.message and STOLEN not in err.value.message
    assert server.seen == []


async def test_notifier_url_from_an_unlabelled_secret(server: Server, namespace: str) -> None:
    create_secret(namespace, "chat", {"url": f"{server.url}/{STOLEN}"})
    notifier = Notifier.model_validate({"kind": "webhook", "secret": {"name": "chat", "key": "url"}})
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(send_notification, NotificationInput(notifier=notifier,
                                                                             message=message(namespace)))
    assert err.value.type == "NotifierMisconfigured"
    assert f"Secret {namespace}/chat is refused" in err.value.message and STOLEN not in err.value.message
    assert server.seen == []


async def test_confirm_hook_url_from_a_worker_variable_outside_the_prefix(
    server: Server, monkeypatch: pytest.MonkeyPatch, as_in_a_workflow: None
) -> None:
    monkeypatch.setenv("KUBE_TOKEN_URL", f"{server.url}/{STOLEN}")
    hook = ConfirmHook(name="qa", url_env="KUBE_TOKEN_URL")
    request = ConfirmInput(target=Target(cluster=CLUSTER, namespace="shop", app="web"), hook=hook,
                           context=HookContext(point=HookPoint.POST_DEPLOY, workflow_id="w", run_id="r"))
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(ask_confirmation, request)
    assert err.value.type == "HookMisconfigured" and "url_env: KUBE_TOKEN_URL is refused" in err.value.message
    assert STOLEN not in err.value.message and server.seen == []


# --- what the operator set aside works, and stays masked ---------------------------------------------------------


async def test_labelled_secrets_and_prefixed_variables_are_used_and_masked(
    server: Server, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "Bearer labelled-secret-token-123"
    create_secret(namespace, "metrics", {"token": token}, labels={"team.example/creds": "metrics"})
    monkeypatch.setenv(SECRET_LABEL_SETTING, "team.example/creds=metrics")
    server.json("/collect", 500, {"echo": token})
    metric = web_metric(f"{server.url}/collect", {"secret": {"name": "metrics", "key": "token"}})
    target = Target(cluster=CLUSTER, namespace=namespace, app="web")
    judged = await ActivityEnvironment().run(measure, MeasureInput(target=target, metric=metric, version="2"))
    assert server.seen[-1].headers["Authorization"] == token
    assert judged.verdict == "Error" and "answered 500" in judged.message

    monkeypatch.setenv("DEPLOYFLOW_CRED_HOOK_URL", f"{server.url}/confirm-path-token-456")
    server.json("/confirm-path-token-456", 409, {"detail": "not yet for /confirm-path-token-456"})
    hook = ConfirmHook(name="qa", url_env="DEPLOYFLOW_CRED_HOOK_URL")
    request = ConfirmInput(target=target, hook=hook,
                           context=HookContext(point=HookPoint.POST_DEPLOY, workflow_id="w", run_id="r"))
    answer = await ActivityEnvironment().run(ask_confirmation, request)
    assert not answer.confirmed and answer.detail == 'answered 409: {"detail":"not yet for ***"}'


# --- a whole failing release that used credentials leaves none of them anywhere -------------------------------------

ENV_TOKEN = "env-token-0f9e8d7c6b5a"
SECRET_TOKEN = "secret-token-1a2b3c4d5e6f"
NOTIFY_TOKEN = "notify-path-token-9z8y7x6w"


def readable(history_json: str) -> str:
    """The history as a person (or a script) reading it would see it: the JSON plus every payload decoded."""
    texts = [history_json]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, str):
                with contextlib.suppress(ValueError, binascii.Error):
                    texts.append(base64.b64decode(data).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return "\n".join(texts)


def leaks(text: str) -> list[str]:
    forms = [t for token in (ENV_TOKEN, SECRET_TOKEN, NOTIFY_TOKEN) for t in (token, b64(token))]
    return [f for f in forms if f in text]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_a_failed_release_keeps_every_credential_out_of_history_status_notifications_and_logs(
    time_skipping_env: WorkflowEnvironment, sim: Simulator, namespace: str, server: Server,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_METRICS_TOKEN", f"Bearer {ENV_TOKEN}")
    monkeypatch.setenv("DEPLOYFLOW_CRED_TEST_NOTIFY_URL", f"{server.url}/notify/{NOTIFY_TOKEN}")
    create_secret(namespace, "metrics", {"token": SECRET_TOKEN}, labels=LABEL)
    # A Prometheus that refuses the query and quotes back every header it got; a receiver that refuses the
    # notification and quotes back its own URL.
    server.echo_headers("/api/v1/query", 400)
    server.routes[f"/notify/{NOTIFY_TOKEN}"] = lambda path, _h: (500, {}, f"no route for {path}".encode())
    create_deployment(namespace, replicas=2)
    await wait_ready(sim, namespace, 2)
    analysis = {"metrics": [{
        "name": "error_rate",
        "provider": {"kind": "prometheus", "address": server.url, "query": "up", "headers": [
            {"name": "Authorization", "value_from": {"env": "DEPLOYFLOW_CRED_TEST_METRICS_TOKEN"}},
            {"name": "X-Scope-Token", "value_from": {"secret": {"name": "metrics", "key": "token"}}},
        ]},
        "failure_condition": "result > 0.05",
        "consecutive_error_limit": 0,
    }]}
    notify = [{"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_TEST_NOTIFY_URL", "events": ["started", "failed"]}]
    req = rolling_request(namespace, batch_size=1, analysis=analysis, notifications=notify)
    async with rolling_worker(time_skipping_env) as queue:
        handle = await start(time_skipping_env, queue, req)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        status = await status_of(handle)
    history = readable((await handle.fetch_history()).to_json())

    # The credentials were used: the headers and the notification went out, and both remotes quoted them back.
    queries = [s for s in server.seen if s.path.startswith("/api/v1/query")]
    assert queries and queries[0].headers["Authorization"] == f"Bearer {ENV_TOKEN}"
    assert queries[0].headers["X-Scope-Token"] == SECRET_TOKEN
    notifications = [s for s in server.seen if s.path == f"/notify/{NOTIFY_TOKEN}"]
    assert notifications
    # ...and what came back was masked, not dropped: the failure still says what happened.
    assert "Prometheus query failed (400)" in failure_message(failed.value)
    assert any("***" in m.message for m in status.measurements), status.measurements
    assert any("not delivered" in e.message and "***" in e.message for e in status.events), status.events
    assert "not delivered" in caplog.text and f"HTTP Request: POST {server.url} " in caplog.text

    assert leaks(history) == []
    assert leaks(status.model_dump_json()) == []
    assert leaks(failure_message(failed.value)) == []
    assert leaks("\n".join(s.body.decode() for s in notifications)) == []
    assert leaks(caplog.text) == []
