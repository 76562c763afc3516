"""Notification settings: from the panel's config mapping, else the ``POOLWARDEN_*`` environment.

* ``POOLWARDEN_INTEGRATIONS_CONFIG`` (``INTEGRATIONS_CONFIG``): the channels and routes file to
  provision (``config/integrations.json``); unset: channels and routes live in the database only.
* ``POOLWARDEN_EXTERNAL_URL`` (``EXTERNAL_URL``): the panel's address as operators reach it
  (``https://panel.example.org``), for links in notifications; unset: no links.
* ``POOLWARDEN_NOTIFY_RETRY_INTERVALS`` (``NOTIFY_RETRY_INTERVALS``): seconds between delivery
  attempts, e.g. ``10,30,90,270,810`` (the default): five retries after the first attempt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from panel.config import ConfigError
from panel.notify.jobs import DEFAULT_RETRY_INTERVALS, parse_intervals


@dataclass(frozen=True)
class Settings:
    integrations_config: str | None = None
    external_url: str | None = None
    retry_intervals: tuple[int, ...] = DEFAULT_RETRY_INTERVALS

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
                    ) -> Settings:
        config = config or {}
        env = os.environ if environ is None else environ

        def raw(key: str) -> str | None:
            value = config.get(key)
            if value not in (None, ""):
                return str(value).strip()
            return env.get(f"POOLWARDEN_{key}", "").strip() or None

        external = raw("EXTERNAL_URL")
        if external:
            parts = urlsplit(external)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"POOLWARDEN_EXTERNAL_URL must be the panel's http(s) address, not {external!r}")
            external = external.rstrip("/")
        intervals = DEFAULT_RETRY_INTERVALS
        if raw("NOTIFY_RETRY_INTERVALS"):
            try:
                intervals = parse_intervals(raw("NOTIFY_RETRY_INTERVALS"))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return cls(integrations_config=raw("INTEGRATIONS_CONFIG"), external_url=external, retry_intervals=intervals)
