"""The audit log: ``record_event`` writes every row; the chain makes changes after the fact visible.

Usage (after Redash's ``Event``)::

    record_event("user.role_change", "user", str(user_id), before={"role": "viewer"}, after={"role": "admin"})
    record_event("login.failure", "user", username, reason="bad password")

The row is written on the request's database connection (``get_db()``), inside the caller's
transaction if one is open, so the audit row commits or rolls back with the change it describes.
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Flask, g, has_app_context, has_request_context, request

from panel.audit.chain import Verification, verify

__all__ = ["record_event", "current_actor", "init_app", "verify", "Verification"]

TEXT_LIMIT = 200


def current_actor() -> str:
    """``user:<name>`` / ``token:<name>`` for an authenticated request, ``anonymous`` without a
    principal, ``system`` outside a request (CLI, engine)."""
    if not has_request_context():
        return "system"
    principal = g.get("principal")
    if principal is None:
        return "anonymous"
    return f"{principal.kind}:{principal.name}"


def current_address() -> str | None:
    if not has_request_context():
        return None
    return g.get("client_ip") or request.remote_addr


def _text(value: Any) -> str | None:
    """A short single text value for an indexed column (PostgreSQL text cannot hold NUL)."""
    if value is None:
        return None
    text = str(value).replace("\x00", "\ufffd")
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def record_event(action: str, object_type: str | None = None, object_id: str | None = None, *,
                 before: dict | None = None, after: dict | None = None, actor: str | None = None,
                 conn: psycopg.Connection | None = None, **details: Any) -> dict[str, Any]:
    """Append one audit row and return it (with its ``id`` and ``hash``).

    ``actor`` defaults to the request's principal (see ``current_actor``), the address to
    ``g.client_ip`` (set by the allowlist hook from trusted proxies) or the peer address.
    ``conn`` is for code without a request (CLI commands, the engine); otherwise the request's
    connection is used. Extra keyword arguments are stored as the row's ``details``.
    """
    from panel.audit import chain
    from panel.db import get_db

    if not action:
        raise ValueError("record_event needs an action")
    fields = {
        "actor": _text(actor or current_actor()), "address": _text(current_address()), "action": _text(action),
        "object_type": _text(object_type), "object_id": _text(object_id),
        "before": before, "after": after, "details": details,
    }
    if conn is not None:
        return chain.append(conn, **fields)
    if has_app_context():
        return chain.append(get_db(), **fields)
    raise RuntimeError("record_event outside a Flask app context needs conn=")


def init_app(app: Flask) -> None:
    """The audit pages (``/audit``, ``/audit.csv``) and the ``audit verify`` command."""
    from panel.audit import cli
    from panel.audit.routes import bp

    app.register_blueprint(bp)
    cli.init_app(app)
