"""Notifications: tell people what a deployment is doing (Slack, or any system taking a JSON webhook).

A webhook URL is a credential (anyone holding a Slack incoming-webhook URL can post to the channel) and workflow
input is stored in Temporal's history and shown in its UI, so the URL never appears in the spec: it is read by the
worker from a credential variable of its environment (``url_env``, named ``DEPLOYFLOW_CRED_*``) or from a Kubernetes
Secret in the target namespace labelled ``deployflow.io/credential=true`` (``secret``); see
deployflow.security.credentials.

A notification that cannot be delivered is retried a few times and then logged; it never fails a deployment.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deployflow.security.credentials import check_env_name
from deployflow.spec.common import StrictModel


class NotifyEvent(StrEnum):
    STARTED = "started"
    PAUSED = "paused"
    RESUMED = "resumed"
    WAITING_APPROVAL = "waiting-approval"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SecretKeyRef(StrictModel):
    name: str = Field(min_length=1, description="Secret in the target namespace")
    key: str = Field(min_length=1, description="key of the Secret's data holding the URL")


class Notifier(StrictModel):
    kind: Literal["slack", "webhook"] = Field(
        description="slack: a Slack-compatible incoming webhook; webhook: a JSON POST of the event"
    )
    url_env: str | None = Field(
        default=None, description="environment variable of the worker holding the URL; must start with DEPLOYFLOW_CRED_"
    )
    secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret (in the target namespace, labelled deployflow.io/credential=true) holding the URL",
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NotifyEvent), description="events sent; default all"
    )
    channel: str | None = Field(default=None, description="Slack channel override, e.g. #deploys")
    username: str | None = Field(default=None, description="Slack sender name override")
    url: Any = Field(default=None, exclude=True, description="not accepted: see url_env and secret")

    @field_validator("url")
    @classmethod
    def _no_literal_url(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "a webhook URL is a credential and workflow input is kept in Temporal's history for anyone to read: "
                "put it in an environment variable of the worker and set 'url_env', or in a Kubernetes Secret and "
                "set 'secret' (name, key)"
            )
        return None

    @field_validator("url_env")
    @classmethod
    def _valid_env(cls, value: str | None) -> str | None:
        return None if value is None else check_env_name(value)

    @model_validator(mode="after")
    def _one_source(self) -> Notifier:
        if (self.url_env is None) == (self.secret is None):
            raise ValueError(
                "set exactly one of 'url_env' (e.g. DEPLOYFLOW_CRED_SLACK_WEBHOOK_URL) or 'secret' (name, key)"
            )
        return self

    def wants(self, event: NotifyEvent | str) -> bool:
        return NotifyEvent(event) in self.events

    def describe(self) -> str:
        where = f"${self.url_env}" if self.url_env else f"secret {self.secret.name}/{self.secret.key}"  # type: ignore[union-attr]
        return f"{self.kind} ({where})"


class NotifyMessage(StrictModel):
    """One event of one deployment, as sent to every notifier that wants it."""

    event: NotifyEvent
    time: datetime
    workflow_id: str
    strategy: str
    cluster: str
    namespace: str
    app: str
    version: str
    previous_version: str | None = None
    phase: str = ""
    reason: str = ""
    details: dict[str, str] = Field(default_factory=dict)
