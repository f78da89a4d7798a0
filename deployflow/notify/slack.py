"""Slack incoming webhooks (and the many chat tools that accept the same JSON: Mattermost, Rocket.Chat)."""

from __future__ import annotations

from typing import Any

from deployflow.notify.base import with_run_link
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


_IN_TEXT = frozenset({"traffic", "outcome", "duration", "rollback_reason", "measurement", "link"})


def _outcome_text(details: dict[str, str]) -> str:
    """How the release ended, for the final events: outcome and duration, for a rollback its reason class and the
    measurement that decided it, and the link to the run."""
    lines = []
    if "outcome" in details:
        took = f" after {details['duration']}" if "duration" in details else ""
        lines.append(f"outcome: {details['outcome']}{took}")
    if "rollback_reason" in details:
        lines.append(f"rollback reason: {details['rollback_reason']}")
    if "measurement" in details:
        lines.append(f"measurement: {details['measurement']}")
    if "link" in details:
        lines.append(f"<{details['link']}|open the run in the Temporal UI>")
    return "".join(f"\n{line}" for line in lines)


class SlackSender:
    kind = "slack"

    def payload(self, notifier: Notifier, message: NotifyMessage) -> dict[str, Any]:
        message = with_run_link(message)
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
        text += _outcome_text(message.details)
        fields = [
            {"title": "Version", "value": message.version, "short": True},
            {"title": "Previous", "value": message.previous_version or "-", "short": True},
            {"title": "Phase", "value": message.phase or "-", "short": True},
            {"title": "Workflow", "value": message.workflow_id, "short": True},
        ]
        details = sorted((k, v) for k, v in message.details.items() if k not in _IN_TEXT)
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
