"""What every notification sender shares: finding the URL and posting JSON to it."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, Protocol

import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deployflow.kube import api_client
from deployflow.spec.notify import Notifier, NotifyMessage


class NotifyConfigError(Exception):
    """The notifier cannot work as configured (missing variable or Secret): retrying will not help."""


class NotifyDeliveryError(Exception):
    """The receiver did not take the message (unreachable, or a non-2xx answer): worth retrying."""


class Sender(Protocol):
    kind: str

    def payload(self, notifier: Notifier, message: NotifyMessage) -> dict[str, Any]: ...


def resolve_url(notifier: Notifier, cluster: str, namespace: str) -> str:
    """The webhook URL, from the worker's environment or a Secret; never from workflow input."""
    if notifier.url_env:
        url = os.environ.get(notifier.url_env, "").strip()
        if not url:
            raise NotifyConfigError(f"environment variable {notifier.url_env} of the worker is not set")
        return url
    assert notifier.secret is not None
    ref = notifier.secret
    try:
        secret = client.CoreV1Api(api_client(cluster)).read_namespaced_secret(ref.name, namespace)
    except ApiException as err:
        if err.status == 404:
            raise NotifyConfigError(f"Secret {namespace}/{ref.name} does not exist") from None
        raise NotifyDeliveryError(f"reading Secret {namespace}/{ref.name}: {err.status} {err.reason}") from None
    raw = (secret.data or {}).get(ref.key)
    if raw is None:
        raise NotifyConfigError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
    try:
        return base64.b64decode(raw).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise NotifyConfigError(f"Secret {namespace}/{ref.name} key {ref.key!r} is not a UTF-8 URL") from None


async def post_json(url: str, body: dict[str, Any], timeout: float = 10.0) -> int:
    """POSTs the body; returns the status. Errors never quote the URL, which is a credential."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.post(url, json=body)
    except httpx.HTTPError as err:
        raise NotifyDeliveryError(f"receiver unreachable: {type(err).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise NotifyDeliveryError(f"receiver answered {response.status_code}: {response.text[:200]}")
    return response.status_code


def sender_for(kind: str) -> Sender:
    from deployflow.notify.slack import SlackSender
    from deployflow.notify.webhook import WebhookSender

    senders: dict[str, Sender] = {"slack": SlackSender(), "webhook": WebhookSender()}
    try:
        return senders[kind]
    except KeyError:
        raise NotifyConfigError(f"unknown notifier kind {kind!r}; known: {', '.join(sorted(senders))}") from None
