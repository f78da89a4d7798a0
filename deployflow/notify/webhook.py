"""A generic JSON webhook: the event as one flat JSON object, for any system that takes a POST."""

from __future__ import annotations

from typing import Any

from deployflow.notify.base import with_run_link
from deployflow.spec.notify import Notifier, NotifyMessage


class WebhookSender:
    kind = "webhook"

    def payload(self, notifier: Notifier, message: NotifyMessage) -> dict[str, Any]:
        return with_run_link(message).model_dump(mode="json")
