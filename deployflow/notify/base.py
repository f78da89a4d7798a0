"""What every notification sender shares: finding the URL and posting JSON to it."""

from __future__ import annotations

import os
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from temporalio import activity

from deployflow.kube import KubeError
from deployflow.security import outbound
from deployflow.security.credentials import CredentialMissing, CredentialRefused, Credentials
from deployflow.security.outbound import OutboundRefused
from deployflow.security.redact import Redactor
from deployflow.spec.notify import Notifier, NotifyMessage

UI_URL_ENV = "DEPLOYFLOW_UI_URL"


def run_link(base: str, namespace: str, workflow_id: str, run_id: str) -> str:
    """The run's page in the Temporal UI (workflow IDs hold slashes, so they are escaped)."""
    return f"{base.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}/{run_id}"


def with_run_link(message: NotifyMessage) -> NotifyMessage:
    """The message with `details["link"]` to its run in the Temporal UI, when the worker knows the UI's address
    (DEPLOYFLOW_UI_URL) and runs the notification as an activity (which knows the run)."""
    base = os.environ.get(UI_URL_ENV, "").strip()
    if not base or not activity.in_activity():
        return message
    info = activity.info()
    namespace = info.workflow_namespace or "default"
    link = run_link(base, namespace, info.workflow_id or message.workflow_id, info.workflow_run_id or "")
    return message.model_copy(update={"details": {**message.details, "link": link}})


class NotifyConfigError(Exception):
    """The notifier cannot work as configured (a refused or missing credential, a refused URL): retrying will not
    help."""


class NotifyDeliveryError(Exception):
    """The receiver did not take the message (unreachable, or a non-2xx answer): worth retrying."""


class Sender(Protocol):
    kind: str

    def payload(self, notifier: Notifier, message: NotifyMessage) -> dict[str, Any]: ...


def resolve_url(notifier: Notifier, cluster: str, namespace: str, credentials: Credentials | None = None) -> str:
    """The webhook URL, from an allowed credential variable or a labelled Secret; never from workflow input."""
    credentials = credentials or Credentials()
    try:
        if notifier.url_env:
            return credentials.env(notifier.url_env, "url_env")
        assert notifier.secret is not None
        ref = notifier.secret
        return credentials.secret(cluster, namespace, ref.name, ref.key, "secret")
    except (CredentialRefused, CredentialMissing) as err:
        raise NotifyConfigError(str(err)) from None
    except KubeError as err:
        raise NotifyDeliveryError(f"reading the Secret failed: {err.status}") from None


async def post_json(url: str, body: dict[str, Any], redactor: Redactor, timeout: float = 10.0) -> int:
    """POSTs the body; returns the status. Errors never quote the URL, which is a credential, and quote the
    receiver's answer capped and masked."""
    try:
        response = await outbound.post_json(url, body, timeout)
    except OutboundRefused as err:
        raise NotifyConfigError(redactor(str(err))) from None
    except httpx.HTTPError as err:
        raise NotifyDeliveryError(f"receiver unreachable: {type(err).__name__}") from None
    if not 200 <= response.status_code < 300:
        answer = redactor.excerpt(response.content)
        raise NotifyDeliveryError(f"receiver answered {response.status_code}" + (f": {answer}" if answer else ""))
    return response.status_code


def sender_for(kind: str) -> Sender:
    from deployflow.notify.slack import SlackSender
    from deployflow.notify.webhook import WebhookSender

    senders: dict[str, Sender] = {"slack": SlackSender(), "webhook": WebhookSender()}
    try:
        return senders[kind]
    except KeyError:
        raise NotifyConfigError(f"unknown notifier kind {kind!r}; known: {', '.join(sorted(senders))}") from None
