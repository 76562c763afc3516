"""Panel settings, read from the environment.

Every panel process (web, engine, migrate) reads the same ``POOLWARDEN_*`` variables, so one
environment file serves them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEFAULT_STALE_AFTER_SECONDS = 60
MIN_SECRET_KEY_LENGTH = 16


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message tells the operator what to set."""


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Flask config keys from ``POOLWARDEN_*`` environment variables (missing ones are None)."""
    env = os.environ if environ is None else environ
    raw_stale = env.get("POOLWARDEN_STALE_AFTER_SECONDS", "").strip()
    try:
        stale_after = int(raw_stale) if raw_stale else DEFAULT_STALE_AFTER_SECONDS
    except ValueError:
        raise ConfigError(
            f"POOLWARDEN_STALE_AFTER_SECONDS must be a whole number of seconds, not {raw_stale!r}"
        ) from None
    if stale_after <= 0:
        raise ConfigError("POOLWARDEN_STALE_AFTER_SECONDS must be greater than 0")
    return {
        "DATABASE_URL": env.get("POOLWARDEN_DATABASE_URL") or None,
        "REDIS_URL": env.get("POOLWARDEN_REDIS_URL") or None,
        "SECRET_KEY": env.get("POOLWARDEN_SECRET_KEY") or None,
        "STALE_AFTER_SECONDS": stale_after,
    }


def require(config: Mapping[str, Any], *keys: str) -> None:
    """Raise ConfigError naming the environment variable of each missing setting."""
    missing = [f"POOLWARDEN_{key}" for key in keys if not config.get(key)]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set: export it (see README, 'Panel configuration')")


def check_secret_key(config: Mapping[str, Any]) -> None:
    """Outside tests the panel needs a real secret key: it signs sessions and CSRF tokens."""
    if config.get("TESTING"):
        return
    key = config.get("SECRET_KEY") or ""
    if len(key) < MIN_SECRET_KEY_LENGTH:
        problem = "is not set" if not key else f"is too short ({len(key)} characters)"
        raise ConfigError(
            f"POOLWARDEN_SECRET_KEY {problem}: the panel refuses to start without a random key of at least "
            f"{MIN_SECRET_KEY_LENGTH} characters. Generate one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
