"""Notification channels. Each kind registers itself in ``REGISTRY`` when imported here."""

from panel.notify.channels import email, webhook  # noqa: F401 - registers the kinds
from panel.notify.channels.base import (
    REGISTRY,
    Channel,
    DeliveryError,
    Field,
    FieldError,
    Message,
    SendResult,
    channel_class,
)

__all__ = ["REGISTRY", "Channel", "DeliveryError", "Field", "FieldError", "Message", "SendResult", "channel_class"]
