"""What every channel is: a configuration schema (which fields are secret) and ``send(message)``.

After Redash's destinations: each channel kind is one small module that declares its fields and
registers itself; ``send`` raises DeliveryError with ``retryable`` saying whether another attempt
can succeed (a timeout or a 503: yes; a 404 or a refused recipient: no).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

EMAIL = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]{2,}$|^[^@\s<>,;\"]+@localhost$")


class FieldError(ValueError):
    """A channel setting is wrong: ``field`` names it, ``reason`` says why."""

    def __init__(self, field_name: str, reason: str):
        self.field, self.reason = field_name, reason
        super().__init__(f"{field_name}: {reason}")


class DeliveryError(Exception):
    """A send failed. ``retryable``: another attempt may work; ``code``: HTTP status or SMTP code."""

    def __init__(self, message: str, *, retryable: bool, code: int | None = None):
        super().__init__(message)
        self.retryable, self.code = retryable, code


@dataclass(frozen=True)
class Field:
    key: str                      # as in integrations.json and the settings column (camelCase)
    label: str
    kind: str = "text"            # text, url, int, choice, emails, email, path
    secret: bool = False          # encrypted at rest, never shown again, changing it needs step-up
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    help: str = ""

    def clean(self, value: Any) -> Any:
        """The value checked and normalised (None when empty and not required)."""
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "" or value == []:
            if self.required:
                raise FieldError(self.key, "is required")
            return self.default
        if self.kind == "int":
            if isinstance(value, bool):
                raise FieldError(self.key, f"must be a whole number, got {value!r}")
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise FieldError(self.key, f"must be a whole number, got {value!r}") from None
            if ((self.minimum is not None and number < self.minimum)
                    or (self.maximum is not None and number > self.maximum)):
                raise FieldError(self.key, f"must be between {self.minimum} and {self.maximum}, got {number}")
            return number
        if self.kind == "emails":
            items = value if isinstance(value, list) else re.split(r"[,\s;]+", str(value))
            addresses = [str(a).strip() for a in items if str(a).strip()]
            bad = [a for a in addresses if not EMAIL.match(a)]
            if bad:
                raise FieldError(self.key, f"not an e-mail address: {bad[0]!r}")
            if not addresses and self.required:
                raise FieldError(self.key, "is required")
            if len(addresses) > 50:
                raise FieldError(self.key, "at most 50 addresses")
            return addresses
        if not isinstance(value, str):
            raise FieldError(self.key, f"must be a string, got {value!r}")
        if len(value) > 2000 or "\x00" in value or (self.kind != "text" and any(c in value for c in "\r\n")):
            raise FieldError(self.key, "too long or contains control characters")
        if self.kind == "email" and not EMAIL.match(value):
            raise FieldError(self.key, f"not an e-mail address: {value!r}")
        if self.kind == "choice" and value not in self.choices:
            raise FieldError(self.key, f"must be one of {', '.join(self.choices)}, got {value!r}")
        if self.kind == "url":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FieldError(self.key, f"must be an http(s) URL, got {_redact_url(value)!r}")
        if self.kind == "path" and not value.startswith("/"):
            raise FieldError(self.key, f"must be an absolute path, got {value!r}")
        if self.kind == "text" and any(c in value for c in "\r\n"):
            raise FieldError(self.key, "must be a single line")
        return value


def _redact_url(value: str) -> str:
    return value if len(value) < 12 else value[:8] + "…"


@dataclass
class Message:
    """One notification for one channel: the documented JSON payload and its idempotency key."""

    payload: dict[str, Any]
    idempotency_key: str
    kind: str = "alerts"          # alerts or test


@dataclass
class SendResult:
    code: int | None = None       # HTTP status or SMTP reply code
    detail: str = ""


@dataclass
class Channel:
    """A configured channel: its settings (not secret) and secrets, decrypted for sending."""

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    fields: ClassVar[tuple[Field, ...]] = ()

    settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def validate(cls, raw: Mapping[str, Any], *, existing_secrets: Mapping[str, Any] | None = None,
                 partial_secrets: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(settings, secrets)`` from raw values; FieldError names the first wrong field.

        With ``partial_secrets`` an empty secret keeps the one in ``existing_secrets`` (a form
        leaves secret inputs blank to mean "unchanged").
        """
        known = {f.key for f in cls.fields}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise FieldError(unknown[0], f"unknown setting for a {cls.kind} channel "
                                         f"(known: {', '.join(sorted(known))})")
        settings: dict[str, Any] = {}
        secrets: dict[str, Any] = {}
        for f in cls.fields:
            value = raw.get(f.key)
            if f.secret and partial_secrets and (value is None or value == "") and existing_secrets:
                if existing_secrets.get(f.key) not in (None, ""):
                    secrets[f.key] = existing_secrets[f.key]
                    continue
            cleaned = f.clean(value)
            if cleaned is None:
                continue
            (secrets if f.secret else settings)[f.key] = cleaned
        cls.check(settings, secrets)
        return settings, secrets

    @classmethod
    def check(cls, settings: dict[str, Any], secrets: dict[str, Any]) -> None:
        """Checks across fields (a subclass adds its own)."""

    def send(self, message: Message) -> SendResult:
        raise NotImplementedError

    def describe(self) -> str:
        """Where it sends, without secrets (for lists and logs)."""
        return self.kind


REGISTRY: dict[str, type[Channel]] = {}


def register(cls: type[Channel]) -> type[Channel]:
    REGISTRY[cls.kind] = cls
    return cls


def channel_class(kind: str) -> type[Channel]:
    try:
        return REGISTRY[kind]
    except KeyError:
        raise FieldError("type", f"unknown channel type {kind!r} (known: {', '.join(sorted(REGISTRY))})") from None
