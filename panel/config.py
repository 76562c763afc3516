"""Panel settings, read from the environment.

Every panel process (web, engine, migrate) reads the same ``POOLWARDEN_*`` variables, so one
environment file serves them all.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

DEFAULT_STALE_AFTER_SECONDS = 60
DEFAULT_SESSION_IDLE_MINUTES = 30
DEFAULT_SESSION_MAX_HOURS = 12
DEFAULT_RETENTION_RAW_DAYS = 7    # raw samples (15 s)
DEFAULT_RETENTION_1M_DAYS = 30    # 1-minute rollups
DEFAULT_RETENTION_1H_DAYS = 400   # 1-hour rollups
MIN_SECRET_KEY_LENGTH = 16
TRUE_WORDS = {"1", "true", "yes", "on"}


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
        # Secure cookies unless explicitly turned off for a plain-HTTP loopback demo (tests turn it off too).
        "SESSION_COOKIE_SECURE": env.get("POOLWARDEN_INSECURE_COOKIES", "").strip().lower() not in TRUE_WORDS,
        "SESSION_IDLE_MINUTES": _positive_int(env, "POOLWARDEN_SESSION_IDLE_MINUTES", DEFAULT_SESSION_IDLE_MINUTES),
        "SESSION_MAX_HOURS": _positive_int(env, "POOLWARDEN_SESSION_MAX_HOURS", DEFAULT_SESSION_MAX_HOURS),
        "RETENTION_RAW_DAYS": _positive_int(env, "POOLWARDEN_RETENTION_RAW_DAYS", DEFAULT_RETENTION_RAW_DAYS),
        "RETENTION_1M_DAYS": _positive_int(env, "POOLWARDEN_RETENTION_1M_DAYS", DEFAULT_RETENTION_1M_DAYS),
        "RETENTION_1H_DAYS": _positive_int(env, "POOLWARDEN_RETENTION_1H_DAYS", DEFAULT_RETENTION_1H_DAYS),
        "TRUSTED_PROXIES": parse_networks(env.get("POOLWARDEN_TRUSTED_PROXIES", ""), "POOLWARDEN_TRUSTED_PROXIES"),
    }


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0")
    return value


def parse_networks(raw: str, name: str) -> list[str]:
    """CIDRs separated by commas or spaces (a bare address is a /32 or /128), normalised."""
    networks = []
    for item in raw.replace(",", " ").split():
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IPv4/IPv6 address or CIDR (e.g. 10.0.0.0/8)") from None
    return networks


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
