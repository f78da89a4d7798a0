"""Notification senders, chosen by the `kind` of a notifier in the spec."""

from deployflow.notify.base import NotifyConfigError, NotifyDeliveryError, Sender, resolve_url, sender_for

__all__ = ["NotifyConfigError", "NotifyDeliveryError", "Sender", "resolve_url", "sender_for"]
