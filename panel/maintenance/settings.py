"""Maintenance settings: from the panel's config mapping, else the ``POOLWARDEN_*`` environment.

* ``POOLWARDEN_MAINTENANCE_CONFIG`` (``MAINTENANCE_CONFIG``): the schedules file to provision
  (``config/maintenance.json``); unset: nothing is provisioned.
* ``POOLWARDEN_MAINTENANCE_WORKER_GRACE_SECONDS`` (default 120): a queued job whose host has had no
  live maintenance worker for this long is marked expired and taken off the queue.
* ``POOLWARDEN_MAINTENANCE_QUEUE_TTL_SECONDS`` (default 3600): how long a job may wait in the queue
  at most, even with a worker (a busy one); the signed envelope expires at the same time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from panel.config import ConfigError

DEFAULT_WORKER_GRACE_SECONDS = 120
DEFAULT_QUEUE_TTL_SECONDS = 3600
RESULT_TTL_SECONDS = 7 * 86400  # RQ keeps results and failures this long; the table keeps them for good


@dataclass(frozen=True)
class Settings:
    config_path: str | None = None
    worker_grace_seconds: int = DEFAULT_WORKER_GRACE_SECONDS
    queue_ttl_seconds: int = DEFAULT_QUEUE_TTL_SECONDS

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
                    ) -> Settings:
        config = config or {}
        env = os.environ if environ is None else environ

        def raw(key: str) -> Any:
            value = config.get(f"MAINTENANCE_{key}")
            return value if value not in (None, "") else env.get(f"POOLWARDEN_MAINTENANCE_{key}", "").strip() or None

        return cls(config_path=str(raw("CONFIG")) if raw("CONFIG") else None,
                   worker_grace_seconds=_seconds(raw("WORKER_GRACE_SECONDS"), "WORKER_GRACE_SECONDS",
                                                 DEFAULT_WORKER_GRACE_SECONDS, minimum=5),
                   queue_ttl_seconds=_seconds(raw("QUEUE_TTL_SECONDS"), "QUEUE_TTL_SECONDS",
                                              DEFAULT_QUEUE_TTL_SECONDS, minimum=60))


def _seconds(value: Any, key: str, default: int, *, minimum: int) -> int:
    if value is None:
        return default
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"POOLWARDEN_MAINTENANCE_{key} must be a whole number of seconds, not {value!r}") from None
    if seconds < minimum:
        raise ConfigError(f"POOLWARDEN_MAINTENANCE_{key} must be at least {minimum} seconds, not {seconds}")
    return seconds
