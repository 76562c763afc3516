"""What the maintenance pages and the maintenance API share: the app's Redis client and settings,
the hosts maintenance knows, and requesting a job as the signed-in principal (roles, step-up,
safe mode, key), so a button and an API call are refused for the same reasons with the same words."""

from __future__ import annotations

from typing import Any

import redis
from flask import current_app, g

from agent.contract import ACTIONS
from panel.auth.principal import has_role
from panel.auth.stepup import stepped_up_recently
from panel.db import get_db
from panel.maintenance import dispatch, keys, store
from panel.maintenance.dispatch import MaintenanceRefused
from panel.maintenance.settings import Settings


class StepUpNeeded(Exception):
    """A destructive action without a fresh TOTP code: answered like ``step_up_required`` does."""


def settings() -> Settings:
    return Settings.from_config(current_app.config)


def redis_client() -> redis.Redis:
    url = current_app.config.get("REDIS_URL")
    if not url:
        raise MaintenanceRefused(503, "POOLWARDEN_REDIS_URL is not set: the panel cannot reach the job queues")
    client = current_app.extensions.get("poolwarden_maintenance_redis")
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        current_app.extensions["poolwarden_maintenance_redis"] = client
    return client


def known_hosts() -> list[str]:
    return store.maintenance_hosts(get_db())


def actor() -> str:
    principal = g.get("principal")
    return f"{principal.kind}:{principal.name}" if principal else "anonymous"


def host_state(host: str) -> dict[str, Any]:
    """Key, safe mode and worker presence of one host (Redis trouble is reported, not raised)."""
    conn = get_db()
    row = store.host_settings(conn, host)
    worker: dict[str, Any]
    try:
        worker = dispatch.worker_presence(redis_client(), host).public(row["worker_last_seen_at"])
        worker["error"] = None
    except (redis.RedisError, MaintenanceRefused) as exc:
        worker = {"online": False, "workers": 0, "busy": 0, "last_seen": store.iso(row["worker_last_seen_at"]),
                  "error": f"Redis cannot be reached: {exc}"}
    return {
        "host": host,
        "key": keys.load_key(conn, host) is not None,
        "enrol_hint": keys.enrol_hint(host),
        "safe_mode": {"on": row["safe_mode"], "by": row["safe_mode_by"], "at": store.iso(row["safe_mode_at"]),
                      "reason": row["safe_mode_reason"]},
        "worker": worker,
        "worker_grace_seconds": settings().worker_grace_seconds,
    }


def request_job(host: str, action_name: str, raw_params: Any) -> dict[str, Any]:
    """Check and queue one action for the current principal; MaintenanceRefused or StepUpNeeded.

    Refusals after the parameters validate (role, step-up, safe mode, no key) are audited."""
    conn = get_db()
    params = dispatch.checked_params(action_name, raw_params)
    if host not in known_hosts():
        raise MaintenanceRefused(404, f"unknown host {host!r}")
    action = ACTIONS[action_name]
    needed = action.minimum_role(params)
    principal = g.get("principal")
    who = actor()
    if not has_role(principal, needed):
        reason = (f"{action.title} with these parameters is destructive: it needs the {needed} role; you are "
                  f"{principal.role if principal else 'signed out'}")
        dispatch.refuse_quietly(conn, host=host, action_name=action_name, params=params, requested_by=who,
                                reason=reason)
        raise MaintenanceRefused(403, reason)
    if action.is_destructive(params) and not stepped_up_recently():
        raise StepUpNeeded()
    try:
        return dispatch.enqueue_job(conn, redis_client(), host=host, action_name=action_name, params=params,
                                    requested_by=who, settings=settings())
    except MaintenanceRefused as exc:
        dispatch.refuse_quietly(conn, host=host, action_name=action_name, params=params, requested_by=who,
                                reason=exc.message)
        raise


def confirmation(host: str, action_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the confirmation step shows, and what would refuse the job (None: it can be queued)."""
    from agent.contract import explain

    conn = get_db()
    action = ACTIONS[action_name]
    destructive = action.is_destructive(params)
    row = store.host_settings(conn, host)
    blocker = None
    if keys.load_key(conn, host) is None:
        blocker = keys.enrol_hint(host)
    elif destructive and row["safe_mode"]:
        blocker = dispatch.safe_mode_message(host, row)
    return {"action": action, "params": params, "shown_params": store.redacted_params(params),
            "explain": explain(action_name, params), "destructive": destructive,
            "role": action.minimum_role(params), "blocker": blocker}
