"""The activity that sends one notification to one receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deployflow.errors import ErrorType
from deployflow.notify import NotifyConfigError, NotifyDeliveryError, resolve_url, sender_for
from deployflow.notify.base import post_json
from deployflow.security.credentials import Credentials
from deployflow.security.redact import Redactor
from deployflow.spec.notify import Notifier, NotifyMessage

NOTIFIER_MISCONFIGURED: str = ErrorType.NOTIFIER_MISCONFIGURED


class NotificationInput(BaseModel):
    notifier: Notifier
    message: NotifyMessage


@activity.defn
async def send_notification(req: NotificationInput) -> None:
    msg = req.message
    redactor = Redactor()
    try:
        url = await asyncio.to_thread(resolve_url, req.notifier, msg.cluster, msg.namespace, Credentials(redactor))
        body = sender_for(req.notifier.kind).payload(req.notifier, msg)
        await post_json(url, body, redactor)
    except NotifyConfigError as err:
        raise ApplicationError(
            f"{req.notifier.describe()}: {redactor(str(err))}", type=NOTIFIER_MISCONFIGURED, non_retryable=True
        ) from None
    except NotifyDeliveryError as err:
        # Retryable: the workflow bounds the attempts and never fails a deployment over a notification.
        raise ApplicationError(
            f"{req.notifier.describe()}: {redactor(str(err))}", type="NotifyDeliveryFailed"
        ) from None


NOTIFY_ACTIVITIES: list[Callable[..., Any]] = [send_notification]
