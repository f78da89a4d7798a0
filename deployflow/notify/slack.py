"""Slack incoming webhooks (and the many chat tools that accept the same JSON: Mattermost, Rocket.Chat)."""

from __future__ import annotations

from typing import Any

from deployflow.spec.notify import Notifier, NotifyEvent, NotifyMessage

_COLOURS = {
    NotifyEvent.STARTED: "#439FE0",
    NotifyEvent.PAUSED: "#DAA038",
    NotifyEvent.RESUMED: "#439FE0",
    NotifyEvent.WAITING_APPROVAL: "#DAA038",
    NotifyEvent.PROMOTED: "#2EB886",
    NotifyEvent.ROLLED_BACK: "#DAA038",
    NotifyEvent.SUCCEEDED: "#2EB886",
    NotifyEvent.FAILED: "#A30200",
}

_VERBS = {
    NotifyEvent.STARTED: "started",
    NotifyEvent.PAUSED: "is paused",
    NotifyEvent.RESUMED: "resumed",
    NotifyEvent.WAITING_APPROVAL: "is waiting for approval",
    NotifyEvent.PROMOTED: "was promoted",
    NotifyEvent.ROLLED_BACK: "was rolled back",
    NotifyEvent.SUCCEEDED: "succeeded",
    NotifyEvent.FAILED: "failed",
}


class SlackSender:
    kind = "slack"

    def payload(self, notifier: Notifier, message: NotifyMessage) -> dict[str, Any]:
        text = (
            f"{message.strategy} deployment of *{message.app}* {message.version} "
            f"in {message.cluster}/{message.namespace} {_VERBS[message.event]}"
        )
        if message.reason:
            text += f": {message.reason}"
        traffic = message.details.get("traffic")
        if traffic:
            # Requested and actual split together: without a mesh a 5% step of 4 pods really sends 20%.
            text += f"\ntraffic: {traffic}"
        fields = [
            {"title": "Version", "value": message.version, "short": True},
            {"title": "Previous", "value": message.previous_version or "-", "short": True},
            {"title": "Phase", "value": message.phase or "-", "short": True},
            {"title": "Workflow", "value": message.workflow_id, "short": True},
        ]
        details = sorted((k, v) for k, v in message.details.items() if k != "traffic")  # in the text above
        fields += [{"title": k, "value": v, "short": True} for k, v in details]
        body: dict[str, Any] = {
            "text": text,
            "attachments": [
                {
                    "color": _COLOURS[message.event],
                    "fallback": text,
                    "fields": fields,
                    "ts": int(message.time.timestamp()),
                }
            ],
        }
        if notifier.channel:
            body["channel"] = notifier.channel
        if notifier.username:
            body["username"] = notifier.username
        return body
